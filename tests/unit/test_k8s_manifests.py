"""deploy/k8s: every manifest is valid for Kubernetes, and says what docs/operations.md says.

Built-in kinds are checked with ``kubernetes-validate`` (Kubernetes' own OpenAPI schemas,
strict: unknown fields fail); the KEDA ScaledObject with the CRD schema vendored in
deploy/k8s/schemas (see make_keda_schema.py there). No cluster is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tasks.broker import QUEUE_NAME
from tasks.settings import ENV_NAMES

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
KEDA_SCHEMA = K8S / "schemas" / "keda-scaledobject-v1alpha1.json"


def _documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


DOCS = _documents()
BY_NAME = {(d["kind"], d["metadata"]["name"]): d for d in DOCS}


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_each_manifest_validates_against_its_schema(doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(doc, json.loads(KEDA_SCHEMA.read_text()))
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_misspelt_field_fails_validation() -> None:
    """The checks are not vacuous."""
    worker = json.loads(json.dumps(BY_NAME[("Deployment", "stt-worker")]))
    worker["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)
    scaled = json.loads(json.dumps(BY_NAME[("ScaledObject", "stt-worker")]))
    scaled["spec"]["triggers"][0]["metadata"]["value"] = 200  # KEDA wants strings
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, json.loads(KEDA_SCHEMA.read_text()))


def _container(kind: str, name: str) -> dict[str, Any]:
    containers = BY_NAME[(kind, name)]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_worker_has_resources_and_a_ping_liveness_probe() -> None:
    worker = _container("Deployment", "stt-worker")
    # One process per pod: its node is celery@<pod name>, the one the probe pings.
    assert BY_NAME[("ConfigMap", "stt-config")]["data"]["STT_WORKER_PROCESSES"] == "1"
    assert worker["args"] == ["worker"]
    assert worker["resources"]["requests"] and worker["resources"]["limits"]["memory"]
    probe = " ".join(worker["livenessProbe"]["exec"]["command"])
    assert "celery -A workers.celery_app inspect ping" in probe
    assert '-d "celery@$HOSTNAME"' in probe  # its own node, not any worker's answer


def test_beat_is_a_single_replica_never_two_during_a_rollout() -> None:
    beat = BY_NAME[("Deployment", "stt-beat")]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    assert _container("Deployment", "stt-beat")["args"][0] == "beat"


def test_flower_and_the_migrate_job() -> None:
    flower = _container("Deployment", "stt-flower")
    assert flower["args"][0] == "flower"
    assert {e["name"] for e in flower["env"]} >= {"FLOWER_BASIC_AUTH", "STT_BROKER_URL"}
    assert BY_NAME[("Service", "stt-flower")]["spec"]["type"] == "ClusterIP"
    job = BY_NAME[("Job", "stt-migrate")]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_keda_scales_the_worker_on_the_stt_queue_ready_messages() -> None:
    scaled = BY_NAME[("ScaledObject", "stt-worker")]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "stt-worker"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == QUEUE_NAME
    assert trigger["metadata"]["mode"] == "QueueLength"
    # The broker URL the scaler reads is the worker container's own.
    worker_env = {e["name"] for e in _container("Deployment", "stt-worker")["env"]}
    assert trigger["metadata"]["hostFromEnv"] in worker_env


def test_every_stt_variable_is_one_the_settings_know() -> None:
    known = set(ENV_NAMES.values()) | {
        "STT_WORKER_POOL",
        "STT_WORKER_CONCURRENCY",
        "STT_WORKER_PROCESSES",
    }
    config = BY_NAME[("ConfigMap", "stt-config")]["data"]
    names = set(config)
    for doc in DOCS:
        for container in (
            doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        ):
            names |= {e["name"] for e in container.get("env", [])}
    assert {n for n in names if n.startswith(("STT_", "AIML_"))} <= known
