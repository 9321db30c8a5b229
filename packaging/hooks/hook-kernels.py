"""PyInstaller hook for ``kernels`` (pulled in by transformers): its ``python_depends.json``.

``kernels`` reads that file when it is imported and raises "Cannot load dependency
data" without it, which made loading a local language model fail in the bundle.
"""

from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("kernels")
