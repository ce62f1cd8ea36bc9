"""Turning a run's events into figures.

Modules (this family imports only from its own and lower layers; see CONTRIBUTING.md)::

    timing: makespan, ideal makespan, per-worker busy time, fairness; the summary table
    monitor: queue depth over time (management API, or AMQP and the workers' events)
    plots: timelines and bar charts; prefetch: the arithmetic of prefetch against distance
"""
