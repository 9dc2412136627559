"""Which rollouts a shard takes, and whether it may act on one: pure functions, no I/O.

`featurerollout run --shard I/N` takes the rollouts whose stable hash of `namespace/name` falls
in slice I of N. The hash is SHA-256 (the same in every process and every Python, unlike
`hash()`), read as a number in [0, 2**64) and cut into N equal ranges, so that each shard gets
about 1/N of the rollouts whatever their names.

A change of shard count moves rollouts between shards that run at the same time for a while
(old pods stopping, new ones starting). Two shards must never act on one rollout, so acting is
tied to a claim: the rollout's `status.shardLease` names the Lease of the shard that acts on it.
A leader acts on a rollout that it has claimed; it claims one whose claim is empty, or names a
Lease nobody holds any more (released, or not renewed for its whole duration), and waits
otherwise. The claim is a status write guarded by the resourceVersion that was read, so of two
shards racing for one rollout exactly one wins (the other gets 409 Conflict), and every later
write of the loser fails the same way. See docs/high-availability.md.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass

LEASE_NAME = "featurerollout"
MAX_SHARDS = 1024
_SHARD = re.compile(r"^(\d+)/(\d+)$")
_SPACE = 2**64


class InvalidShard(ValueError):
    """A --shard value that is not INDEX/COUNT with 0 <= INDEX < COUNT."""


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def covers(self, namespace: str, name: str) -> bool:
        return shard_of(namespace, name, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`I/N` (0-based index, count) as a Shard; InvalidShard says what is wrong."""
    match = _SHARD.match(text.strip())
    if match is None:
        raise InvalidShard(f"--shard {text!r}: expected INDEX/COUNT, e.g. 0/3")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= MAX_SHARDS:
        raise InvalidShard(f"--shard {text!r}: COUNT must be between 1 and {MAX_SHARDS}")
    if index >= count:
        raise InvalidShard(f"--shard {text!r}: INDEX must be below COUNT (0 to {count - 1})")
    return Shard(index, count)


def rollout_hash(namespace: str, name: str) -> int:
    """A stable 64-bit hash of `namespace/name`."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def shard_of(namespace: str, name: str, count: int) -> int:
    """The index of the slice of [0, 2**64) that the rollout's hash falls in, of `count` equal slices."""
    return rollout_hash(namespace, name) * count // _SPACE


def lease_name(shard: Shard | None) -> str:
    """The Lease a process (or a shard) is elected on: `featurerollout` or `featurerollout-shard-I-of-N`."""
    return LEASE_NAME if shard is None else f"{LEASE_NAME}-shard-{shard.index}-of-{shard.count}"


class Claim(enum.Enum):
    ACT = "act"  # the rollout is claimed by this Lease
    CLAIM = "claim"  # unclaimed, or claimed by a Lease nobody holds: claim it (a guarded write), then act
    WAIT = "wait"  # claimed by a Lease that is still held: leave it alone, look again later


def claim_action(claimed_by: str | None, mine: str, claimant_alive: bool | None) -> Claim:
    """What a leader elected on Lease `mine` does with a rollout claimed by `claimed_by`.
    `claimant_alive`: whether that other Lease is held (None when not looked up, for no claim or
    our own). An unknown state must be passed as alive: never take a rollout over on a guess."""
    if claimed_by == mine:
        return Claim.ACT
    if not claimed_by:
        return Claim.CLAIM
    return Claim.WAIT if claimant_alive is None or claimant_alive else Claim.CLAIM
