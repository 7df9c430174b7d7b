"""The ops kit: alert rules checked and unit-tested with promtool, every alert in the runbook, every metric an
alert reads exported by the code."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("no promtool: install Debian's prometheus package (make test does)")
    return path


@pytest.mark.parametrize("command", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]])
def test_promtool_accepts_and_unit_tests_the_rules(command: list[str]) -> None:
    done = subprocess.run([promtool(), *command], cwd=RULES.parent, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_in_the_runbook_and_is_unit_tested() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    tested = (RULES.parent / "alerts_test.yml").read_text(encoding="utf-8")
    for alert in ALERTS:
        name = alert["alert"]
        assert f"## {name}\n" in runbook, name
        assert alert["annotations"]["runbook"] == f"docs/runbook.md#{name.lower()}"
        assert f"alertname: {name}\n" in tested, name


def test_every_metric_an_alert_reads_is_exported(tmp_path: Path, sqlite_url: str) -> None:
    """Counters and histograms as the code declares them, gauges as a real scrape of the API's registry
    (database-backed collectors included) shows them."""
    from prometheus_client import generate_latest

    from memeguard.metrics import build_registry
    from memeguard.runtime import Runtime
    from memeguard.settings import Settings

    code = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "memeguard").glob("*.py"))
    declared = {name.removesuffix("_total") + "_total" if kind == "Counter" else name
                for kind, name in re.findall(r"\b(Counter|Histogram)\(\s*\"(memeguard_\w+)\"", code)}
    runtime = Runtime(Settings(data_dir=tmp_path, database_url=sqlite_url))
    scraped = generate_latest(build_registry(runtime.queue.depths, runtime.queue_ages, runtime.ops_collectors()))
    exported = declared | set(re.findall(r"^# TYPE (memeguard_\w+) ", scraped.decode(), re.MULTILINE))
    for alert in ALERTS:
        for metric in set(re.findall(r"\b(memeguard_[a-z_]+)", alert["expr"])):
            assert metric in exported, (alert["alert"], metric, sorted(exported))
