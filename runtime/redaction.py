"""Credentials out of every URL or pipeline text that is shown or stored (messages, logs, the stats file, the web
view, /streams): the one function for it. runtime/cpp/src/redaction.cpp is its twin; tests/redact_cases.json holds
both to the same cases.

What counts as a credential: a URL's userinfo (`rtsp://admin:PW@cam` -> `rtsp://admin:***@cam`; a lone token
`https://TOKEN@host` -> `https://***@host`), and the value of a parameter whose key, percent-decoded and ignoring
case, is one of SECRET_KEYS, in a query (`?user=admin&password=PW`) or a GStreamer pipeline (`user-pw=PW`).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

SECRET_KEYS = frozenset(
    {
        "password", "passwd", "pwd", "pass", "passphrase", "secret", "token", "access_token", "auth",
        "authorization", "key", "apikey", "api_key", "api-key", "signature", "sig", "user-pw", "proxy-pw",
        "x-amz-signature", "x-amz-security-token", "x-goog-signature",
    }
)  # fmt: skip
MASK = "***"
_AUTHORITY_END = "/?#\"' \t\r\n"
# A key=value parameter: after the start, a query or pipeline separator; a value quoted or up to the next separator.
_PARAM = re.compile(r"""(^|[?&;, \t\r\n])([A-Za-z0-9_.%-]+)=("[^"]*"|'[^']*'|[^&#;, \t\r\n"']*)""")


def redact(text: str) -> str:
    """`text` with every credential replaced by ***; the rest unchanged."""
    return _mask_params(_mask_userinfo(text))


def _mask_params(text: str) -> str:
    return _PARAM.sub(_mask_param, text)


def _mask_userinfo(text: str) -> str:
    out, i = [], 0
    while (found := text.find("://", i)) >= 0:
        start = end = found + 3
        while end < len(text) and text[end] not in _AUTHORITY_END:
            end += 1
        authority = text[start:end]
        at = authority.rfind("@")
        out.append(text[i:start])
        if at >= 0:
            user, colon, _ = authority[:at].partition(":")
            out.append((f"{user}:{MASK}" if colon else MASK) + authority[at:])
        else:
            out.append(authority)
        i = end
    out.append(text[i:])
    return "".join(out)


def _mask_param(match: re.Match) -> str:
    lead, key, value = match.groups()
    quote = value[0] if value and value[0] in "\"'" else ""
    if value and unquote(key).lower() in SECRET_KEYS:
        return f"{lead}{key}={quote}{MASK}{quote}"
    if quote:  # a quoted value may hold a query of its own: location="http://cam/a?password=PW"
        return f"{lead}{key}={quote}{_mask_params(value[1:-1])}{quote}"
    return match.group(0)
