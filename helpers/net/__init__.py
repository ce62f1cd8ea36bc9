"""Distance between a worker and its broker, made on purpose.

Modules (this family imports only from its own and lower layers; see CONTRIBUTING.md)::

    proxy: ``LatencyProxy``, a worker "on a host N ms away" (owns the relay process)
    relay: ``python -m helpers.net.relay``, the forwarding process that delays each byte
"""
