"""Temperature scaling of the VLM's confidence: fitted on labelled data, it moves confidence towards the
accuracy it actually has without changing any label; a calibration is tied to the model it was fitted for;
``memeguard calibrate`` runs the real fast path on the tiny GLM-4.6V."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from composition.cli import app
from memeguard.settings import Settings
from worker.analyzers.base import AnalysisInput, AnalysisResult
from worker.vlm.analyzer import VlmAnalyzer
from worker.vlm.build import build_vlm
from worker.vlm.calibration import Calibration, fit, harm_code, scaled
from worker.vlm.loading import LoadedModel

CODES = ["0", "1", "2", "3", "4"]


def synthetic(n: int, top: float, accuracy: float, seed: int = 0) -> tuple[list[dict[str, float]], list[str]]:
    """A model that always gives its pick probability ``top`` and is right ``accuracy`` of the time."""
    rng = random.Random(seed)
    rows, labels = [], []
    for _ in range(n):
        pick = rng.choice(CODES)
        rows.append({c: top if c == pick else (1 - top) / 4 for c in CODES})
        labels.append(pick if rng.random() < accuracy else rng.choice([c for c in CODES if c != pick]))
    return rows, labels


@pytest.mark.parametrize(("top", "accuracy", "hotter"), [(0.95, 0.6, True), (0.3, 0.9, False)])
def test_fitting_moves_confidence_towards_accuracy(top: float, accuracy: float, hotter: bool) -> None:
    rows, labels = synthetic(400, top, accuracy)
    result = fit(rows, labels, model="m")
    assert (result.temperature > 1) is hotter  # over-confident: T > 1 softens; under-confident: T < 1 sharpens
    assert result.nll_after < result.nll_before and result.ece_after < result.ece_before
    assert result.ece_after < 0.05  # one temperature is enough for a model that is wrong at one rate
    for row in rows:  # the chosen label never changes
        assert max(row, key=row.__getitem__) == max(result.apply(row), key=result.apply(row).__getitem__)


def test_a_calibration_round_trips_and_refuses_another_model(tmp_path: Path) -> None:
    result = fit(*synthetic(50, 0.9, 0.5), model="glm46v:none:p1234")
    result.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == result
    result.check("glm46v:none:p1234")
    with pytest.raises(ValueError, match="recalibrate"):
        result.check("glm46v:int8:p1234")  # quantised weights are another model
    (tmp_path / "bad.json").write_text(json.dumps({"temperature": 1.0}))
    with pytest.raises(ValueError, match="memeguard calibrate"):
        Calibration.load(tmp_path / "bad.json")


def test_fit_refuses_too_little_or_mislabelled_data() -> None:
    with pytest.raises(ValueError, match="at least two"):
        fit([{"0": 1.0}], ["0"], model="m")
    with pytest.raises(ValueError, match="allowed codes"):
        fit([{"0": 0.5, "1": 0.5}] * 2, ["0", "9"], model="m")


def test_the_analyzer_reports_the_calibrated_confidence(tiny: LoadedModel, memes: list) -> None:  # type: ignore[type-arg]
    raw = VlmAnalyzer(tiny, prefix_cache=False)
    calibration = Calibration(2.0, raw.version, 10, 1.0, 0.9, 0.2, 0.1)
    calibrated = VlmAnalyzer(tiny, prefix_cache=False, calibration=calibration)
    assert calibrated.version == f"{raw.version}:T2"
    item = AnalysisInput([memes[0]], "配文")
    [probs] = raw.harm_probabilities([item])
    result = calibrated.analyze(item)
    assert isinstance(result, AnalysisResult)
    chosen = max(probs, key=probs.__getitem__)
    assert result.verdict.confidence == pytest.approx(scaled(probs, 2.0)[chosen], abs=1e-4)
    assert result.verdict.harm_type == raw.analyze(item).verdict.harm_type  # same label, other confidence
    assert any("calibrated T=2" in e for s in result.verdict.signals if s.source == "vlm" for e in s.evidence)
    with pytest.raises(ValueError, match="recalibrate"):
        VlmAnalyzer(tiny, calibration=Calibration(2.0, "another:model", 10, 1.0, 0.9, 0.2, 0.1))


def test_calibrate_command_fits_the_real_fast_path_and_workers_load_the_file(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "labelled.jsonl"
    captions = ["你说得对，但是我不听", "早上好", "你个sb", "不想活了", "笑死我了", "前方高能预警"]
    data.write_text(
        "\n".join(json.dumps({"text": c, "harm_type": i % 5}, ensure_ascii=False) for i, c in enumerate(captions * 2)),
        encoding="utf-8",
    )
    for name, value in {
        "MEMEGUARD_VLM_MODEL": str(tiny_dir),
        "MEMEGUARD_VLM_DEVICE": "cpu",
        "MEMEGUARD_DATA_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "calibration.json"
    result = CliRunner().invoke(app, ["calibrate", "--data", str(data), "--batch-size", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    calibration = Calibration.load(out)
    assert calibration.fitted_on == 12 and calibration.nll_after <= calibration.nll_before
    assert f"T={calibration.temperature:g} on 12 items" in result.output
    worker = build_vlm(Settings(vlm_model=str(tiny_dir), vlm_device="cpu", vlm_calibration=out))
    assert worker.calibration == calibration and worker.version == f"{calibration.model}:T{calibration.temperature:g}"
    held_out = tmp_path / "test_2.0.json"
    held_out.write_text("[]")
    refused = CliRunner().invoke(app, ["calibrate", "--data", str(held_out)])
    assert refused.exit_code == 2 and "held out" in refused.output


def test_dataset_harm_ids_map_to_the_prompt_codes() -> None:
    from memeguard.schemas import HarmType
    from worker.vlm.prompt import CODES as BOOK

    assert [BOOK.harm[harm_code(i)] for i in range(5)] == list(HarmType)
