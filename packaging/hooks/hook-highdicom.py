"""highdicom: the DICOM standard tables (``_standard/*.json``, read with ``pkgutil.get_data``) and ICC profiles."""

from PyInstaller.utils.hooks import collect_data_files, copy_metadata

datas = collect_data_files("highdicom", includes=["_standard/*.json", "_icc_profiles/*.icc"])
datas += copy_metadata("highdicom")
