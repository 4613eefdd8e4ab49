"""Typed settings, read once from the environment (Lambda env vars, or the local stack's env file)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache

DEFAULT_MARKER = "[#{number}]"


@dataclass(frozen=True)
class Settings:
    """Names of the stack's resources and the knobs that are not per-mailbox.

    Every field maps to one environment variable, ``MAILINTAKE_<FIELD>`` upper-cased; template.yaml sets
    them on the functions and the local stack writes them to ``.local/stack.env``.
    """

    table: str = "mailintake"
    bucket: str = "mailintake"
    queue_url: str = ""
    dlq_url: str = ""
    region: str = "us-east-1"
    schedule_group: str = "mailintake"
    scheduler_role_arn: str = ""
    fetch_function_arn: str = ""
    marker_format: str = DEFAULT_MARKER
    default_poll_minutes: int = 5
    max_message_bytes: int = 25 * 1024 * 1024
    # Seconds a fetch run keeps for itself before the Lambda deadline, to finish cleanly.
    deadline_margin_seconds: int = 20
    # Seconds system settings, filter lists, workspaces and mailbox records are cached per container:
    # they change rarely, and reading them per message would double the requests a mail costs.
    config_cache_seconds: int = 60
    # Seconds of work one mail may take in the process function (template: ProcessingBudgetSeconds), well
    # below its 120 s timeout so that the mail's outcome is recorded (see mailintake.bounds.Deadline).
    processing_budget_seconds: float = 60.0

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"MAILINTAKE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if f.type in ("int", int):
                values[f.name] = int(raw)
            elif f.type in ("float", float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        if "region" not in values:
            region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
            if region:
                values["region"] = region
        return cls(**values)  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; read from os.environ the first time only."""
    return Settings.from_mapping(os.environ)
