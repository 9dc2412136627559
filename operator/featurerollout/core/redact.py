"""What a credential inside a URL or a message looks like once shown: the one place that redacts.

Pure (no urllib: the core imports no I/O library), so that the engine's own words (a gate's
"asking POST <url>") and every edge (Prometheus, webhook gates and targets, notifications) show a
URL the same way:

- `shown_url`: a URL with its userinfo (`user:password@`, or a bare `token@`) and the values of
  query parameters that look like credentials (`token`, `access_token`, `api_key`, `password`,
  `sig`, ...) replaced by `[redacted]`; the rest (scheme, host, path) kept, since it says where;
- `url_secrets`: those very values, for `scrub` to take out of any text that echoes them (an
  error from the HTTP client, an answer's body);
- `scrub`: a text with each secret, and for a secret that is a URL (a notification receiver's,
  where Slack and Teams keep the token in the path) its path and query too, replaced.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?:(?P<userinfo>[^/?#@]*)@)?(?P<rest>.*)$", re.DOTALL)
# Query parameter names that carry a credential: a name containing one of these words.
_CREDENTIAL_NAME = re.compile(r"token|secret|passw|pwd|auth|key|sig|credential|session|code", re.IGNORECASE)


def _query_parts(rest: str) -> tuple[str, str, str]:
    """`rest` (after the authority's start) as (before the query, the query, the fragment with its #)."""
    before, hash_, fragment = rest.partition("#")
    path, question, query = before.partition("?")
    return path, query if question else "", hash_ + fragment


def _credential_values(query: str) -> list[tuple[str, str]]:
    found = []
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if equals and value and _CREDENTIAL_NAME.search(name):
            found.append((name, value))
    return found


def url_secrets(url: str) -> list[str]:
    """The credentials a URL carries: its userinfo's password (or a bare userinfo, a token) and the
    values of its credential-like query parameters."""
    match = _URL.match(url.strip())
    if match is None:
        return []
    secrets: list[str] = []
    userinfo = match.group("userinfo")
    if userinfo:
        user, colon, password = userinfo.partition(":")
        secrets.append(password if colon else user)
    _, query, _ = _query_parts(match.group("rest"))
    secrets += [value for _, value in _credential_values(query)]
    return [s for s in secrets if s]


def shown_url(url: str) -> str:
    """The URL as status, Events, logs and metrics show it: credentials replaced by [redacted]."""
    match = _URL.match(url.strip())
    if match is None:
        return url
    userinfo = match.group("userinfo")
    shown_userinfo = ""
    if userinfo is not None:
        user, colon, password = userinfo.partition(":")
        shown_userinfo = (f"{user}:{REDACTED}@" if password else f"{user}:@") if colon else f"{REDACTED}@"
    path, query, fragment = _query_parts(match.group("rest"))
    if query:
        pairs = []
        for pair in query.split("&"):
            name, equals, value = pair.partition("=")
            pairs.append(f"{name}={REDACTED}" if equals and value and _CREDENTIAL_NAME.search(name) else pair)
        path += "?" + "&".join(pairs)
    return f"{match.group('scheme')}{shown_userinfo}{path}{fragment}"


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every secret, and a URL's path and query (where Slack and Teams keep their
    token), replaced by [redacted]."""
    for secret in secrets:
        if not secret:
            continue
        pieces = [secret]
        match = _URL.match(secret) if "://" in secret else None
        if match is not None:
            rest = match.group("rest")
            _, slash, after_host = rest.partition("/")
            path_and_query = (slash + after_host).partition("#")[0]
            _, query, _ = _query_parts(rest)
            pieces += [secret.split("://", 1)[1], path_and_query, query]
        for piece in sorted(pieces, key=len, reverse=True):
            if len(piece) > 3:
                text = text.replace(piece, REDACTED)
    return text


def scrub_url(text: str, url: str) -> str:
    """`text` with the URL shown as `shown_url` shows it, and its credentials taken out wherever
    else the text echoes them (an HTTP client's error, an answer's body)."""
    shown = shown_url(url)
    if shown != url:
        text = text.replace(url, shown)
    for secret in url_secrets(url):
        if len(secret) > 3:
            text = text.replace(secret, REDACTED)
    return text
