"""Hatchling metadata hook: the project's dependencies are the Lambda layer's runtime requirements file.

layers/mailintake/requirements.txt is what the layer's Makefile installs into the layer; reading it here
keeps the installed project and the deployed layer on one list. Dev and admin tooling dependencies are
the `dev` extra in pyproject.toml and never reach the layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface

RUNTIME_REQUIREMENTS = Path("layers/mailintake/requirements.txt")


def read_requirements(path: Path) -> list[str]:
    """The requirement lines of a pip requirements file, without comments and blank lines."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


class RuntimeRequirementsHook(MetadataHookInterface):
    def update(self, metadata: dict[str, Any]) -> None:
        metadata["dependencies"] = read_requirements(Path(self.root) / RUNTIME_REQUIREMENTS)
