"""What runs, and the one skeleton that runs it.

Modules (this family imports only from its own and lower layers; see CONTRIBUTING.md)::

    steps: ``Run`` (a run under way) and ``Step`` (what plugs into the skeleton)
    skeleton: validate, fresh queue, spawn, publish, wait, summarise (``run``)
    kills: ``WorkerKills``, a random worker SIGKILLed every few seconds and replaced
"""
