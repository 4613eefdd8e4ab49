"""Connection settings the mail sources share."""

from __future__ import annotations

import ssl

SOCKET_TIMEOUT = 30


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Verifying context; a mailbox's own CA bundle (PEM) is trusted in addition to the system's."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cadata=ca_bundle)
    return context
