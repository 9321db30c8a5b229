"""Entry point of the frozen application: PyInstaller runs this file as ``__main__``.

``multiprocessing.freeze_support()`` comes first: the importer reads headers in
worker processes (spawn), and in a frozen build each worker is this executable
started again with ``--multiprocessing-fork``; freeze_support runs the worker
and exits before anything else is imported.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from workstation.cli import main

    sys.exit(main())
