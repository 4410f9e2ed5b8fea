"""What an uploaded file is called and how it is served: its sanitised name, its type, its Content-Disposition.

The name a browser sends is the user's to choose and an attacker's too:
path parts (`../../etc/passwd`, `C:\\Users\\x\\a.pdf`), control and
bidirectional-override characters (`invoice\u202efdp.exe` shows as
`invoiceexe.pdf`), a leading dot that hides a file, names Windows reserves,
and lengths no file system takes. `sanitised` keeps the readable part and
drops the rest; the name is only ever shown and offered back as a download
name, never used as a path (objects have random names, app.storage).

The type served is decided from the content by the scanner at upload, from
a short list of types a browser will not run (no HTML, no SVG): anything
else is served as application/octet-stream, always as an attachment with nosniff.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

NAME_LIMIT = 200              # characters; the column takes 255
EXTENSION_LIMIT = 20
FALLBACK = "evidence"
_DROPPED = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}   # controls, format (bidi), surrogates, private, unassigned
_RESERVED = {"<": "_", ">": "_", ":": "_", '"': "_", "|": "_", "?": "_", "*": "_"}
_BROWSER_ESCAPES = re.compile(r"%(22|0[AaDd])")
_WINDOWS_DEVICES = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)

# The scanner's file type (app.dlp: decided from the content) -> the Content-Type it is
# served with. Text goes out without a charset: it may be UTF-8, UTF-16 or
# Windows-1252, and is served byte for byte as uploaded. Whatever else the
# scanner could not name ("binary", "zip") goes out as octet-stream.
CONTENT_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "text": "text/plain",
}
OCTET_STREAM = "application/octet-stream"


def sanitised(raw: str | None) -> str:
    """A file name safe to store, show and offer back: never empty, never a path."""
    # Browsers send a name's '"', CR and LF as %22, %0D and %0A (WHATWG multipart/form-data encoding).
    name = _BROWSER_ESCAPES.sub(lambda m: chr(int(m.group(1), 16)), raw or "")
    name = unicodedata.normalize("NFKC", name)
    # After normalising: a full-width solidus (U+FF0F) has become '/' by now.
    name = re.split(r"[/\\]", name)[-1]
    name = re.sub(r"[\t\n\r\v\f]+", " ", name)   # tabs and line ends become spaces; other controls go below
    name = "".join(_RESERVED.get(c, c) for c in name if unicodedata.category(c) not in _DROPPED)
    name = re.sub(r" +", " ", name).strip(" .")
    if _WINDOWS_DEVICES.match(name):
        name = "_" + name
    if len(name) > NAME_LIMIT:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and len(extension) <= EXTENSION_LIMIT:
            name = stem[:NAME_LIMIT - len(extension) - 1].rstrip(" .") + "." + extension
        else:
            name = name[:NAME_LIMIT].rstrip(" .")
    return name or FALLBACK


def content_type_for(file_type: str | None) -> str:
    return CONTENT_TYPES.get((file_type or "").lower(), OCTET_STREAM)


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name in UTF-8 (RFC 6266, RFC 8187)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9 !#$&'()+.=@\[\]^_{}~-]", "_", ascii_name).strip(" .") or FALLBACK
    return f'attachment; filename="{ascii_name}"; filename*=UTF-8\'\'{quote(name, safe="")}'
