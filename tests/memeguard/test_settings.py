from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from composition.cli import app
from memeguard.settings import Settings, mask_url

GOOD_KEY = "k" * 20


def test_defaults_are_the_embedded_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMEGUARD_DATA_DIR")  # conftest points it at a temporary directory
    settings = Settings(_env_file=None)
    assert settings.is_inline
    assert settings.effective_database_url == f"sqlite:///{Path('.memeguard') / 'memeguard.db'}"
    assert settings.analyzer == "embedded"


def test_reads_memeguard_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMEGUARD_BROKER_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("MEMEGUARD_API_KEYS", json.dumps({"acme": GOOD_KEY}))
    monkeypatch.setenv("MEMEGUARD_MAX_FRAMES", "4")
    settings = Settings()
    assert not settings.is_inline
    assert settings.api_keys["acme"].get_secret_value() == GOOD_KEY
    assert settings.max_frames == 4


@pytest.mark.parametrize("key", ["changeme", "secret", "CHANGEME", "short-key"])
def test_placeholder_or_short_api_keys_fail_fast(key: str) -> None:
    with pytest.raises(ValidationError, match="placeholder or shorter"):
        Settings(api_keys={"acme": key})


def test_placeholder_database_password_fails_fast() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(database_url="postgresql+psycopg://memeguard:changeme@db/memeguard")


def test_masked_hides_every_secret() -> None:
    settings = Settings(
        api_keys={"acme": GOOD_KEY},
        database_url="postgresql://u:s3cr3t-pw@db/x",
        broker_url="redis://:redispw-123@redis:6379/0",
    )
    text = json.dumps(settings.masked())
    assert GOOD_KEY not in text and "s3cr3t-pw" not in text and "redispw-123" not in text
    assert settings.masked()["api_keys"] == {"acme": "***"}
    assert mask_url("postgresql://u:pw@h/d") == "postgresql://u:***@h/d"


def test_config_command_prints_masked_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMEGUARD_API_KEYS", json.dumps({"acme": GOOD_KEY}))
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["api_keys"] == {"acme": "***"}
    assert GOOD_KEY not in result.output


def test_bad_configuration_exits_2_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMEGUARD_API_KEYS", json.dumps({"acme": "changeme"}))
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 2
    assert "placeholder" in result.output


REDIS = "redis://127.0.0.1:6379/0"


def test_one_queue_fleet_by_default() -> None:
    for analyzer in ("embedded", "cascade", "vlm"):
        settings = Settings(broker_url=REDIS, analyzer=analyzer)
        assert settings.worker_queue == settings.queue_name and not settings.hands_off
    assert Settings(broker_url=REDIS, analyzer="cascade").loads_vlm  # both tiers in one process


def test_a_two_queue_fleet_splits_the_roles() -> None:
    cpu = Settings(broker_url=REDIS, analyzer="cascade", vlm_queue="memeguard.vlm")
    assert cpu.hands_off and not cpu.loads_vlm and cpu.worker_queue == "memeguard.analyze"
    gpu = Settings(broker_url=REDIS, analyzer="vlm", vlm_queue="memeguard.vlm")
    assert gpu.loads_vlm and not gpu.hands_off and gpu.worker_queue == "memeguard.vlm"
    embedded = Settings(broker_url=REDIS, analyzer="embedded", vlm_queue="memeguard.vlm")
    assert not embedded.hands_off and embedded.worker_queue == "memeguard.analyze"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"broker_url": REDIS, "vlm_queue": "memeguard.analyze"}, "must differ"),
        ({"vlm_queue": "memeguard.vlm"}, "needs a broker"),
    ],
)
def test_a_vlm_queue_that_cannot_work_fails_fast(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)


def test_the_shipped_classifier_is_used_when_it_exists(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.effective_classifier_path is None and settings.masked()["classifier_path"] is None
    shipped = tmp_path / "models" / "current.joblib"
    shipped.parent.mkdir()
    shipped.write_bytes(b"")
    assert settings.effective_classifier_path == shipped
    assert (
        Settings(data_dir=tmp_path, classifier_path=tmp_path / "other.joblib").effective_classifier_path
        == tmp_path / "other.joblib"
    )  # MEMEGUARD_CLASSIFIER_PATH overrides
    assert not settings.kb_external_given and Settings(kb_external=[]).kb_external_given


def test_an_empty_variable_is_unset_and_off_lifts_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMEGUARD_CALLBACK_SECRETS", "")  # compose's ${MEMEGUARD_CALLBACK_SECRETS:-}
    monkeypatch.setenv("MEMEGUARD_RATE_LIMIT", "off")
    monkeypatch.setenv("MEMEGUARD_MAX_QUEUED", "OFF")
    settings = Settings()
    assert settings.callback_secrets == {} and settings.rate_limit is None and settings.max_queued is None
    monkeypatch.setenv("MEMEGUARD_RATE_LIMIT", "")
    assert Settings().rate_limit == "50/second"


def test_secrets_can_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``MEMEGUARD_<NAME>_FILE``: a mounted secret, JSON settings included; the plain variable wins."""
    keys = tmp_path / "api_keys"
    keys.write_text('{"tenant-a": "' + "k" * 32 + '"}\n')
    secret = tmp_path / "s3_secret"
    secret.write_text("s3-secret-from-a-file\n")
    monkeypatch.setenv("MEMEGUARD_API_KEYS_FILE", str(keys))
    monkeypatch.setenv("MEMEGUARD_BLOB_S3_SECRET_ACCESS_KEY_FILE", str(secret))
    settings = Settings()
    assert settings.api_keys["tenant-a"].get_secret_value() == "k" * 32
    assert settings.blob_s3_secret_access_key is not None
    assert settings.blob_s3_secret_access_key.get_secret_value() == "s3-secret-from-a-file"
    monkeypatch.setenv("MEMEGUARD_BLOB_S3_SECRET_ACCESS_KEY", "from-the-environment")
    assert Settings().blob_s3_secret_access_key.get_secret_value() == "from-the-environment"  # type: ignore[union-attr]
    monkeypatch.setenv("MEMEGUARD_METRICS_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="MEMEGUARD_METRICS_TOKEN_FILE"):
        Settings()


def test_loading_the_settings_does_not_import_the_metrics() -> None:
    """A prefork worker sets PROMETHEUS_MULTIPROC_DIR after loading its settings and before the metrics module
    is first imported; importing it earlier makes every child's counters vanish from /metrics."""
    import subprocess
    import sys

    probe = "import sys, memeguard.settings; print('memeguard.metrics' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
