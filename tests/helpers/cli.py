"""The memeguard command line run as a user runs it (a subprocess), and what `memeguard demo` left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def memeguard(*args: str, data_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "MEMEGUARD_DATA_DIR": str(data_dir), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "composition.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


def demo_content_id(data_dir: Path) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{data_dir / 'memeguard.db'}")
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT content_id FROM jobs LIMIT 1")).scalar_one())
