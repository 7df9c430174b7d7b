"""The ops kit: alert rules checked and unit-tested with promtool, every alert in the runbook, every metric an
alert reads exported by the code."""

from __future__ import annotations

import json
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


def exported_metrics(tmp_path: Path, sqlite_url: str) -> set[str]:
    """Counters and histograms as the code declares them, gauges as a real scrape of the API's registry
    (database-backed collectors included) shows them."""
    from prometheus_client import generate_latest

    from composition.runtime import Runtime
    from memeguard.metrics import build_registry
    from memeguard.settings import Settings

    code = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "memeguard").glob("*.py"))
    declared = {
        name.removesuffix("_total") + "_total" if kind == "Counter" else name
        for kind, name in re.findall(r"\b(Counter|Histogram)\(\s*\"(memeguard_\w+)\"", code)
    }
    runtime = Runtime(Settings(data_dir=tmp_path, database_url=sqlite_url))
    scraped = generate_latest(build_registry(runtime.queue.depths, runtime.queue_ages, runtime.ops_collectors()))
    gauges = set(re.findall(r"^# TYPE (memeguard_\w+) ", scraped.decode(), re.MULTILINE))
    # gauges a scrape shows only in some places (the GPU's, where torch sees one), as the code declares them
    families = set(re.findall(r"GaugeMetricFamily\(\s*\"(memeguard_\w+)\"", code))
    return declared | gauges | families


def test_every_metric_an_alert_reads_is_exported(tmp_path: Path, sqlite_url: str) -> None:
    exported = exported_metrics(tmp_path, sqlite_url)
    for alert in ALERTS:
        for metric in set(re.findall(r"\b(memeguard_[a-z_]+)", alert["expr"])):
            assert metric in exported, (alert["alert"], metric, sorted(exported))


DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "memeguard.json").read_text(encoding="utf-8"))
WANTED_PANELS = (
    "Uploads per second",
    "Stage latency p95",
    "Queue depth per queue",
    "Oldest waiting job per queue",
    "Cache-hit share",
    "Cascade escalation share",
    "Degraded-mode share",
    "GPU memory",
    "Callbacks",
    "Review backlog",
)


def test_the_dashboard_has_the_panels_ops_ask_for_on_exported_metrics(tmp_path: Path, sqlite_url: str) -> None:
    titles = [panel["title"] for panel in DASHBOARD["panels"]]
    for wanted in WANTED_PANELS:
        assert any(title.startswith(wanted) for title in titles), wanted
    exported = exported_metrics(tmp_path, sqlite_url)
    for panel in DASHBOARD["panels"]:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            for metric in set(re.findall(r"\b(memeguard_[a-z_]+)", target["expr"])):
                base = re.sub(r"_(bucket|count|sum)$", "", metric)
                assert metric in exported or base in exported, (panel["title"], metric)
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
