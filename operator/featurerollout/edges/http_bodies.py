"""Reading HTTP answers with a byte cap: the one place every answer the operator reads goes through.

Two rules, one per kind of answer:

- an answer whose content matters (Prometheus's JSON) is read whole or not at all: past the cap
  the read stops, the connection is dropped and `AnswerTooLarge` names the cap, so that one huge
  answer costs at most the cap in memory, never the pod (`CappedSession`, `read_capped`);
- an answer that is only shown (a webhook's error body, of which 200 bytes reach a message) is
  read up to its limit and cut there (`read_at_most`).

Sizes count the bytes after any `Content-Encoding` is undone, so a compressed answer cannot
expand past the cap either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import requests

# The most of one Prometheus answer the operator reads (`featurerollout run --max-response-bytes`).
MAX_ANSWER_BYTES = 10 * 1024 * 1024
CHUNK_BYTES = 64 * 1024


def size_text(size: int) -> str:
    """`10 MiB`, `64 KiB`, `1000 bytes`: a cap as people read it."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


class AnswerTooLarge(Exception):
    """An answer longer than the cap; nothing past the cap was read."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        super().__init__(f"answer larger than {size_text(cap)}")


def read_capped(chunks: Iterable[bytes], cap: int) -> bytes:
    """The whole answer, or AnswerTooLarge as soon as it passes `cap` bytes (the rest is not read)."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise AnswerTooLarge(cap)
        parts.append(chunk)
    return b"".join(parts)


async def read_at_most(response: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of an httpx answer opened with `client.stream(...)`: the rest is not read."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        parts.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


class CappedSession(requests.Session):
    """A requests session whose answers are read with a cap: each request is streamed and its body
    read here, at most `max_bytes` of it; past that, AnswerTooLarge (the connection is closed, not
    returned to the pool). Callers (prometheus-api-client) then find `response.content` as usual."""

    def __init__(self, max_bytes: int = MAX_ANSWER_BYTES) -> None:
        super().__init__()
        self.max_bytes = max_bytes

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["stream"] = True
        response = super().request(*args, **kwargs)
        try:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_bytes and not response.headers.get("Content-Encoding"):
                raise AnswerTooLarge(self.max_bytes)
            response._content = read_capped(response.iter_content(CHUNK_BYTES), self.max_bytes)
        finally:
            response.close()  # read in full (back to the pool) or cut short (the connection dropped)
        return response
