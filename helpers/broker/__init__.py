"""Finding, running and controlling a RabbitMQ broker.

Modules (this family imports only from its own and lower layers; see CONTRIBUTING.md)::

    model: ``Broker``, the interface every kind has, and the docker compose kind
    resolve: which broker to use (``AMQP_URL``, a private node, compose), ``get()``, ``running()``
    private_node: a node of this checkout (state folder, free ports, start, stop, restart, crash)
    private_config: its environment and ``rabbitmq.conf``; state_folder: its state file and lock
    boot_log: a failed boot's cause in one sentence
    install: ``python -m helpers.broker.install``, rabbitmq-server from the system's packages
    management: the management HTTP API, where one answers
    node_control: a private node's settings changed for a few seconds (``rabbitmqctl eval``)
    dead_letter: the dead-letter policy, or the worker doing it where no API answers
    cluster, cluster_info, cluster_procs: a private cluster of N nodes on 127.0.0.1
    version_facts, version_facts_timeout: what differs between RabbitMQ versions, measured
        on the running broker (pinned in data/version_facts.json)
"""
