"""Pure: when `featurerollout abort|promote|...` may report a confirmed request (manual.py)."""

from __future__ import annotations

from featurerollout.api import settled
from featurerollout.commands.manual import rollback_pending

DONE = {"id": "r-1", "action": "abort", "outcome": "Done"}


def test_a_rollback_on_record_before_its_0_percent_is_pending() -> None:
    # engine.rollback_intent: RolledBack with the old weight, the 0% being written.
    assert rollback_pending({"phase": "RolledBack", "currentWeight": 10}, DONE)
    assert not settled({"phase": "RolledBack", "currentWeight": 10})


def test_a_rollback_at_0_percent_and_every_other_outcome_are_not() -> None:
    assert not rollback_pending({"phase": "RolledBack", "currentWeight": 0}, DONE)
    assert not rollback_pending({"phase": "Paused", "currentWeight": 10}, {**DONE, "action": "pause"})
    assert not rollback_pending({"phase": "RolledBack", "currentWeight": 10}, {**DONE, "outcome": "Ignored"})
    assert not rollback_pending({"phase": "RolledBack", "currentWeight": 10}, {**DONE, "outcome": "Refused"})
    assert settled({"phase": "Succeeded", "currentWeight": 100}) and settled({"phase": "Failed"})
    assert not settled({"phase": "Progressing", "currentWeight": 10}) and not settled({})
