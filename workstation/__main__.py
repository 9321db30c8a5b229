"""``python -m workstation``: the same as the ``workstation`` command."""

import sys

if __name__ == "__main__":
    if getattr(sys, "frozen", False):  # a no-op unless frozen: not worth importing multiprocessing (~10 ms) for
        import multiprocessing

        multiprocessing.freeze_support()  # first: a spawned import worker must not import the application twice
    from workstation.cli import main

    sys.exit(main())
