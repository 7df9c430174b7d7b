"""deploy/k8s as Kubernetes would take it, checked offline: kustomize renders the base and the GPU overlay
(kubectl's built-in kustomize), every core object validates strictly against the Kubernetes JSON schemas that
kubernetes-validate ships, the KEDA objects against the fields KEDA documents (the schema below), and the
properties the fleet relies on hold."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
VERSION = "1.32.0"

# KEDA ScaledObject (keda.sh/v1alpha1), the fields https://keda.sh/docs/latest/reference/scaledobject-spec/
# documents that these manifests use, with the two triggers' documented metadata
KEDA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "apiVersion": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "oneOf": [
                            {
                                "type": "object",
                                "required": ["type", "metadata"],
                                "additionalProperties": False,
                                "properties": {
                                    "type": {"const": "redis"},
                                    "metadata": {
                                        "type": "object",
                                        "required": ["address", "listName", "listLength"],
                                        "additionalProperties": {"type": "string"},
                                    },
                                },
                            },
                            {
                                "type": "object",
                                "required": ["type", "metadata"],
                                "additionalProperties": False,
                                "properties": {
                                    "type": {"const": "prometheus"},
                                    "metadata": {
                                        "type": "object",
                                        "required": ["serverAddress", "query", "threshold"],
                                        "additionalProperties": {"type": "string"},
                                    },
                                },
                            },
                        ]
                    },
                },
            },
        },
    },
}


def render(target: str | Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("no kubectl: its built-in kustomize renders deploy/k8s")
    done = subprocess.run([kubectl, "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def with_classifier(overlay: str) -> list[dict[str, Any]]:
    """``overlay`` with components/classifier added, as an operator's own overlay would add it."""
    with tempfile.TemporaryDirectory() as folder:
        paths = [os.path.relpath(K8S / p, folder) for p in (overlay, "components/classifier")]
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": paths[:1],
            "components": paths[1:],
        }
        (Path(folder) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return render(Path(folder))


RENDERS = {target: render(target) for target in ("base", "overlays/gpu", "overlays/classifier")}
RENDERS["overlays/gpu+classifier"] = with_classifier("overlays/gpu")


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


@pytest.mark.parametrize("target", RENDERS)
def test_every_object_validates(target: str) -> None:
    for doc in RENDERS[target]:
        if doc["kind"] == "ScaledObject":
            jsonschema.validate(doc, KEDA_SCHEMA)
        else:
            kubernetes_validate.validate(doc, VERSION, strict=True)


@pytest.mark.parametrize("target", RENDERS)
def test_pods_run_locked_down_with_probes_resources_and_file_secrets(target: str) -> None:
    for name, deployment in of_kind(RENDERS[target], "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["serviceAccountName"] == "memeguard", name
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"], name
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], name
            assert "livenessProbe" in container, name
            if name != "memeguard-beat":
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        secrets = [v for v in pod["volumes"] if "secret" in v]
        assert [v["secret"]["secretName"] for v in secrets] == ["memeguard-secrets"], name
    assert not of_kind(RENDERS[target], "Secret")  # secrets are never in the manifests


@pytest.mark.parametrize("target", RENDERS)
def test_every_secret_setting_points_at_a_key_of_the_secret(target: str) -> None:
    config = of_kind(RENDERS[target], "ConfigMap")["memeguard-config"]["data"]
    example = yaml.safe_load((K8S / "base" / "secret.example.yaml").read_text())["stringData"]
    files = {key: value for key, value in config.items() if key.endswith("_FILE")}
    assert files and {Path(path).name for path in files.values()} == set(example)
    assert all(path.startswith("/run/secrets/memeguard/") for path in files.values())


@pytest.mark.parametrize("target", RENDERS)
def test_each_worker_tier_scales_on_its_own_queue(target: str) -> None:
    docs = RENDERS[target]
    deployments, config = of_kind(docs, "Deployment"), of_kind(docs, "ConfigMap")["memeguard-config"]["data"]
    scaled = of_kind(docs, "ScaledObject")
    queues = {"memeguard-worker-cpu": config["MEMEGUARD_QUEUE_NAME"]}
    if "memeguard-worker-gpu" in deployments:
        queues["memeguard-worker-gpu"] = config["MEMEGUARD_VLM_QUEUE"]
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == set(queues)
    for obj in scaled.values():
        queue = queues[obj["spec"]["scaleTargetRef"]["name"]]
        triggers = {t["type"]: t["metadata"] for t in obj["spec"]["triggers"]}
        assert triggers["redis"]["listName"] == queue
        assert f'queue="{queue}"' in triggers["prometheus"]["query"]
        assert "memeguard_queue_oldest_age_seconds" in triggers["prometheus"]["query"]


def test_the_api_autoscales_beat_is_a_singleton_and_migrations_are_a_job() -> None:
    docs = RENDERS["base"]
    assert (
        of_kind(docs, "HorizontalPodAutoscaler")["memeguard-api"]["spec"]["scaleTargetRef"]["name"] == "memeguard-api"
    )
    beat = of_kind(docs, "Deployment")["memeguard-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    job = of_kind(docs, "Job")["memeguard-migrate"]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["memeguard", "db", "upgrade"]
    deployments = of_kind(docs, "Deployment")
    for pdb in of_kind(docs, "PodDisruptionBudget").values():
        labels = pdb["spec"]["selector"]["matchLabels"]
        assert any(d["spec"]["selector"]["matchLabels"] == labels for d in deployments.values())
    assert of_kind(docs, "NetworkPolicy")["memeguard-default-deny"]["spec"]["podSelector"] == {}


def test_workers_shut_down_warm_with_time_for_a_batch() -> None:
    deployments = of_kind(RENDERS["overlays/gpu"], "Deployment")
    for name in ("memeguard-worker-cpu", "memeguard-worker-gpu"):
        assert deployments[name]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 120
    gpu = deployments["memeguard-worker-gpu"]["spec"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1" and "--pool" in gpu["command"]
    assert gpu["command"][gpu["command"].index("--pool") + 1] == "solo"
    cpu_env = {
        e["name"]: e["value"]
        for e in deployments["memeguard-worker-cpu"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert cpu_env["MEMEGUARD_ANALYZER"] == "cascade"  # hands off to the GPU queue in the overlay


@pytest.mark.parametrize("target", ["overlays/classifier", "overlays/gpu+classifier"])
def test_every_worker_reads_the_trained_classifier_and_its_knowledge_bases(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """components/classifier: every worker tier mounts the knowledge volume read-only, and its settings name
    the classifier `make model` writes and the knowledge bases training reads, inside that mount; the API and
    beat, which read no meme, do not mount it."""
    from memeguard.settings import Settings
    from worker.training import SHIPPED_KNOWLEDGE

    deployments = of_kind(RENDERS[target], "Deployment")
    workers = [name for name in deployments if name.startswith("memeguard-worker-")]
    assert len(workers) == (2 if "gpu" in target else 1)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
        if name not in workers:
            assert "knowledge" not in mounts, name
            continue
        [volume] = [v for v in pod["volumes"] if v["name"] == "knowledge"]
        assert volume["persistentVolumeClaim"] == {"claimName": "memeguard-knowledge", "readOnly": True}
        assert mounts["knowledge"]["readOnly"] and mounts["knowledge"]["mountPath"] == "/srv/memeguard"
        for key in [k for k in os.environ if k.startswith("MEMEGUARD_")]:
            monkeypatch.delenv(key)
        for env in container["env"]:
            monkeypatch.setenv(env["name"], env["value"])
        settings = Settings()
        root = Path("/srv/memeguard")
        assert settings.classifier_path == root / "models" / "current.joblib", name
        assert settings.kb_external == [root / "datasets" / path for path in SHIPPED_KNOWLEDGE], name
