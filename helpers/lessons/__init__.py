"""The lessons: one module per notebook section, each with its experiments, tables, figures
and panels, built on the core (``helpers.*``). The core never imports from here.

=========================  ===========================================================
module                     notebook
=========================  ===========================================================
``round_robin``            01: K workers, N equal tasks, no prefetch limit
``acks``                   02: kill a worker mid-task, with and without acks
``acks_fate``              02: what became of each task the killed worker held
``forgotten_ack``          02: a worker that never acks
``durability``             03: what survives a restart; a queue redeclared
``durability_confirms``    03: publisher confirms while the broker goes down
``fair_dispatch``          04: prefetch 0 against a limit; a sweep; unequal speeds
``backlog``                04: tasks arriving faster than the workers take them
``distance``               05: prefetch against the round trip to the broker; its panel
``skew``                   05: the price of a large prefetch on skewed tasks
``scaling``                05: more workers; a backlog drained; zero-length tasks
``queue_types``            04, 05: prefetch 0 and redeliveries, quorum against classic
``pitfalls``               06: each production pitfall run, measured, and its fix
``pitfalls_plots``         06: the pitfalls' figures
``cluster``                07: a private cluster loses its quorum queue's leader, then
                           its majority; ``Lab``, the accounting, the panel
``cluster_classic``        07: confirmed messages in a classic and a quorum queue on a node
                           that dies (``probe``: the consumer run with a deadline)
``cluster_plots``          07: the node-loss timeline
``cluster_answers``        07: the answers to its questions, from each run's numbers
``retries``, ``retries_plots``  08: a failing task retried after 1, 4, 16 s, then parked
``priorities``             08: urgent tasks behind a backlog, with and without priorities
``order``                  08: competing consumers against a single active consumer
``backpressure``           08: a length limit: reject-publish against drop-head
``shutdown``               08: SIGTERM mid-task, plain and graceful; a rolling restart
``versions``               02, 03, 06, 07: what this run measured beside the other
                           RabbitMQ versions (pinned in data/version_facts.json)
``common``, ``panels``     what the lessons share; the panel machinery (ipywidgets)
=========================  ===========================================================

Import a lesson by name: ``from helpers.lessons import round_robin``.
"""
