"""A corpus of hostile and broken files for the import, generated at test time (no committed binaries).

``build_corpus`` writes, under one folder:

- ``pydicom/``: pydicom's own test files (``pydicom.data``), a zoo of odd but mostly valid DICOM;
- ``truncated/``: every transfer syntax of ``codec_dcm_qa_ts`` cut at several points (inside the
  file meta, the header, the pixel data, just before the sequence delimiter), plus the intact files;
- ``zero/`` and ``random/``: zero-filled files (also one named DICOMDIR), a valid file meta followed
  by zeros, random bytes with and without a DICM marker;
- ``huge/``: real headers declaring Rows/Columns 65535 and an enormous NumberOfFrames;
- ``zips/``: members named ``../../etc/x`` and ``/etc/passwd``, a member inflating to 2 GB of zeros,
  a zero-filled member under the size limit, a corrupt archive, a member in an unsupported
  compression method, and a zip holding a valid series;
- ``ct/``: the 20-slice real CT, which must import whole whatever lies beside it.

Each entry says what the import must do with it: ``imported``, ``rejected`` (with a reason),
``skipped`` (with a reason) or ``any`` (one of those, for pydicom's zoo).
"""

from __future__ import annotations

import random
import shutil
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pydicom.data
from pydicom.uid import JPEG2000Lossless, generate_uid

from tests import dicom_factory as f

GB = 1024 ** 3


@dataclass
class Corpus:
    """The files written and what the import must do with each (by ``str(FileRef)``)."""

    root: Path
    expect: dict[str, str] = field(default_factory=dict)

    def add(self, ref: str | Path, outcome: str) -> None:
        self.expect[str(ref)] = outcome


def zero_zip(path: Path, member_bytes: int, name: str = "bomb.dcm", level: int = 1) -> Path:
    """A zip whose one member is ``member_bytes`` of zeros, streamed through deflate (small on disk)."""
    if path.exists():
        return path
    part = path.with_suffix(".part")
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf, \
            zf.open(name, "w", force_zip64=True) as out:
        left = member_bytes
        while left > 0:
            n = min(left, len(chunk))
            out.write(chunk[:n])
            left -= n
    part.replace(path)
    return path


def zero_file(path: Path, size: int) -> Path:
    """A file of ``size`` zero bytes (sparse where the file system allows)."""
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


def _pixel_offset(path: Path) -> int:
    from workstation.dicomio.headers import read_header_path

    offset = read_header_path(path).pixel_offset
    assert offset is not None
    return offset


def _truncations(corpus: Corpus, codec_dir: Path) -> None:
    out = corpus.root / "truncated"
    out.mkdir()
    for src in sorted(codec_dir.glob("*.dcm")):
        data = src.read_bytes()
        shutil.copyfile(src, out / f"{src.stem}_whole.dcm")
        corpus.add(out / f"{src.stem}_whole.dcm", "imported")
        pixels = _pixel_offset(src)
        cuts = {"meta": 140, "header": pixels // 2, "pixel_start": pixels + 4, "pixel_half": (pixels + len(data)) // 2,
                "before_end": len(data) - 8, "last_byte": len(data) - 1}
        for label, cut in cuts.items():
            (out / f"{src.stem}_{label}.dcm").write_bytes(data[:cut])
            corpus.add(out / f"{src.stem}_{label}.dcm", "rejected")


def _zero_and_random(corpus: Corpus, template: Path) -> None:
    zero = corpus.root / "zero"
    zero.mkdir()
    for name, size in (("tiny.dcm", 100), ("one_k.dcm", 1024), ("sixteen_mb.dcm", 16 << 20), ("DICOMDIR", 8 << 20)):
        zero_file(zero / name, size)
        corpus.add(zero / name, "skipped" if name == "DICOMDIR" else "rejected")
    data = template.read_bytes()
    meta_end = 132 + 12 + struct.unpack_from("<I", data, 140)[0]
    (zero / "meta_then_zeros.dcm").write_bytes(data[:meta_end] + bytes(4 << 20))
    corpus.add(zero / "meta_then_zeros.dcm", "rejected")
    rnd = corpus.root / "random"
    rnd.mkdir()
    rng = random.Random(13)
    for k, size in enumerate((7, 131, 600, 4096, 100_000, 3 << 20)):
        (rnd / f"random{k}.dcm").write_bytes(rng.randbytes(size))
        corpus.add(rnd / f"random{k}.dcm", "rejected")
        (rnd / f"dicm{k}.dcm").write_bytes(bytes(128) + b"DICM" + rng.randbytes(size))
        corpus.add(rnd / f"dicm{k}.dcm", "rejected")
    (rnd / "meta_then_random.dcm").write_bytes(data[:meta_end] + rng.randbytes(1 << 20))
    corpus.add(rnd / "meta_then_random.dcm", "rejected")


def _huge(corpus: Corpus, native: Path, jpeg2000: Path) -> None:
    out = corpus.root / "huge"
    out.mkdir()
    for label, src in (("native", native), ("j2k", jpeg2000)):
        for frames in ("1", "65535", "2147483647"):
            ds = pydicom.dcmread(src)
            ds.Rows = ds.Columns = 65535
            ds.NumberOfFrames = frames
            path = out / f"{label}_{frames}.dcm"
            ds.save_as(path)
            corpus.add(path, "rejected")


def _enhanced_j2k_truncated(corpus: Corpus, jpeg2000: Path) -> None:
    """A JPEG 2000 slice whose last fragment item claims more bytes than the file holds."""
    data = bytearray(jpeg2000.read_bytes())
    end = len(data) - 8  # the sequence delimiter
    assert data[end:end + 4] == b"\xfe\xff\xdd\xe0"
    path = corpus.root / "truncated" / "ct_j2k_no_delimiter.dcm"
    path.write_bytes(bytes(data[:end]))
    corpus.add(path, "rejected")


def _zips(corpus: Corpus, good: list[Path], bomb: Path) -> None:
    out = corpus.root / "zips"
    out.mkdir()
    payload = good[0].read_bytes()
    traversal = out / "traversal.zip"
    with zipfile.ZipFile(traversal, "w") as zf:
        for name in ("../../etc/x", "/etc/passwd", "ok/../../../escape.dcm"):
            zf.writestr(name, payload)
        zf.writestr("fine/slice.dcm", payload)
    for name in ("../../etc/x", "/etc/passwd", "ok/../../../escape.dcm"):
        corpus.add(f"{traversal}::{name}", "skipped")
    corpus.add(f"{traversal}::fine/slice.dcm", "imported")
    shutil.copyfile(bomb, out / "bomb.zip")
    corpus.add(f"{out / 'bomb.zip'}::bomb.dcm", "rejected")
    zero_zip(out / "zero_member.zip", 256 << 20, "zeros.dcm")
    corpus.add(f"{out / 'zero_member.zip'}::zeros.dcm", "rejected")
    series = out / "series.zip"
    with zipfile.ZipFile(series, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in good:
            zf.write(p, f"study/{p.name}")
            corpus.add(f"{series}::study/{p.name}", "imported")
    corrupt = out / "corrupt.zip"
    corrupt.write_bytes(series.read_bytes()[:-30])  # the end of the central directory is gone
    corpus.add(corrupt, "any")
    odd = out / "deflate64.zip"
    with zipfile.ZipFile(odd, "w") as zf:
        zf.writestr("odd.dcm", payload)
    raw = bytearray(odd.read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # compression method: 9 (Deflate64, which zipfile cannot read)
        at = raw.find(sig)
        struct.pack_into("<H", raw, at + (8 if sig == b"PK\x03\x04" else 10), 9)
    odd.write_bytes(bytes(raw))
    corpus.add(f"{odd}::odd.dcm", "rejected")


def _pydicom_zoo(corpus: Corpus) -> None:
    root = Path(pydicom.data.__file__).parent
    dest = corpus.root / "pydicom"
    for sub in ("test_files", "charset_files"):
        shutil.copytree(root / sub, dest / sub, ignore=shutil.ignore_patterns("__pycache__", "*.py", "*.pyc"))
    for p in dest.rglob("*"):
        if p.is_file():
            corpus.add(p, "any")


def small_series(folder: Path, n: int = 4) -> list[Path]:
    """A small valid CT series (for zips)."""
    f.ct_series(folder, n, study_uid=generate_uid())
    return sorted(folder.glob("*.dcm"))


def build_corpus(root: Path, shared_data: Path, bomb: Path) -> Corpus:
    """Write the whole corpus under ``root`` (see the module docstring); ``bomb`` is a 2 GB zero zip."""
    corpus = Corpus(root)
    root.mkdir(parents=True)
    codec = shared_data / "codec_dcm_qa_ts" / "In"
    ct = shared_data / "ct_abdomen_totalseg" / "example_ct_dicom"
    shutil.copytree(ct, root / "ct")
    for p in (root / "ct").iterdir():
        corpus.add(p, "imported")
    _truncations(corpus, codec)
    native = next(p for p in sorted(codec.glob("*.dcm"))
                  if pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1")
    j2k = next(p for p in sorted(ct.iterdir())
               if pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID == JPEG2000Lossless)
    _enhanced_j2k_truncated(corpus, j2k)
    _zero_and_random(corpus, native)
    _huge(corpus, native, j2k)
    _zips(corpus, small_series(root.parent / f"{root.name}_zip_src"), bomb)
    _pydicom_zoo(corpus)
    return corpus
