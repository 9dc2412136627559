"""Sharding and the claim rule (sharding.py), and the Lease settings' checks (leader.py): pure."""

from __future__ import annotations

import collections
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurerollout.process.leader import InvalidTimings, LeaseSettings, default_identity, default_namespace
from featurerollout.process.sharding import (
    Claim,
    InvalidShard,
    Shard,
    claim_action,
    lease_name,
    parse_shard,
    rollout_hash,
    shard_of,
)

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40)


def test_the_hash_is_sha256_of_namespace_slash_name_and_never_changes() -> None:
    # A fixed value: a hash that changed between versions would move rollouts on an upgrade.
    assert rollout_hash("shop", "new-checkout") == int.from_bytes(
        hashlib.sha256(b"shop/new-checkout").digest()[:8], "big"
    )
    assert shard_of("shop", "new-checkout", 3) == rollout_hash("shop", "new-checkout") * 3 // 2**64
    assert [shard_of("default", f"r-{i}", 3) for i in range(6)] == [
        shard_of("default", f"r-{i}", 3) for i in range(6)
    ]


@given(names, names, st.integers(1, 64))
def test_exactly_one_shard_covers_each_rollout(namespace: str, name: str, count: int) -> None:
    covering = [i for i in range(count) if Shard(i, count).covers(namespace, name)]
    assert covering == [shard_of(namespace, name, count)]


@given(names, names, st.integers(1, 32))
def test_slices_are_ranges_so_doubling_the_count_splits_each_slice(namespace: str, name: str, count: int) -> None:
    assert shard_of(namespace, name, 2 * count) // 2 == shard_of(namespace, name, count)


def test_the_slices_are_about_even() -> None:
    counts = collections.Counter(shard_of("default", f"rollout-{i:04d}", 3) for i in range(3000))
    assert set(counts) == {0, 1, 2}
    assert all(800 <= n <= 1200 for n in counts.values()), counts


@pytest.mark.parametrize(("text", "shard"), [("0/1", Shard(0, 1)), ("2/3", Shard(2, 3)), (" 0/3 ", Shard(0, 3))])
def test_parse_shard(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard


@pytest.mark.parametrize(("text", "says"), [
    ("3/3", "INDEX must be below COUNT (0 to 2)"), ("1/0", "COUNT must be between 1 and 1024"),
    ("a/3", "expected INDEX/COUNT"), ("-1/3", "expected INDEX/COUNT"), ("1", "expected INDEX/COUNT"),
])
def test_a_bad_shard_is_refused_with_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidShard, match="--shard") as error:
        parse_shard(text)
    assert says in str(error.value)


def test_lease_names() -> None:
    assert lease_name(None) == "featurerollout"
    assert lease_name(Shard(1, 3)) == "featurerollout-shard-1-of-3"


def test_claim_rule() -> None:
    mine = "featurerollout-shard-0-of-2"
    assert claim_action(mine, mine, None) == Claim.ACT
    assert claim_action(None, mine, None) == Claim.CLAIM
    assert claim_action("", mine, None) == Claim.CLAIM
    old = "featurerollout-shard-1-of-3"
    assert claim_action(old, mine, True) == Claim.WAIT
    assert claim_action(old, mine, False) == Claim.CLAIM
    # Not looked up is taken as held: never on a guess.
    assert claim_action(old, mine, None) == Claim.WAIT


@pytest.mark.parametrize(("timings", "flag"), [
    ((15, 10, 0.5), "--retry-period"), ((15, 2, 2), "--renew-deadline"), ((10, 10, 2), "--lease-duration"),
    ((15.5, 10, 2), "--lease-duration"),
])
def test_timings_that_cannot_work_name_the_flag(timings: tuple[float, float, float], flag: str) -> None:
    with pytest.raises(InvalidTimings, match=flag):
        LeaseSettings("featurerollout", "default", "me", *timings)


def test_defaults_come_from_the_downward_api_else_the_host() -> None:
    assert default_identity({"POD_NAME": "featurerollout-7d9-abc"}) == "featurerollout-7d9-abc"
    assert default_identity({}).endswith(f"-{__import__('os').getpid()}")
    assert default_namespace({"POD_NAMESPACE": "ops"}) == "ops"
    assert default_namespace({}) == "default"


def test_run_refuses_bad_flags_naming_them(capsys: pytest.CaptureFixture[str]) -> None:
    from featurerollout.commands.cli import main

    assert main(["run", "--renew-deadline", "2", "--kubeconfig", "/nonexistent"]) == 2
    assert "--renew-deadline 2: must be more than 1.2 x --retry-period (2.4)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["run", "--shard", "3/3"])
    assert exited.value.code == 2
    assert "argument --shard: '3/3': INDEX must be below COUNT (0 to 2)" in capsys.readouterr().err
