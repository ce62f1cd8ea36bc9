"""Side-by-side measurements of the project's workers against their peers (``make bench``).

``bench`` is the harness, ``peers`` runs the tutorial-style and Celery workers,
``publish_confirms`` measures the three ways to publish. Not tests: they print figures.
"""
