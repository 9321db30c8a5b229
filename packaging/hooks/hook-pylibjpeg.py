"""pylibjpeg: its decoders are plugins found through entry points (``importlib.metadata``).

pydicom decodes JPEG, JPEG-LS, JPEG 2000 and RLE through pylibjpeg, which
looks its plugins up by entry-point group (``pylibjpeg.pixel_data_decoders``
...). A frozen build only has entry points whose distribution metadata was
copied, and the plugin modules are imported by name, so both are collected here.
"""

from PyInstaller.utils.hooks import collect_submodules, copy_metadata

PLUGINS = {"pylibjpeg-libjpeg": "libjpeg", "pylibjpeg-openjpeg": "openjpeg", "pylibjpeg-rle": "rle"}

datas = copy_metadata("pylibjpeg")
hiddenimports = []
for _dist, _module in PLUGINS.items():
    try:
        datas += copy_metadata(_dist)
    except Exception:  # the plugin is not installed: pydicom reports the syntax as undecodable
        continue
    hiddenimports += collect_submodules(_module, filter=lambda name: ".tests" not in name)
