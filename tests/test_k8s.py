"""The Kubernetes recipe: valid against the Kubernetes API schema (kubernetes-validate, offline,
strict), and holding the fields hpo relies on."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO

MANIFEST = REPO / "scripts" / "k8s" / "hpo-worker-job.yaml"
VERSION = "1.30.0"  # the oldest Kubernetes release the recipe supports


def _job() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_the_worker_job_is_valid_against_the_kubernetes_schema() -> None:
    for version in (VERSION, kubernetes_validate.latest_version()):
        kubernetes_validate.validate(_job(), version, strict=True)


def test_a_misspelt_field_is_caught_so_the_check_can_fail() -> None:
    job = _job()
    job["spec"]["paralelism"] = job["spec"].pop("parallelism")
    with pytest.raises(kubernetes_validate.ValidationError, match="paralelism"):
        kubernetes_validate.validate(job, VERSION, strict=True)


def test_the_fields_hpo_relies_on() -> None:
    job = _job()
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    # each pod is one worker; the study's budget, not the job, decides when work ends
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] <= spec["completions"]
    assert worker["command"][:2] == ["hpo", "worker"]
    # preemption: SIGTERM, then the worker checkpoints at the next step and exits 0; the grace
    # period must leave room for that (hpo's heartbeat grace period is 90 s by default, the
    # checkpoint of a CIFAR ResNet takes well under a second)
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["restartPolicy"] == "OnFailure"
    # the storage URL (with its password) only from a secret, never in the manifest
    env = {e["name"]: e for e in worker["env"]}
    assert env["HPO_STORAGE"]["valueFrom"]["secretKeyRef"]["key"] == "url"
    assert "value" not in env["HPO_STORAGE"]
    # checkpoints on a volume every pod shares, where HPO_CHECKPOINT_DIR points
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    claim = {v["name"]: v for v in pod["volumes"]}[mounts[env["HPO_CHECKPOINT_DIR"]["value"]]]
    assert "persistentVolumeClaim" in claim
