"""The metric provider interface, as Flagger's `RunQuery(q) -> float` and `IsOnline()`.

A provider turns one query into one Measurement: a number, NoData or Error. It never raises for
anything a user or a server can cause: an unreachable server, a broken query and a timeout are
all Error measurements with a message meant for people. More backends (Datadog, CloudWatch, ...)
can follow behind the same two methods.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from featurerollout.core.measurement import Measurement


@runtime_checkable
class MetricProvider(Protocol):
    """A metrics backend: one query in, one Measurement out."""

    async def measure(self, query: str) -> Measurement:
        """Run one (already rendered) query. Never raises for server or query problems."""
        ...

    async def is_online(self) -> bool:
        """Whether the backend answers at all (for a status condition, not for verdicts)."""
        ...

    async def aclose(self) -> None:
        """Release connections and temporary files."""
        ...
