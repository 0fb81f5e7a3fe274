"""The service image built and run for real with podman: the container, compose, and the Kubernetes cpu overlay.

docker/podman-build.sh builds the CPU image from docker/service.Dockerfile (on a Debian base made with debootstrap
where no base image can be pulled) under the tag compose.cpu.yaml runs. Where podman cannot run, every test here
skips and says why; with INFOGAN_REQUIRE_PODMAN=1 (`make test-containers`, CI) they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from io import BytesIO

import httpx
import pytest
import yaml
from PIL import Image

from tests.conftest import ROOT, dev_tool, free_port, scraped, traversals_across_a_signal
from tests.test_docker import compose

CONTAINERS_CONF = os.environ.get("CONTAINERS_CONF", str(ROOT / "docker" / "podman" / "containers.conf"))
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": CONTAINERS_CONF}
REQUIRED = os.environ.get("INFOGAN_REQUIRE_PODMAN") == "1"
COMPOSE_FILES = ["-f", "compose.yaml", "-f", "compose.cpu.yaml"]
BUILD = ROOT / "docker" / "podman-build.sh"


def podman(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=PODMAN_ENV,
                          cwd=ROOT, **kwargs)


def why_podman_cannot_run() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc catatonit debootstrap; see README, Docker)"
    info = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    if info.returncode != 0:
        return f"podman cannot run containers here: {info.stderr.strip().splitlines()[-1:]}"
    base = re.search(r"BASE_IMAGE:-([^}]+)}", BUILD.read_text()).group(1)
    no_base = "BASE_IMAGE" not in os.environ and podman("image", "exists", base).returncode != 0
    if no_base and (shutil.which("debootstrap") is None or os.geteuid() != 0):
        return f"no {base} yet, and building it takes debootstrap as root (apt-get install debootstrap)"
    return None


REASON = why_podman_cannot_run()
pytestmark = pytest.mark.skipif(REASON is not None and not REQUIRED, reason=str(REASON))


def wait_ready(url: str, container: str, seconds: float = 120) -> None:
    """Polls /readyz until 200; fails with the container's log if it exits or never gets there."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        state = podman("inspect", container, "--format", "{{.State.Status}}").stdout.strip()
        if state in ("exited", "stopped", ""):
            break
        time.sleep(0.5)
    pytest.fail(f"{container} never became ready ({state}):\n{podman('logs', container).stderr[-3000:]}")


@pytest.fixture(scope="module")
def image() -> str:
    assert REASON is None, REASON
    build = subprocess.run([str(BUILD), "cpu"], capture_output=True, text=True,
                           timeout=1800, env=PODMAN_ENV, cwd=ROOT)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    tag = build.stdout.strip()  # the script prints only the tag on stdout
    assert tag == compose("compose.cpu.yaml")["services"]["api"]["image"]
    return tag


def start(image: str, name: str, port: int, *options: str) -> str:
    podman("rm", "--force", name)
    result = podman("run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:8000", *options, image)
    assert result.returncode == 0, result.stderr
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, name)
    return url


LOCKED_DOWN = ("--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")


@pytest.fixture(scope="module")
def container(image) -> Iterator[tuple[str, str]]:
    name = f"infogan-test-{os.getpid()}"
    url = start(image, name, free_port(), *LOCKED_DOWN)
    yield name, url
    podman("rm", "--force", name)


def test_the_container_serves_every_route(container):
    _, url = container
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/readyz").json() == {"status": "ready"}
        seven = http.post("/generate", json={"label": "7", "seed": 1})
        assert seven.headers["content-type"] == "image/png"
        assert Image.open(BytesIO(seven.content)).size == (28, 28)
        grid = http.get("/traverse", params={"code": "thickness", "steps": 3, "rows": 2, "seed": 3},
                        headers={"Accept": "application/json"}).json()
        low, high = http.get("/info").json()["traverse_range"]
        assert grid["code"] == "thickness" and grid["values"] == [low, (low + high) / 2, high]
        assert [len(row["images"]) for row in grid["rows"]] == [3, 3]
        traversal = http.get("/traverse", params={"code": "slant", "steps": 3, "rows": 2, "seed": 3})
        assert traversal.status_code == 200 and traversal.headers["content-type"] == "image/png"
        encoded = http.post("/encode", content=seven.content, headers={"Content-Type": "image/png"}).json()
        assert encoded["label"] == "7"  # the container's encoder reads back the digit its generator drew
        assert scraped(http, "http_requests_total", method="POST", route="/encode", status="200") == 1


def test_the_container_runs_as_its_user_with_a_read_only_root_and_no_capabilities(container, image):
    name, _ = container
    assert podman("image", "inspect", image, "--format", "{{.Config.User}}").stdout.strip() == "10001"
    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
    capabilities = podman("exec", name, "grep", "^Cap", "/proc/1/status").stdout.split()
    assert capabilities[1::2] == ["0000000000000000"] * 5  # inheritable, permitted, effective, bounding, ambient
    for path in ("/app/x", "/opt/venv/x", "/home/app/x"):
        refused = podman("exec", name, "touch", path)
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr


def test_the_images_healthcheck_command_works_inside_it(container, image):
    name, _ = container
    config = json.loads(podman("image", "inspect", image, "--format", "{{json .Config.Healthcheck}}").stdout)
    assert config["Test"] == ["CMD", *compose("compose.yaml")["services"]["api"]["healthcheck"]["test"][1:]]
    assert podman("healthcheck", "run", name).returncode == 0
    nothing_there = podman("exec", "--env", "PORT=1", name, *config["Test"][1:])
    assert nothing_there.returncode == 1 and "127.0.0.1:1/readyz" in nothing_there.stderr


def test_sigterm_lets_in_flight_requests_finish_and_the_container_exit_within_the_grace(image):
    name, grace = f"infogan-test-sigterm-{os.getpid()}", 15
    url = start(image, name, free_port(), *LOCKED_DOWN, "--env", f"SHUTDOWN_GRACE_S={grace}",
                "--env", "MAX_QUEUE_WAIT_S=60", "--env", "REQUEST_TIMEOUT_S=60")
    try:
        def sigterm() -> None:
            assert podman("kill", "--signal", "TERM", name).returncode == 0

        statuses, in_flight, signalled = traversals_across_a_signal(url, 8, sigterm)
        waited = podman("wait", name, timeout=grace + 30)
        exited = time.monotonic() - signalled
        # uvicorn re-raises the signal once it has shut down cleanly: 143 (128 + SIGTERM) reads as a clean exit
        assert waited.returncode == 0 and waited.stdout.strip() in ("0", "143"), waited.stdout + waited.stderr
        assert statuses == [200] * 8
        assert in_flight  # some were in flight when the signal came
        assert exited < grace, f"the container took {exited:.1f} s to exit"
    finally:
        podman("rm", "--force", name)


def test_compose_runs_the_cpu_service_with_its_ports_environment_volumes_and_healthcheck(image):
    project, port = f"infogan-test-{os.getpid()}", free_port()
    found = dev_tool("podman-compose")
    assert found, "podman-compose is missing: it is part of the dev extra (pip install -e '.[dev]')"
    podman_compose = [found, "--project-name", project, *COMPOSE_FILES]
    env = {**PODMAN_ENV, "HOST_PORT": str(port)}
    up = subprocess.run([*podman_compose, "up", "--detach", "--no-build", "api"], capture_output=True, text=True,
                        timeout=300, env=env, cwd=ROOT)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        name = f"{project}_api_1"
        wait_ready(f"http://127.0.0.1:{port}", name)
        api = compose("compose.cpu.yaml")["services"]["api"]
        assert podman("inspect", name, "--format", "{{.ImageName}}").stdout.strip().endswith(api["image"])
        environment = podman("inspect", name, "--format", "{{json .Config.Env}}").stdout
        assert '"REQUIRE_GPU=0"' in environment and '"MAX_BATCH=64"' in environment
        mounts = json.loads(podman("inspect", name, "--format", "{{json .Mounts}}").stdout)
        assert [(m["Source"], m["Destination"], m["RW"]) for m in mounts] == [(str(ROOT / "models"), "/app/models",
                                                                               False)]
        served = httpx.get(f"http://127.0.0.1:{port}/info").json()["model"]["sha256"]
        card = json.loads((ROOT / "models" / "mnist" / "model.json").read_text())
        assert served == {file: entry["sha256"] for file, entry in card["files"].items()}  # the mounted model
        assert podman("healthcheck", "run", name).returncode == 0
    finally:
        subprocess.run([*podman_compose, "down"], capture_output=True, timeout=120, env=env, cwd=ROOT)


def test_kube_play_of_the_cpu_overlay_passes_its_probes_and_writes_only_to_its_empty_dirs(image, tmp_path):
    from tests.test_deploy import KUBECTL, render

    assert KUBECTL, "kubectl is missing: it is part of the dev extra"
    deployment = next(doc for doc in render(ROOT / "deploy" / "k8s" / "overlays" / "cpu") if doc["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"] == image  # the overlay runs the image compose.cpu.yaml names, built here
    deployment["spec"]["replicas"] = 1
    container.update(image=f"localhost/{image}", imagePullPolicy="Never")
    (port,) = container["ports"]
    port["hostPort"] = free_port()
    manifest = tmp_path / "cpu.yaml"
    manifest.write_text(yaml.safe_dump(deployment))
    played = podman("kube", "play", str(manifest), timeout=300)
    try:
        assert played.returncode == 0, played.stderr
        name = f"{deployment['metadata']['name']}-pod-0-{container['name']}"
        url = f"http://127.0.0.1:{port['hostPort']}"
        startup = container["startupProbe"]
        wait_ready(url, name, seconds=startup["periodSeconds"] * startup["failureThreshold"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):  # as the kubelet asks them
            check = container[probe]
            assert check["httpGet"]["port"] == port["name"]
            answer = httpx.get(url + check["httpGet"]["path"], timeout=check.get("timeoutSeconds", 1))
            assert answer.status_code == 200, (probe, answer.text)
        assert podman("exec", name, "id", "-u").stdout.strip() == str(spec["securityContext"]["runAsUser"])
        mount_points = {podman("exec", name, "readlink", "-f", mount["mountPath"]).stdout.strip()
                        for mount in container["volumeMounts"]}
        for directory in mount_points:
            assert podman("exec", name, "touch", f"{directory}/written").returncode == 0, directory
        writable = set()
        for line in podman("exec", name, "cat", "/proc/self/mounts").stdout.splitlines():
            _, point, _, options, *_ = line.split()
            if "rw" in options.split(",") and not point.startswith(("/proc", "/sys", "/dev")):
                writable.add(point)
        assert writable == mount_points  # the root filesystem and everything else is read-only
        for path in ("/app/x", "/home/app/x", "/var/tmp/x"):
            assert podman("exec", name, "touch", path).returncode != 0, path
    finally:
        podman("kube", "down", str(manifest), timeout=120)
