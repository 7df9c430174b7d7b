"""Write the lock files the Docker image installs from: requirements/<name>.lock pins every package (and
version) pip resolves for the image's extras, for the Python and platform of this machine (the image's:
CPython 3.11 on x86_64 glibc). Run `make lock` after changing a dependency in pyproject.toml.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = {"cpu": "cpu,s3", "gpu": "cpu,vlm,s3"}  # the Dockerfile's EXTRAS for CPU and GPU images


def resolve(extras: str) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--dry-run",
                "--ignore-installed",
                "--report",
                str(report),
                f".[{extras}]",
            ],
            cwd=ROOT,
            check=True,
        )
        installs = json.loads(report.read_text())["install"]
    return sorted(
        (normalized(i["metadata"]["name"]), i["metadata"]["version"])
        for i in installs
        if normalized(i["metadata"]["name"]) != "memeguard"
    )


def normalized(name: str) -> str:
    """The PEP 503 form of a package name (``prometheus_client`` -> ``prometheus-client``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> None:
    (ROOT / "requirements").mkdir(exist_ok=True)
    for name, extras in LOCKS.items():
        pins = resolve(extras)
        header = (
            f"# memeguard[{extras}] resolved for CPython {sys.version_info.major}.{sys.version_info.minor} "
            "(tools/lock.py; `make lock` rewrites it)\n"
        )
        (ROOT / "requirements" / f"{name}.lock").write_text(header + "".join(f"{n}=={v}\n" for n, v in pins))
        print(f"requirements/{name}.lock: {len(pins)} packages")


if __name__ == "__main__":
    main()
