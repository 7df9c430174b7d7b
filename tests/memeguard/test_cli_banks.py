"""``memeguard banks`` as an operator runs it (real subprocesses, a real SQLite database)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import demo_content_id, memeguard
from tests.helpers.images import animation, scenes
from worker.samples import render_meme


@pytest.mark.integration  # runs the command as a process of its own
def test_bank_lifecycle_from_the_command_line(tmp_path: Path) -> None:
    assert memeguard("db", "upgrade", data_dir=tmp_path).returncode == 0
    image = tmp_path / "doge.png"
    image.write_bytes(render_meme("笑死", "doge"))
    steps = [
        ("create", "doge", "--kind", "template", "--label", "狗头"),
        ("add", "doge", str(image)),
        ("set", "doge", "--ratio", "0.5", "--actor", "alice"),
        ("export", "doge"),
    ]
    outputs = []
    for step in steps:
        result = memeguard("banks", *step, data_dir=tmp_path)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    exported = outputs[-1].strip().split(",")
    assert len(exported[0]) == 64 and int(exported[1]) >= 50 and exported[2] == "doge.png"
    csv_file = tmp_path / "bank.csv"
    csv_file.write_text(outputs[-1], encoding="utf-8")
    assert memeguard("banks", "create", "copy", "--kind", "harmful", data_dir=tmp_path).returncode == 0
    assert "imported 1" in memeguard("banks", "import", "copy", str(csv_file), data_dir=tmp_path).stdout
    listing = memeguard("banks", "list", data_dir=tmp_path).stdout
    assert "doge" in listing and "copy" in listing  # a table for people
    rows = json.loads(memeguard("banks", "list", "--json", data_dir=tmp_path).stdout)  # and JSON for scripts
    assert [(r["name"], r["ratio"], r["hashes"]) for r in rows] == [("copy", 1.0, 1), ("doge", 0.5, 1)]


@pytest.mark.integration  # runs the command as a process of its own
def test_refused_changes_exit_2_with_the_reason(tmp_path: Path) -> None:
    assert memeguard("db", "upgrade", data_dir=tmp_path).returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("nothex,90\n", encoding="utf-8")
    assert memeguard("banks", "create", "b", "--kind", "harmful", data_dir=tmp_path).returncode == 0
    result = memeguard("banks", "import", "b", str(bad), data_dir=tmp_path)
    assert result.returncode == 2 and "line 1: PDQ value 'nothex'" in result.stderr
    result = memeguard("banks", "set", "missing", "--disabled", data_dir=tmp_path)
    assert result.returncode == 2 and "no bank named 'missing'" in result.stderr


@pytest.mark.integration  # runs the command as a process of its own
def test_a_finished_job_can_be_added_to_a_bank(tmp_path: Path) -> None:
    demo = memeguard("demo", data_dir=tmp_path)
    assert demo.returncode == 0, demo.stderr
    jobs = memeguard("jobs", "show", "--tenant", "demo", "--content-id", demo_content_id(tmp_path), data_dir=tmp_path)
    job_id = json.loads(jobs.stdout)["job_id"] if jobs.returncode == 0 else None
    assert job_id, jobs.stderr
    assert (
        memeguard(
            "banks", "create", "confirmed", "--kind", "harmful", "--label", "general_offense", data_dir=tmp_path
        ).returncode
        == 0
    )
    added = memeguard("banks", "add-job", "confirmed", job_id, "--actor", "reviewer:ann", data_dir=tmp_path)
    assert added.returncode == 0 and "added job" in added.stdout, added.stderr


@pytest.mark.integration  # runs the command as a process of its own
def test_an_animation_is_banked_by_every_hash_type_and_exported_per_type(tmp_path: Path) -> None:
    """``banks add`` on a GIF hashes every frame (vPDQ) besides the first frame's PDQ and pHash; distances
    and CSV files are per hash type, the registry's names."""
    assert memeguard("db", "upgrade", data_dir=tmp_path).returncode == 0
    gif = tmp_path / "cut.gif"
    gif.write_bytes(animation(scenes(3, 6)))
    create = ("create", "gifs", "--kind", "harmful", "--distance", "vpdq=20", "--distance", "phash=4")
    for step in (create, ("add", "gifs", str(gif))):
        result = memeguard("banks", *step, data_dir=tmp_path)
        assert result.returncode == 0, result.stderr
    assert "pdq<=31 phash<=4 vpdq<=20" in memeguard("banks", "list", data_dir=tmp_path).stdout
    exported = {
        kind: memeguard("banks", "export", "gifs", "--type", kind, data_dir=tmp_path).stdout for kind in ("pdq", "vpdq")
    }
    value, quality, note = exported["vpdq"].strip().split(",")
    assert len(value.split()) == 6 and note == "cut.gif" and int(quality) >= 50
    assert exported["pdq"].split(",")[0] == value.split()[0]  # the first frame's PDQ is the first of the set
    (tmp_path / "vpdq.csv").write_text(exported["vpdq"], encoding="utf-8")
    assert memeguard("banks", "create", "copy", "--kind", "harmful", data_dir=tmp_path).returncode == 0
    imported = memeguard("banks", "import", "copy", str(tmp_path / "vpdq.csv"), "--type", "vpdq", data_dir=tmp_path)
    assert "imported 1" in imported.stdout, imported.stderr
    refused = memeguard("banks", "create", "x", "--kind", "harmful", "--distance", "md5=3", data_dir=tmp_path)
    assert refused.returncode == 2 and "unknown hash type 'md5'" in refused.stderr
