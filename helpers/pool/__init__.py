"""Many workers at once, owned by one object.

Modules (this family imports only from its own and lower layers; see CONTRIBUTING.md)::

    pool: ``WorkerPool``: spawn, kill, add and stop workers; every child ends with it
    events: the workers' JSON event lines, read and kept
    forked, forkserver: a warm fork server that starts workers sooner
"""
