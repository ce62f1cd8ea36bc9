"""The command line's helpers (``helpers/__main__.py`` is the entry point).

Modules (this family imports only from its own and lower layers; see CONTRIBUTING.md)::

    notebooks: execute notebooks headless and write their HTML
"""
