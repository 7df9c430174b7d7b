"""docker-compose.yml cannot be run here (no Docker engine), so check it as thoroughly as text allows:
structure, ordering, health, GPU reservation, secrets, and that every command it runs exists."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from composition.cli import app
from memeguard.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
APP_SERVICES = ("api", "worker-cpu", "worker-gpu", "beat")


class _StrictLoader(yaml.SafeLoader):
    """YAML as compose reads it: a key twice in one mapping (two ``<<`` merges included) is an error there,
    while PyYAML keeps the last silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode)]
        repeated = {key for key in keys if keys.count(key) > 1}
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"repeated keys {repeated}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def test_no_mapping_repeats_a_key() -> None:
    """Compose refuses a file whose mapping repeats a key — merging two anchors takes ``<<: [*a, *b]``."""
    yaml.load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"), Loader=_StrictLoader)
    with pytest.raises(yaml.constructor.ConstructorError, match="repeated keys"):
        yaml.load("a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: *a\n  <<: *b\n", Loader=_StrictLoader)


def test_all_services_are_present() -> None:
    assert set(SERVICES) == {
        "redis",
        "postgres",
        "minio",
        "minio-init",
        "migrate",
        "api",
        "worker-cpu",
        "worker-gpu",
        "beat",
        "flower",
    }


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_wait_for_a_successful_migration(name: str) -> None:
    depends = SERVICES[name]["depends_on"]
    assert depends["migrate"] == {"condition": "service_completed_successfully"}
    assert depends["minio-init"] == {"condition": "service_completed_successfully"}  # the bucket exists
    assert depends["redis"]["condition"] == depends["postgres"]["condition"] == "service_healthy"


def test_migrate_is_one_shot_after_postgres_is_healthy() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["restart"] == "no" and migrate["command"] == ["memeguard", "db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", ["redis", "postgres", "api", "worker-cpu", "worker-gpu", "beat", "flower"])
def test_long_running_services_have_healthchecks(name: str) -> None:
    assert SERVICES[name]["healthcheck"]["test"]


def test_gpu_worker_reserves_a_gpu_and_does_not_fork_the_model() -> None:
    gpu = SERVICES["worker-gpu"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    assert gpu["command"][gpu["command"].index("--pool") + 1] == "solo"
    assert "vlm" in gpu["build"]["args"]["EXTRAS"]


def test_secrets_are_required_not_defaulted() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert "${POSTGRES_PASSWORD:?" in text and "${MEMEGUARD_API_KEYS:?" in text
    assert "changeme" not in text.lower()


@pytest.mark.parametrize("name", [n for n, s in SERVICES.items() if s.get("command", [None])[0] == "memeguard"])
def test_every_memeguard_command_exists(name: str) -> None:
    args = SERVICES[name]["command"][1:]
    subcommand = [a for a in args if not a.startswith("-")][: 2 if args[0] == "db" else 1]
    result = CliRunner().invoke(app, [*subcommand, "--help"])
    assert result.exit_code == 0, result.output
    for option in (a for a in args if a.startswith("--")):
        assert option in result.output, f"{name}: {option} is not an option of memeguard {subcommand}"


def test_celery_app_module_used_by_beat_and_flower_exists() -> None:
    assert (ROOT / "composition" / "worker_app.py").exists()
    assert SERVICES["beat"]["command"][:3] == ["celery", "-A", "composition.worker_app"]


REQUIRED = {"POSTGRES_PASSWORD": "a-real-db-password-123", "MEMEGUARD_API_KEYS": '{"acme": "acme-key-0123456789abcd"}'}


def service_settings(monkeypatch: pytest.MonkeyPatch, service: str, given: dict[str, str]) -> Any:
    """The ``Settings`` a service gets from compose when the operator sets ``given`` (plus the required)."""
    import re

    from memeguard.settings import Settings

    values = {**REQUIRED, **given}
    for other in APP_SERVICES:  # only this service's environment
        for name in SERVICES[other].get("environment", {}):
            monkeypatch.delenv(name, raising=False)
    pattern = re.compile(r"\$\{(\w+):([?-])([^}]*(?:\}[^}$]*)?)\}")
    for name, value in SERVICES[service]["environment"].items():
        monkeypatch.setenv(name, pattern.sub(lambda m: values.get(m[1], m[3] if m[2] == "-" else ""), str(value)))
    return Settings()


def test_the_app_environment_with_optional_settings_left_unset_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """What compose hands the app when only the required variables are set: optional features are off."""
    settings = service_settings(monkeypatch, "api", {})
    assert settings.console_secret is None and settings.admin_api_key is None
    assert settings.callback_secrets == {} and settings.review_qa_share == 0.02 and settings.cache_shared_tenants == []
    assert settings.vlm_queue == ""


def test_one_queue_by_default_and_a_two_queue_fleet_from_the_documented_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from composition.cli.serve import worker_refusal

    cpu, gpu = (service_settings(monkeypatch, name, {}) for name in ("worker-cpu", "worker-gpu"))
    assert (cpu.analyzer, gpu.analyzer) == ("embedded", "cascade") and cpu.worker_queue == gpu.worker_queue
    two = {"MEMEGUARD_VLM_QUEUE": "memeguard.vlm", "MEMEGUARD_CPU_ANALYZER": "cascade", "MEMEGUARD_GPU_ANALYZER": "vlm"}
    header = (ROOT / "docker-compose.yml").read_text(encoding="utf-8").split("x-app:")[0]
    assert " ".join(f"{k}={v}" for k, v in two.items()) in header  # the header documents exactly these
    cpu, gpu = (service_settings(monkeypatch, name, two) for name in ("worker-cpu", "worker-gpu"))
    assert cpu.hands_off and gpu.loads_vlm and gpu.worker_queue == "memeguard.vlm" != cpu.worker_queue
    for name, settings in (("worker-cpu", cpu), ("worker-gpu", gpu)):
        command = SERVICES[name]["command"]
        assert worker_refusal(settings, command[command.index("--pool") + 1]) is None


def test_the_image_copies_every_package_the_distribution_installs() -> None:
    """``pip install .`` in the Dockerfile installs only the packages it was given: a package left out of the
    COPY lines is silently missing from the image (the review console once was)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {
        line.split()[1]
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.startswith("COPY ")
    }
    assert packages <= copied, f"Dockerfile does not copy {sorted(packages - copied)}"


# --- the file as compose reads it: interpolation, then each app service's settings ------------------------

# compose parses the YAML, then interpolates every string in it: ${VAR}, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error}, ${VAR:+other}; the variable closes at the first "}" (so a default cannot hold a
# literal "{}"); "$$" is a literal "$"
INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
REQUIRED = {
    "POSTGRES_PASSWORD": "pg-" + "p" * 20,
    "MEMEGUARD_API_KEYS": '{"tenant-a": "' + "k" * 32 + '"}',
    "MINIO_ROOT_PASSWORD": "minio-" + "m" * 20,
}
OPTIONAL = {
    "MEMEGUARD_ADMIN_API_KEY": "admin-" + "a" * 30,
    "MEMEGUARD_CACHE_SHARED_TENANTS": '["tenant-a"]',
    "MEMEGUARD_CONSOLE_SECRET": "console-" + "c" * 40,
    "MEMEGUARD_CALLBACK_SECRETS": '{"tenant-a": "s3cr3t-' + "x" * 20 + '"}',
    "MEMEGUARD_CALLBACK_ALLOW": '["10.1.0.0/16"]',
    "MEMEGUARD_CALLBACK_HTTP_TENANTS": '["tenant-a"]',
    "MEMEGUARD_METRICS_TOKEN": "metrics-" + "m" * 30,
    "MEMEGUARD_REVIEW_QA_SHARE": "0.05",
}


def interpolated(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolated(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


def interpolate(text: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        value = env.get(name)
        unset = value is None or (op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if unset else str(value)
        if op in (":?", "?"):
            if unset:
                raise ValueError(f"compose would refuse: {name}: {arg}")
            return str(value)
        if op == ":+":
            return "" if unset else arg
        return value or ""

    return INTERPOLATION.sub(one, text)


@pytest.mark.parametrize("shape", ["one-queue", "two-queue"])
@pytest.mark.parametrize("optional", ["unset", "set"])
def test_every_app_service_starts_from_the_interpolated_file(
    shape: str, optional: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What compose hands each container parses into Settings: the JSON values stay JSON whether the
    optional variables are set or not (a ``${VAR:-{}}`` default broke every container once one was set)."""
    env = {**REQUIRED, **(OPTIONAL if optional == "set" else {})}
    if shape == "two-queue":
        env.update(MEMEGUARD_VLM_QUEUE="memeguard.vlm", MEMEGUARD_CPU_ANALYZER="cascade", MEMEGUARD_GPU_ANALYZER="vlm")
    services = interpolated(COMPOSE, env)["services"]
    for name in APP_SERVICES:
        for key in [k for k in os.environ if k.startswith("MEMEGUARD_")]:
            monkeypatch.delenv(key)
        for key, value in services[name]["environment"].items():
            monkeypatch.setenv(key, str(value))
        settings = Settings()
        if optional == "set":
            assert settings.callback_secrets["tenant-a"].get_secret_value().startswith("s3cr3t-"), name
            assert settings.callback_allow == ["10.1.0.0/16"] and settings.cache_shared_tenants == ["tenant-a"]
        else:
            assert settings.callback_secrets == {} and settings.callback_allow == [], name
        assert settings.effective_blob_store == "s3://memeguard/images" and settings.blob_s3_path_style, name
        assert settings.blob_s3_endpoint_url == "http://minio:9000" and settings.blob_s3_secret_access_key
        assert settings.vlm_queue == ("memeguard.vlm" if shape == "two-queue" else settings.vlm_queue)


def test_compose_refuses_to_start_without_the_required_secrets() -> None:
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        interpolated(COMPOSE, {})


def test_flower_is_opt_in_on_loopback_and_sees_task_events_when_asked() -> None:
    flower = SERVICES["flower"]
    assert flower["profiles"] == ["ops"] and all(p.startswith("127.0.0.1:") for p in flower["ports"])
    assert "FLOWER_BASIC_AUTH" in flower["environment"]
    assert "MEMEGUARD_TASK_EVENTS" in SERVICES["worker-cpu"]["environment"]


def test_the_api_runs_several_processes() -> None:
    services = interpolated(COMPOSE, REQUIRED)["services"]
    command = services["api"]["command"]
    assert int(command[command.index("--workers") + 1]) >= 2


def test_no_two_services_share_a_disk() -> None:
    """Images live in the object store: the app services mount no common volume (so each can run on its own
    host), only the servers keep their own data."""
    for name in APP_SERVICES:
        mounts = [m for m in SERVICES[name].get("volumes", []) if not str(m).endswith(":ro")]
        assert mounts == [], (name, mounts)
    owners = [
        name for name, service in SERVICES.items() for m in service.get("volumes", []) if not str(m).endswith(":ro")
    ]
    assert len(owners) == len(set(owners)) and set(owners) <= {"redis", "postgres", "minio"}


def _documented(name: str) -> str:
    """A variable's value as the compose file's header documents it (``NAME=value``)."""
    header = (ROOT / "docker-compose.yml").read_text(encoding="utf-8").split("x-app:")[0]
    found = re.search(rf"{name}=(\S+)", header)
    assert found, f"the header documents {name}"
    return found.group(1).rstrip(".")


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of a service's read-only bind mounts."""
    return {m.split(":")[1]: m.split(":")[0] for m in service.get("volumes", []) if str(m).endswith(":ro")}


@pytest.mark.parametrize("name", ["worker-cpu", "worker-gpu"])
def test_workers_read_the_trained_classifier_and_its_knowledge_bases_as_documented(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fleet serves the classifier `make model` trains, with the external knowledge bases it was trained
    with (a worker refuses another): the header's values point inside the workers' read-only mounts, the
    mounts default to where `make model` writes, and the knowledge bases are the ones training reads."""
    from worker.training import SHIPPED_KNOWLEDGE

    given = {var: _documented(var) for var in ("MEMEGUARD_CLASSIFIER_PATH", "MEMEGUARD_KB_EXTERNAL")}
    service = interpolated(COMPOSE, {**REQUIRED, **given})["services"][name]
    mounts = _mounts(service)
    for key in [k for k in os.environ if k.startswith("MEMEGUARD_")]:
        monkeypatch.delenv(key)
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.classifier_path is not None and settings.classifier_path.name == "current.joblib"
    assert mounts[str(settings.classifier_path.parent)] == "./.memeguard/models"  # where `make model` writes
    datasets = Path("/srv/memeguard/datasets")
    assert mounts[str(datasets)] == "./.memeguard/datasets"
    assert settings.kb_external == [datasets / path for path in SHIPPED_KNOWLEDGE]
    unset = interpolated(COMPOSE, REQUIRED)["services"][name]["environment"]
    assert unset["MEMEGUARD_CLASSIFIER_PATH"] == "" and unset["MEMEGUARD_KB_EXTERNAL"] == ""  # bundled KB only
