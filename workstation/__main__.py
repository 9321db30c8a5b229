"""``python -m workstation``: the same as the ``workstation`` command."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # first: a spawned import worker must not import the application twice
    from workstation.cli import main

    sys.exit(main())
