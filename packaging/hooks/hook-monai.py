"""MONAI: every submodule, with sources, and the optional packages it imports by name.

A MONAI bundle's ``inference.json`` names components as strings
(``monai.networks.nets.SegResNet``, ``$monai.transforms...``) that
``ConfigParser`` looks up among the imported ``monai`` modules, so any of them
may be needed; MONAI imports its subpackages itself at start-up
(``load_submodules``) and its optional dependencies through
``optional_import`` (``importlib``), which static analysis cannot see.
Sources are collected as well (``pyz+py``): some modules are compiled with
``torch.jit.script`` at import, which reads the source.

Replaces the pyinstaller-hooks-contrib hook (which only sets ``pyz+py``).
"""

from PyInstaller.utils.hooks import collect_submodules

module_collection_mode = "pyz+py"
hiddenimports = collect_submodules("monai", filter=lambda name: not name.startswith("monai._extensions"))
# optional_import targets a bundle's config commonly uses, when installed (yaml: bundle configs in YAML)
hiddenimports += ["yaml", "nibabel", "scipy.ndimage", "tqdm", "PIL.Image"]
