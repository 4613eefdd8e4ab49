"""Typed settings, read from the environment (Lambda env vars, or the local stack's env file)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

# Unmistakably this system's: other trackers write "[#123]" too, and their customers' mail must not land in
# our item 123. An installation picks its own prefix (MarkerFormat); "[#123]" from before is recognised
# only where AcceptedMarkerFormats names it.
DEFAULT_MARKER = "[HD#{number}]"


# What the functions cannot run without: the stack's table, bucket and queue.
REQUIRED = ("table", "bucket", "queue_url")
# Numbers where 0 means something (no caching, no margin); every other number must be positive.
MAY_BE_ZERO = ("config_cache_seconds", "deadline_margin_seconds", "ledger_retention_days")


class SettingsError(RuntimeError):
    """The environment does not describe a stack to run against."""


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
    # Further marker formats still recognised in subjects (never written), separated by commas: the
    # formats an installation used before, so that replies to its old mail keep threading.
    accepted_marker_formats: str = ""
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
    # Days a ledger record is kept before the table's TTL removes it (template: LedgerRetentionDays); 0 keeps
    # it for good. Raw mail's own retention is the bucket's lifecycle rule.
    ledger_retention_days: int = 365

    @property
    def marker_formats(self) -> tuple[str, ...]:
        """The marker format written, then the formats also recognised."""
        accepted = (f.strip() for f in self.accepted_marker_formats.split(","))
        return tuple(dict.fromkeys((self.marker_format, *(f for f in accepted if f))))

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        """The settings in ``env``; SettingsError, naming every variable at fault, when one the functions
        cannot run without is missing or a value is not of its type. A silent default would send a mail to
        a table or bucket nobody reads."""
        values: dict[str, object] = {}
        problems = [f"MAILINTAKE_{name.upper()} is not set" for name in REQUIRED
                    if not env.get(f"MAILINTAKE_{name.upper()}")]
        for f in fields(cls):
            variable = f"MAILINTAKE_{f.name.upper()}"
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            kind = {"int": int, "float": float}.get(str(f.type), str)
            try:
                value = kind(raw)
            except ValueError:
                problems.append(f"{variable}={raw!r} is not {'an integer' if kind is int else 'a number'}")
                continue
            if kind is not str and (value < 0 or (value == 0 and f.name not in MAY_BE_ZERO)):
                problems.append(f"{variable}={raw!r} must be {'0 or more' if f.name in MAY_BE_ZERO else 'above 0'}")
            values[f.name] = value
        if problems:
            raise SettingsError("mailintake cannot start: " + "; ".join(problems) + " (template.yaml sets these "
                                "on the functions; locally, `make up` writes them to .local/stack.env)")
        if "region" not in values:
            region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
            if region:
                values["region"] = region
        return cls(**values)  # type: ignore[arg-type]
