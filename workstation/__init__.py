"""Radiology AI workstation: the application (import, index, viewer, reports)."""

__version__ = "0.1.0"
