"""A private Dovecot instance for local development and tests.

Its whole configuration, TLS material, users, mail and runtime state live under ``<root>/.local/dovecot/``
and it is started with ``dovecot -c``, so the system's /etc/dovecot (and any system Dovecot running on the
standard ports) is never read nor touched. It listens on loopback only, on unprivileged ports.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mailintake.localstack import pidfiles

HOST = "127.0.0.1"
# MAILINTAKE_LOCAL_PORT_OFFSET shifts all four, so a second checkout's stack can run beside this one.
_PORT_OFFSET = int(os.environ.get("MAILINTAKE_LOCAL_PORT_OFFSET") or 0)
IMAP_PORT = 10143 + _PORT_OFFSET
IMAPS_PORT = 10993 + _PORT_OFFSET
POP3_PORT = 10110 + _PORT_OFFSET
POP3S_PORT = 10995 + _PORT_OFFSET
# What the master's command line contains: a recorded pid that does not is not ours to signal.
_PROGRAM = b"dovecot"
PORTS = (IMAP_PORT, IMAPS_PORT, POP3_PORT, POP3S_PORT)
# Where Dovecot's oauth2 passdb introspects bearer tokens (RFC 7662): the local authorization server
# (mailintake.localstack.oauth) listens there while tests run; without it, XOAUTH2 logins simply fail.
OAUTH_INTROSPECTION_PORT = 10180 + _PORT_OFFSET

START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0

# passwd-file is colon-separated and line-based, so these would corrupt it.
_USER_RE = re.compile(r"^[A-Za-z0-9._@+=-]+$")
_FORBIDDEN_IN_PASSWORD = (":", "\n", "\r", "\0")


@dataclass(frozen=True)
class DovecotInfo:
    """Where clients reach the local Dovecot, and the certificate they must trust for its TLS ports."""

    host: str
    imap_port: int
    imaps_port: int
    pop3_port: int
    pop3s_port: int
    ca_bundle: Path

    def as_env(self) -> dict[str, str]:
        """The ``MAILINTAKE_LOCAL_*`` variables the stack env file carries for this server."""
        return {
            "MAILINTAKE_LOCAL_MAIL_HOST": self.host,
            "MAILINTAKE_LOCAL_IMAP_PORT": str(self.imap_port),
            "MAILINTAKE_LOCAL_IMAPS_PORT": str(self.imaps_port),
            "MAILINTAKE_LOCAL_POP3_PORT": str(self.pop3_port),
            "MAILINTAKE_LOCAL_POP3S_PORT": str(self.pop3s_port),
            "MAILINTAKE_LOCAL_CA_BUNDLE": str(self.ca_bundle),
        }


class DovecotError(RuntimeError):
    """Dovecot could not be configured, started, stopped or talked to."""


@dataclass(frozen=True)
class _Layout:
    base: Path

    @property
    def config(self) -> Path:
        return self.base / "dovecot.conf"

    @property
    def tls(self) -> Path:
        return self.base / "tls"

    @property
    def cert(self) -> Path:
        return self.tls / "cert.pem"

    @property
    def key(self) -> Path:
        return self.tls / "key.pem"

    @property
    def oauth2(self) -> Path:
        return self.base / "oauth2.conf.ext"

    @property
    def users(self) -> Path:
        return self.base / "users"

    @property
    def mail(self) -> Path:
        return self.base / "mail"

    @property
    def run(self) -> Path:
        return self.base / "run"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def log(self) -> Path:
        return self.base / "dovecot.log"

    @property
    def startup_log(self) -> Path:
        return self.base / "startup.log"

    @property
    def pid_file(self) -> Path:
        return self.run / "master.pid"


@dataclass(frozen=True)
class _Accounts:
    """System accounts the instance runs under; see ``_accounts``."""

    mail_uid: int
    mail_gid: int
    internal_user: str
    internal_group: str
    login_user: str
    as_root: bool


def _layout(root: Path | str) -> _Layout:
    base = Path(root).resolve() / ".local" / "dovecot"
    if os.geteuid() == 0 and not _traversable(base.parent.parent):
        # As root, Dovecot's processes run as `dovecot` and `dovenull`, which cannot reach a checkout under
        # a private directory (a clone in `mktemp -d` is 0700): its instance lives in the temporary
        # directory then, one per checkout.
        digest = hashlib.sha256(str(base).encode()).hexdigest()[:12]
        base = Path(tempfile.gettempdir()) / f"mailintake-dovecot-{digest}"
    return _Layout(base)


def _traversable(path: Path) -> bool:
    """Whether any user may reach ``path``: it and every directory above it let others through."""
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


def _accounts() -> _Accounts:
    if os.geteuid() == 0:
        # Dovecot refuses mail access as UID 0, so as root the mail belongs to the `dovecot` system user
        # the Debian package creates; the master drops to it and to `dovenull` as it normally does.
        try:
            internal = pwd.getpwnam("dovecot")
            pwd.getpwnam("dovenull")
        except KeyError as exc:
            raise DovecotError(
                "the dovecot/dovenull system users are missing: is Dovecot installed?"
            ) from exc
        return _Accounts(
            mail_uid=internal.pw_uid,
            mail_gid=internal.pw_gid,
            internal_user="dovecot",
            internal_group=grp.getgrgid(internal.pw_gid).gr_name,
            login_user="dovenull",
            as_root=True,
        )
    # Unprivileged: Dovecot cannot switch users, so every process (and the mail) runs as the caller.
    me = pwd.getpwuid(os.geteuid())
    return _Accounts(
        mail_uid=me.pw_uid,
        mail_gid=me.pw_gid,
        internal_user=me.pw_name,
        internal_group=grp.getgrgid(me.pw_gid).gr_name,
        login_user=me.pw_name,
        as_root=False,
    )


def info(root: Path | str) -> DovecotInfo:
    """Connection details of the instance for ``root`` (whether or not it is running)."""
    return DovecotInfo(
        host=HOST,
        imap_port=IMAP_PORT,
        imaps_port=IMAPS_PORT,
        pop3_port=POP3_PORT,
        pop3s_port=POP3S_PORT,
        ca_bundle=_layout(root).cert,
    )


def _dovecot_binary() -> str:
    # /usr/sbin is often missing from a non-root PATH.
    found = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise DovecotError("dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)")
    return found


def _ensure_certificate(layout: _Layout) -> None:
    if layout.cert.exists() and layout.key.exists():
        return
    layout.tls.mkdir(parents=True, exist_ok=True)
    cmd = [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
        "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout", str(layout.key), "-out", str(layout.cert),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DovecotError(f"openssl could not create the test certificate:\n{result.stderr}")
    os.chmod(layout.key, 0o600)
    os.chmod(layout.cert, 0o644)


def _config_text(layout: _Layout, accounts: _Accounts) -> str:
    # Login processes chroot by default, which needs root.
    no_chroot = "" if accounts.as_root else "  chroot =\n"
    return f"""\
# Generated by mailintake.localstack.dovecot on every start; edits are overwritten.
# Loopback-only test server: plain-text logins are allowed on the non-TLS ports on purpose.
instance_name = mailintake-local
base_dir = {layout.run}
state_dir = {layout.state}
log_path = {layout.log}
listen = {HOST}
protocols = imap pop3

default_internal_user = {accounts.internal_user}
default_internal_group = {accounts.internal_group}
default_login_user = {accounts.login_user}
first_valid_uid = {accounts.mail_uid}
last_valid_uid = 0
first_valid_gid = {accounts.mail_gid}
last_valid_gid = 0

disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
ssl = yes
ssl_cert = <{layout.cert}
ssl_key = <{layout.key}

mail_location = maildir:{layout.mail}/%u
namespace inbox {{
  inbox = yes
}}

passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {layout.users}
}}
# Bearer tokens (XOAUTH2, OAUTHBEARER), checked by the local authorization server's introspection.
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {layout.oauth2}
}}
userdb {{
  driver = static
  args = uid={accounts.mail_uid} gid={accounts.mail_gid} home={layout.mail}/%u
}}

service imap-login {{
{no_chroot}  inet_listener imap {{
    address = {HOST}
    port = {IMAP_PORT}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {IMAPS_PORT}
    ssl = yes
  }}
}}
service pop3-login {{
{no_chroot}  inet_listener pop3 {{
    address = {HOST}
    port = {POP3_PORT}
  }}
  inet_listener pop3s {{
    address = {HOST}
    port = {POP3S_PORT}
    ssl = yes
  }}
}}
service anvil {{
{no_chroot}}}
"""


def _oauth2_text() -> str:
    # Introspection with the token as a bearer (mode "auth"): Dovecot 2.3.19's "post" mode panics in its HTTP
    # client (http_client_request_set_payload assertion), so the RFC 7662 answer is fetched by GET. The token
    # is good only when the server says "active": true and names the user logging in (Dovecot compares
    # username_attribute with the login name).
    return f"""\
# Generated by mailintake.localstack.dovecot; see mailintake.localstack.oauth.
introspection_mode = auth
introspection_url = http://{HOST}:{OAUTH_INTROSPECTION_PORT}/introspect
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
"""


def _prepare(root: Path | str) -> tuple[_Layout, _Accounts]:
    """Create the directory layout, certificate, users file and config (idempotent)."""
    layout = _layout(root)
    accounts = _accounts()
    for directory in (layout.base, layout.run, layout.state, layout.mail):
        directory.mkdir(parents=True, exist_ok=True)
    # Dovecot's unprivileged processes must traverse down to the mail and the login sockets.
    inside_checkout = layout.base.parent.name == ".local"
    for directory in (*([layout.base.parent] if inside_checkout else []), layout.base, layout.run, layout.state):
        os.chmod(directory, 0o755)
    if accounts.as_root:
        os.chown(layout.mail, accounts.mail_uid, accounts.mail_gid)
    os.chmod(layout.mail, 0o700)
    _ensure_certificate(layout)
    if not layout.users.exists():
        _write_users(layout, accounts, [])
    layout.oauth2.write_text(_oauth2_text())
    layout.config.write_text(_config_text(layout, accounts))
    return layout, accounts


def _write_users(layout: _Layout, accounts: _Accounts, lines: list[str]) -> None:
    previous_mtime = layout.users.stat().st_mtime if layout.users.exists() else 0.0
    tmp = layout.users.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    # The auth process reads the file as the internal user; it holds passwords, so no one else may.
    os.chmod(tmp, 0o640)
    if accounts.as_root:
        os.chown(tmp, 0, accounts.mail_gid)
    os.replace(tmp, layout.users)
    # Dovecot re-reads passwd-file only when its mtime (whole seconds) or size changed: make sure a
    # same-length change within one second is not missed.
    new_mtime = max(time.time(), previous_mtime + 1)
    os.utime(layout.users, (new_mtime, new_mtime))


def is_running(root: Path | str) -> bool:
    """Whether this root's Dovecot master process is alive."""
    pid = pidfiles.read_pid(_layout(root).pid_file)
    return pid is not None and pidfiles.alive(pid, _PROGRAM)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def log_tail(root: Path | str, lines: int = 30) -> str:
    """The last lines of this instance's log, for error messages."""
    try:
        text = _layout(root).log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log yet)"
    return "\n".join(text.splitlines()[-lines:])


def start(root: Path | str) -> DovecotInfo:
    """Configure and start Dovecot for ``root``; returns at once if it already runs."""
    details = info(root)
    if is_running(root) and all(_port_open(port) for port in PORTS):
        _reload_if_changed(root)
        return details
    layout, _ = _prepare(root)
    if is_running(root):
        # Alive but not (yet) listening: most likely still starting, so wait for it below.
        pass
    else:
        busy = [port for port in PORTS if _port_open(port)]
        if busy:
            raise DovecotError(f"ports {busy} on {HOST} are taken by another process")
        # Not a pipe: the daemonised master keeps the inherited stderr open, and a pipe would never
        # reach EOF.
        with layout.startup_log.open("w+") as errors:
            returncode = subprocess.call(
                [_dovecot_binary(), "-c", str(layout.config)],
                stdin=subprocess.DEVNULL,
                stdout=errors,
                stderr=errors,
            )
            errors.seek(0)
            startup_output = errors.read()
        if returncode != 0:
            raise DovecotError(
                f"dovecot failed to start (exit {returncode}):\n{startup_output}\nlog tail:\n{log_tail(root)}"
            )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not all(_port_open(port) for port in PORTS):
        if time.monotonic() > deadline or not is_running(root):
            raise DovecotError(
                f"dovecot did not open ports {list(PORTS)} within {START_TIMEOUT_SECONDS:.0f}s\n"
                f"log tail:\n{log_tail(root)}"
            )
        time.sleep(0.1)
    return details


def _reload_if_changed(root: Path | str) -> None:
    """A running instance started from an older generated configuration (a checkout updated under a
    running stack) reloads the new one: SIGHUP makes the master re-read it."""
    layout = _layout(root)
    before = (layout.config.read_text() if layout.config.exists() else "",
              layout.oauth2.read_text() if layout.oauth2.exists() else "")
    if f"port = {IMAP_PORT}\n" not in before[0]:
        # Started with another MAILINTAKE_LOCAL_PORT_OFFSET: the ports that answered belong to another
        # checkout's stack. Rewriting this one's configuration would move it onto them.
        return
    _prepare(root)
    if (layout.config.read_text(), layout.oauth2.read_text()) == before:
        return
    pid = pidfiles.read_pid(layout.pid_file)
    if pid is not None and pidfiles.alive(pid, _PROGRAM):
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.5)  # the master re-reads the configuration and restarts its auth process


def stop(root: Path | str) -> None:
    """Stop this root's Dovecot, if it runs."""
    layout = _layout(root)
    pid = pidfiles.read_pid(layout.pid_file)
    if pid is None or not pidfiles.alive(pid, _PROGRAM):
        return
    # The pid comes from this instance's own pid file, so this never signals any other Dovecot.
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while pidfiles.alive(pid, _PROGRAM):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    # Open IMAP and POP3 sessions outlive the master: end them too, as a server that goes away does. The
    # daemonised master leads its own process group, which holds this instance's processes only.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        layout.pid_file.unlink()


def ensure_user(root: Path | str, user: str, password: str) -> None:
    """Add ``user`` with ``password``, or change its password; a running Dovecot picks it up at once."""
    if not _USER_RE.match(user):
        raise ValueError(f"unsupported user name for the local mail server: {user!r}")
    if any(ch in password for ch in _FORBIDDEN_IN_PASSWORD):
        raise ValueError("the password may not contain ':', line breaks or NUL")
    layout, accounts = _prepare(root)
    entry = f"{user}:{{PLAIN}}{password}::::::"
    lines = [line for line in layout.users.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if line.split(":", 1)[0] != user]
    if [*kept, entry] == lines:
        return
    _write_users(layout, accounts, [*kept, entry])
    if is_running(root):
        _wait_for_login(root, user, password)


def _wait_for_login(root: Path | str, user: str, password: str, seconds: float = 5.0) -> None:
    """Dovecot's auth process looks at passwd-file at most once a second: wait until it sees the change."""
    details = info(root)
    deadline = time.monotonic() + seconds
    while True:
        conn = imaplib.IMAP4(details.host, details.imap_port, timeout=10)
        try:
            conn.login(user, password)
            return
        except imaplib.IMAP4.error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()


def clear_mail(root: Path | str) -> None:
    """Remove every local user's mail (the users stay), so a reset local stack starts with empty mailboxes."""
    layout = _layout(root)
    if layout.mail.is_dir():
        for home in layout.mail.iterdir():
            shutil.rmtree(home, ignore_errors=True)


def _quote_mailbox(name: str) -> str:
    if not name.isascii():
        # Non-ASCII names would need IMAP's modified UTF-7; nothing local needs them.
        raise ValueError(f"only ASCII folder names are supported locally: {name!r}")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


_APPENDUID_RE = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


def deliver(root: Path | str, user: str, password: str, raw: bytes, folder: str = "INBOX") -> int | None:
    """Store ``raw`` in ``folder`` of ``user``'s mailbox via IMAP APPEND; returns the new UID if known.

    The folder is created if missing. Use CRLF line endings: IMAP serves messages with CRLF, so that is
    the only form that reads back byte for byte.
    """
    details = info(root)
    conn = imaplib.IMAP4(details.host, details.imap_port, timeout=30)
    try:
        conn.login(user, password)
        mailbox = _quote_mailbox(folder)
        if folder.upper() != "INBOX":
            # NO means it exists already; a real failure shows up in the APPEND below.
            conn.create(mailbox)
        # imaplib.append rewrites bare LF/CR to CRLF; set the literal ourselves so the bytes go as given.
        conn.literal = raw  # type: ignore[assignment]
        typ, data = conn._simple_command("APPEND", mailbox)
        if typ != "OK":
            raise DovecotError(f"APPEND to {folder!r} for {user!r} failed: {data!r}")
        match = _APPENDUID_RE.search(data[0] if data and isinstance(data[0], bytes) else b"")
        return int(match.group(1)) if match else None
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            conn.logout()
