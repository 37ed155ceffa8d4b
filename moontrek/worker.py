"""A worker process of ``moontrek serve --workers N`` (started by the
supervisor in moontrek.server, not by hand)."""

import sys

from .server import worker_main

if __name__ == "__main__":
    sys.exit(worker_main())
