"""Imports point one way: serve_app (HTTP edge, CLI) → deployments and finetune → contracts, which
imports nothing of ours. A module that reaches up a layer fails here with its name and line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("contracts", "deployments", "finetune", "serve_app")
# What each package may import of ours (besides itself).
ALLOWED = {"contracts": set(), "deployments": {"contracts"}, "finetune": {"contracts", "deployments"},
           "serve_app": {"contracts", "deployments", "finetune"}}


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_runs_back_up_a_layer(package):
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imports_of(path):
            top = module.split(".")[0]
            if top in OURS and top != package and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package]) or 'nothing of ours'}:\n" + "\n".join(wrong)


def test_the_text_helpers_stand_alone():
    """deployments/text/ holds pure text helpers: no deployment, Redis store, engine or Serve reaches in, so
    finetune, the router and every post-processor can share them."""
    wrong = []
    for path in sorted((ROOT / "deployments" / "text").rglob("*.py")):
        for line, module in imports_of(path):
            top = module.split(".")[0]
            if (top in OURS and not module.startswith(("deployments.text", "contracts"))) or \
                    top in ("ray", "redis", "vllm", "torch"):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)
