"""The README's API examples, run as written against the shipped model on a real server.

Every `$ curl ...` line of the README's console blocks runs in order (bash, localhost:8000 pointed at a
fresh server of models/mnist) and its output must match what the README shows: line by line in order, with
"…" standing for text the README leaves out (long base64 images). When the model or the API changes,
regenerate the outputs with

    README_UPDATE=1 .venv/bin/python -m pytest tests/test_readme_examples.py

which writes the real output back (base64 PNGs shortened, header lines kept to those the README shows).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field

import pytest

from tests.conftest import ROOT, Server

README_PATH = ROOT / "README.md"
BLOCK = re.compile(r"```console\n(.*?)```", re.S)
PNG_BASE64 = re.compile(r'"(iVBORw0KGgo)[A-Za-z0-9+/=]+"')


@dataclass
class Example:
    command: str
    shown: list[str] = field(default_factory=list)


def examples(text: str) -> list[Example]:
    found: list[Example] = []
    for block in BLOCK.findall(text):
        continued = False
        for line in block.splitlines():
            if continued:
                found[-1].command += "\n" + line
            elif line.startswith("$ "):
                found.append(Example(line[2:]))
            else:
                found[-1].shown.append(line)
            continued = line.endswith("\\")
    return found


def pattern(shown: str) -> re.Pattern:
    return re.compile(".*?".join(re.escape(part) for part in shown.split("…")) + r"\Z")


def unmatched(shown: list[str], actual: list[str]) -> list[str]:
    """The shown lines that do not appear, in order, among the actual ones."""
    remaining = iter(actual)
    return [line for line in shown if not any(pattern(line).match(candidate) for candidate in remaining)]


def regenerated(shown: list[str], actual: list[str]) -> list[str]:
    """The real output in the README's form: only the header lines it shows, base64 PNGs cut short."""
    if shown and re.match(r"HTTP/\d", shown[0]):
        names = {line.split(":")[0].lower() for line in shown[1:]}
        return [actual[0]] + [line for line in actual[1:] if line.split(":")[0].lower() in names]
    return [PNG_BASE64.sub(r'"\1…"', line) for line in actual]


def run_example(example: Example, url: str, cwd) -> list[str]:
    host = url.removeprefix("http://")
    result = subprocess.run(["bash", "-c", example.command.replace("localhost:8000", host)], cwd=cwd,
                            capture_output=True, text=True, timeout=60)
    return [line.rstrip("\r") for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def fresh_server():
    live = Server(ROOT / "models" / "mnist", WORKERS="1")  # one process: the metrics example counts exactly
    yield live
    live.stop()


def test_the_readme_examples_print_what_the_readme_shows(fresh_server, tmp_path):
    text = README_PATH.read_text()
    found = examples(text)
    assert len(found) >= 10 and any("/info" in e.command for e in found)
    failures, updated = [], text
    for example in found:
        actual = run_example(example, fresh_server.url, tmp_path)
        missing = unmatched(example.shown, actual)
        if missing:
            failures.append(f"$ {example.command}\n  README: {missing}\n  actual: {actual}")
            if example.shown:
                updated = updated.replace("\n".join(example.shown), "\n".join(regenerated(example.shown, actual)), 1)
    if failures and os.environ.get("README_UPDATE"):
        README_PATH.write_text(updated)
        pytest.skip(f"README.md rewritten with the real output of {len(failures)} example(s); review the diff")
    assert not failures, "\n".join(failures)


def test_the_readme_triton_client_example_runs_as_written(shipped_server):
    block = next(code for code in re.findall(r"```python\n(.*?)```", README_PATH.read_text(), re.S) if "tritonclient" in code)
    namespace: dict = {}
    exec(block.replace("localhost:8000", shipped_server.url.removeprefix("http://")), namespace)
    assert namespace["images"].shape == (4, 1, 28, 28) and namespace["images"].dtype == "float32"
