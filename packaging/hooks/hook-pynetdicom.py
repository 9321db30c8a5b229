"""pynetdicom: ``pynetdicom._version`` reads its version with ``importlib.metadata`` at import."""

from PyInstaller.utils.hooks import copy_metadata

datas = copy_metadata("pynetdicom")
