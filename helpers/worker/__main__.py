"""``python -m helpers.worker``: one worker in the foreground (options: ``--help``)."""
import sys

from helpers.worker.options import main

sys.exit(main())
