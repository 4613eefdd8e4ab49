"""The local stack: a real Dovecot (IMAP/POP3) and a moto server standing in for AWS, for development and
integration tests. Everything it creates lives under ``<repository root>/.local/``.

Run ``python -m mailintake.localstack up|down|reset|status``; the integration tests use the functions of
the submodules directly.
"""

from __future__ import annotations

from mailintake.localstack.dovecot import DovecotInfo

__all__ = ["DovecotInfo"]
