"""The Lambda layer holds only runtime code and runtime dependencies (issue 12).

`mailintake` is a namespace package in two portions: layers/mailintake/mailintake (the layer) and
dev/mailintake (CLI, local stack, local runner; never deployed). These read the source, so that a runtime
module importing a dev module, or a package missing from the layer's requirements.txt, fails here
rather than with an ImportError on Lambda.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "layers" / "mailintake" / "mailintake"
DEV = ROOT / "dev" / "mailintake"
REQUIREMENTS = ROOT / "layers" / "mailintake" / "requirements.txt"
RUNTIME_CALLERS = [RUNTIME, ROOT / "layers" / "scripts" / "mailintake_scripts", ROOT / "functions"]


def _imports(folder: Path) -> dict[str, set[str]]:
    """Every absolute import (dotted name) of each .py file under ``folder``."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # Imports under `if TYPE_CHECKING:` are read by the type checker only (the boto3 stubs), never run.
        typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                       for statement in block.body for node in ast.walk(statement)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
        found[str(path.relative_to(ROOT))] = names
    return found


def _dev_modules() -> set[str]:
    return {"mailintake." + ".".join(p.relative_to(DEV).with_suffix("").parts) for p in DEV.rglob("*.py")} | {
        "mailintake." + p.name for p in DEV.iterdir() if p.is_dir() and p.name != "__pycache__"}


def _normal(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _required_distributions() -> set[str]:
    names = set()
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(_normal(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0]))
    return names


def test_both_portions_are_namespace_portions() -> None:
    # An __init__.py in either would make it a regular package that hides the other portion.
    assert not (RUNTIME / "__init__.py").exists()
    assert not (DEV / "__init__.py").exists()


def test_the_portions_hold_different_modules() -> None:
    runtime = {p.relative_to(RUNTIME) for p in RUNTIME.rglob("*.py")}
    dev = {p.relative_to(DEV) for p in DEV.rglob("*.py")}
    assert not runtime & dev


def test_runtime_code_imports_no_dev_module() -> None:
    dev = _dev_modules()
    for folder in RUNTIME_CALLERS:
        for path, names in _imports(folder).items():
            assert not names & dev, f"{path} imports dev-only {sorted(names & dev)}"


def test_every_third_party_import_of_runtime_code_is_a_runtime_requirement() -> None:
    required = _required_distributions()
    # botocore comes with boto3, which requirements.txt declares (and which the runtime has anyway).
    allowed_with = {"botocore": "boto3"}
    distributions = packages_distributions()
    for folder in RUNTIME_CALLERS:
        for path, names in _imports(folder).items():
            for top in {name.split(".")[0] for name in names}:
                if top in sys.stdlib_module_names or top in {"__future__", "mailintake", "mailintake_scripts"}:
                    continue
                owners = {_normal(d) for d in distributions.get(top, [])}
                if top in allowed_with:
                    owners.add(allowed_with[top])
                assert owners & required, f"{path} imports {top} ({sorted(owners)}), not in {REQUIREMENTS.name}"


def test_yaml_is_not_a_runtime_requirement() -> None:
    # Only the local stack reads YAML (template.yaml); it is the dev extra's.
    assert "pyyaml" not in _required_distributions()
