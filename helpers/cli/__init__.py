"""The command line's helpers (``helpers/__main__.py`` is the entry point).

Modules (this family imports only from its own and lower layers; see CONTRIBUTING.md)::

    parser: every command's options, each described with its default and unit
    about: ``--version`` (the package's, and the running broker's)
    progress: progress bars on stderr when it is a terminal (tqdm)
    notebooks: execute notebooks headless (kernels over IPC) and write their HTML
"""
