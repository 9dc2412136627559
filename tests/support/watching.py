"""What an object went through, by the API server's own record: a watch in a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from kubernetes import watch

T = TypeVar("T")


@contextmanager
def values_seen(list_fn: Callable[..., Any], *args: Any, name: str, start: str, value: Callable[[Any], T],
                timeout: int = 600) -> Iterator[list[T]]:
    """Each value `value(object)` that the object `name` (listed by `list_fn(*args)`) took from
    resourceVersion `start` on, in the order the API server stored them, repeats left out. A watch
    that broke before the block ended saw only part of the writes: then it raises, instead of the
    test comparing a prefix."""
    seen: list[T] = []
    stream = watch.Watch()
    stopping = threading.Event()
    failed: list[BaseException] = []

    def follow() -> None:
        try:
            for event in stream.stream(list_fn, *args, resource_version=start, field_selector=f"metadata.name={name}",
                                       timeout_seconds=timeout):
                current = value(event["object"])
                if not seen or seen[-1] != current:
                    seen.append(current)
        except Exception as error:  # an error after the block ended is the stream being closed
            if not stopping.is_set():
                failed.append(error)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stopping.set()
        stream.stop()
    if failed:
        raise AssertionError(f"the watch of {name} failed during the test: {failed[0]!r}")
