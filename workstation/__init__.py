"""Radiology AI workstation: the application (import, index, viewer, reports)."""

import os

# Report drafting generates on its own thread beside the engine's: with spinning OpenMP waits the idle
# thread team steals a core (drafting 1.21x slower than bare generate; 1.02x with PASSIVE, see
# benchmarks/RESULTS.md). Every entry point imports this package before torch loads; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
