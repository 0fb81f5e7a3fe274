"""The house rules that code can check: short functions, and the torch-free paths (the service, the aligner, the
measures) staying free of torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "training", "export", "infogan")
LONGEST_FUNCTION = 60


def test_no_function_is_longer_than_the_house_rule():
    long = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > LONGEST_FUNCTION:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these functions:\n" + "\n".join(long)


@pytest.mark.parametrize("module", ["service.__main__", "service.app", "export.align", "infogan.morpho",
                                    "infogan.identity"])
def test_torch_free_modules_import_no_torch(module):
    code = f"import sys, {module}; sys.exit(any(name.split('.')[0] == 'torch' for name in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0, f"{module} imports torch"
