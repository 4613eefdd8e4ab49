"""TLS for the mail servers (IMAP, POP3, Graph, SMTP): verifying contexts, the sockets' timeout."""

from __future__ import annotations

import ssl
import threading

SOCKET_TIMEOUT = 30


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Verifying context; a mailbox's own CA bundle (PEM) is trusted in addition to the system's."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cadata=ca_bundle)
    return context


class TlsContexts:
    """The verifying contexts of one container, one per CA bundle, for its lifetime (a Runtime owns it).

    Making a context loads the system's CA store, which OpenSSL parses certificate by certificate: about
    40 ms of CPU, a third of a fetch run that finds no mail. A context is made for many connections (and
    threads) alike; what it trusts is the bundle it was made with, so mailboxes with one bundle share one.
    """

    def __init__(self) -> None:
        self._contexts: dict[str | None, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def get(self, ca_bundle: str | None) -> ssl.SSLContext:
        key = ca_bundle or None
        with self._lock:
            context = self._contexts.get(key)
            if context is None:
                context = self._contexts[key] = tls_context(key)
            return context


def context_for(contexts: TlsContexts | None, ca_bundle: str | None) -> ssl.SSLContext:
    """The container's context for ``ca_bundle`` when it keeps them, else a new one."""
    return contexts.get(ca_bundle) if contexts is not None else tls_context(ca_bundle)
