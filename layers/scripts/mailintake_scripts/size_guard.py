"""Example guard: refuse mail that is too large or carries executable attachments.

Configure: ``mailintake scripts set --guard mailintake_scripts.size_guard:guard``.
Parameters (system settings): ``script.maxMessageBytes`` (default 10485760) and
``script.blockedExtensions`` (comma-separated, default below).
"""

from __future__ import annotations

from mailintake.scripts import MessageView, Reject

BLOCKED = (".exe,.com,.bat,.cmd,.scr,.pif,.msi,.msp,.dll,.cpl,.jar,.js,.jse,.vbs,.vbe,.wsf,.wsh,.ps1,.psm1,"
           ".hta,.lnk,.reg,.iso,.img,.apk,.app,.dmg,.sh")
EXECUTABLE_TYPES = ("application/x-msdownload", "application/x-msdos-program", "application/x-executable",
                    "application/x-sh", "application/java-archive", "application/vnd.microsoft.portable-executable")


def guard(message: MessageView) -> Reject | None:
    limit = int(message.params.get("script.maxMessageBytes", 10 * 1024 * 1024))
    if message.size > limit:
        return Reject(f"the message is {message.size} bytes; this address accepts at most {limit}")
    blocked = tuple(e.strip().lower() for e in message.params.get("script.blockedExtensions", BLOCKED).split(",")
                    if e.strip())
    for attachment in message.attachments:
        name = attachment.filename.lower()
        if name.endswith(blocked) or attachment.content_type.lower() in EXECUTABLE_TYPES:
            return Reject(f"attachment {attachment.filename!r} is an executable file, which is not accepted")
    return None
