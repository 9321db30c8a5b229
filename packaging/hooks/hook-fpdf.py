"""fpdf2: the sRGB colour profile (``importlib.resources`` on ``fpdf.data.color_profiles``) for PDF/A output."""

from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("fpdf", includes=["data/**/*.icc"])
hiddenimports = ["fpdf.data", "fpdf.data.color_profiles"]
