"""The README's promises that code can check: commands, settings, CI."""

import re

from service.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_first_screen_has_the_main_job_and_the_test_command():
    first_screen = "\n".join(README.splitlines()[:25])
    assert "docker compose up" in first_screen and "make serve" in first_screen and "make test" in first_screen
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    assert {"serve", "test", "model", "lint", "bench", "install"} <= targets


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "make lint" in ci


def test_every_setting_is_documented():
    for name in Settings.model_fields:
        assert f"| `{name.upper()}` |" in README, name


def test_no_placeholder_is_left():
    assert not re.search(r"\b[A-Z]+_(TABLE|EXAMPLES)\b", README)
