"""Shards on the real kube-apiserver (issue 13, "Sharding"): 3 shards x 2 replicas over 300
rollouts; every rollout is acted on by exactly one process, the leader of its shard; killing a
shard's leader moves only that shard; and a change of shard count never has two shards act on
one rollout."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict

import pytest

from featurerollout.process.sharding import Shard, lease_name, shard_of
from tests.process.ha.support import SHORT, Replicas, make_rollout, status, wait_holder
from tests.support.cluster import Cluster, wait_until

pytestmark = pytest.mark.integration

KEY = "flags.flagd.json"
CHEAP_STAGES = [{"weight": 50, "duration": "1s"}, {"weight": 100}]


def make_rollouts(cluster: Cluster, names: list[str], stages: list[dict[str, object]] = CHEAP_STAGES) -> None:
    """Each rollout on a ConfigMap of its own (no write conflicts to muddy who did what); no analysis."""
    for name in names:
        cluster.core.create_namespaced_config_map(
            "default", {"metadata": {"name": f"cm-{name}"}, "data": {KEY: '{"flags": {}}\n'}})
        make_rollout(cluster, name, configmap=f"cm-{name}", stages=stages)


def identity_of(user_agent: str) -> str:
    """The operator's client says `featurerollout/VERSION (identity)`."""
    return user_agent.rsplit("(", 1)[-1].rstrip(")") if user_agent.startswith("featurerollout/") else ""


def writers(cluster: Cluster) -> dict[str, list[str]]:
    """For each rollout, the identities that wrote its status or its ConfigMap, in the order written."""
    return {name: [who for who, _ in writes] for name, writes in timed_writers(cluster).items()}


def timed_writers(cluster: Cluster) -> dict[str, list[tuple[str, float]]]:
    """For each rollout, (identity, when the API server received it) of each write of its status or
    its ConfigMap, in the order written."""
    seen: dict[str, list[tuple[str, float]]] = defaultdict(list)
    records = [r for r in cluster.log.requests() if r["verb"] in ("patch", "update") and r["status"] < 300]
    for record in sorted(records, key=lambda r: r["time"]):
        who = identity_of(record.get("user_agent", ""))
        if not who:
            continue
        if record["resource"] == "featurerollouts" and record["subresource"] == "status":
            seen[record["name"]].append((who, record["time"]))
        elif record["resource"] == "configmaps" and record["name"].startswith("cm-"):
            seen[record["name"].removeprefix("cm-")].append((who, record["time"]))
    return seen


def leaders(cluster: Cluster, count: int, identities: list[str]) -> dict[int, str]:
    return {i: wait_holder(cluster, identities, 60, lease=lease_name(Shard(i, count)))[0] for i in range(count)}


def test_three_shards_of_two_replicas_share_300_rollouts_one_actor_each(cluster: Cluster, replicas: Replicas) -> None:
    identities = [f"shard-{i}-{r}" for i in range(3) for r in "ab"]
    for identity in identities:
        replicas.start(identity, "--shard", f"{identity.split('-')[1]}/3", timings=SHORT)
    held = leaders(cluster, 3, identities)
    assert all(held[i].startswith(f"shard-{i}-") for i in range(3)), held
    names = [f"r-{i:03d}" for i in range(300)]
    slices = {name: shard_of("default", name, 3) for name in names}
    assert set(slices.values()) == {0, 1, 2}
    make_rollouts(cluster, names)
    for name in names:
        wait_until(lambda name=name: status(cluster, name).get("phase") == "Succeeded", 240, f"{name} to succeed")
    done = writers(cluster)
    for name in names:
        assert done[name], f"nobody wrote {name}"
        assert set(done[name]) == {held[slices[name]]}, f"{name} (shard {slices[name]}): written by {done[name]}"
        assert status(cluster, name)["shardLease"] == lease_name(Shard(slices[name], 3))
    # The standbys wrote nothing at all (at start-up, each replica tried to create its Lease:
    # the API server let one create succeed, 409 AlreadyExists for the other).
    standbys = set(identities) - set(held.values())
    assert not [r for r in cluster.log.requests() if identity_of(r.get("user_agent", "")) in standbys
                and r["verb"] in ("create", "update", "patch", "delete") and r["status"] < 300]

    # Kill shard 1's leader: only shard 1's Lease changes hands; the others keep their leaders.
    cluster.log.clear_requests()
    victim = held[1]
    replicas.names[victim].kill9()
    heir = next(i for i in identities if i.startswith("shard-1-") and i != victim)
    wait_holder(cluster, [heir], float(SHORT[0]) + 10, lease=lease_name(Shard(1, 3)))
    after = leaders(cluster, 3, [i for i in identities if i != victim])
    assert after == {**held, 1: heir}
    more = [f"s-{i:03d}" for i in range(60)]
    make_rollouts(cluster, more)
    for name in more:
        wait_until(lambda name=name: status(cluster, name).get("phase") == "Succeeded", 120, f"{name} to succeed")
    done = writers(cluster)
    for name in more:
        assert set(done[name]) == {after[shard_of("default", name, 3)]}, f"{name}: written by {done[name]}"


def test_a_change_of_shard_count_never_has_two_shards_act_on_one_rollout(
    cluster: Cluster, replicas: Replicas
) -> None:
    """2 shards become 3 while rollouts step: the new layout starts alongside the old one (as a
    rolling upgrade does), then the old one stops. Each rollout's writers are the old shard's
    leader, then the new shard's, never interleaved; a rollout waits at most one lease duration."""
    old = [f"old-{i}" for i in range(2)]
    for i, identity in enumerate(old):
        replicas.start(identity, "--shard", f"{i}/2", timings=SHORT)
    leaders(cluster, 2, old)
    names = [f"m-{i:02d}" for i in range(30)]
    stepping = [{"weight": w, "duration": "2s"} for w in (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)] + [{"weight": 100}]
    make_rollouts(cluster, names, stepping)
    wait_until(lambda: all(status(cluster, n).get("shardLease", "").endswith("-of-2") for n in names), 60,
               "the old layout to claim every rollout")
    new = [f"new-{i}" for i in range(3)]
    for i, identity in enumerate(new):
        replicas.start(identity, "--shard", f"{i}/3", timings=SHORT)
    leaders(cluster, 3, new)
    time.sleep(3)  # both layouts run side by side for a while: the point of this test
    stopping: dict[str, float] = {}  # old identity -> when SIGTERM was sent (wall clock, as the audit log's)
    for identity in old:
        stopping[identity] = time.time()
        replicas.names[identity].stop()
    # Not finished when the old layout was gone: only the new one can finish these, so each must
    # show a handover. Each needs 10 stages of 2 s; the old layout stops some 10 s after they began.
    unfinished = [n for n in names if status(cluster, n).get("phase") != "Succeeded"]
    assert unfinished, "every rollout finished before the old layout stopped: no handover to check"
    for name in names:
        wait_until(lambda name=name: status(cluster, name).get("phase") == "Succeeded", 120, f"{name} to succeed")
    # The new layout claims every rollout, finished ones too, once the old Leases are released.
    wait_until(lambda: all(status(cluster, n)["shardLease"].endswith("-of-3") for n in names), 30,
               "every rollout to be claimed by the new layout")
    done = writers(cluster)
    timed = timed_writers(cluster)
    lease_duration = float(SHORT[0])
    takeovers: list[float] = []
    for name in names:
        sequence = [who for who, _ in itertools.groupby(done[name])]
        old_leader, new_leader = f"old-{shard_of('default', name, 2)}", f"new-{shard_of('default', name, 3)}"
        assert sequence[0] == old_leader, f"{name}: {done[name]}"
        assert len(sequence) <= 2 and all(w.startswith("old-") for w in sequence[:-1]), f"{name}: {done[name]}"
        if len(sequence) == 2:
            assert sequence[1] == new_leader, f"{name}: {done[name]}"
        if name in unfinished:
            assert sequence == [old_leader, new_leader], f"{name} was handed over, but written by {done[name]}"
        handover = [(a, b) for a, b in itertools.pairwise(timed[name]) if a[0] != b[0]]
        for (_, last_old), (_, first_new) in handover:
            # The 2 s stage it was in, plus at most one lease duration (4 s), plus a margin for the
            # loaded machine.
            assert first_new - last_old <= 2 + lease_duration + 2, f"{name}: paused {first_new - last_old:.1f}s"
        # The new layout acts on it within one lease duration of its old shard's SIGTERM, which
        # released that Lease (measured: 0.25 to 1.3 s; a Lease left to expire takes 4 to 7 s);
        # and never before it.
        first_new = min(when for who, when in timed[name] if who.startswith("new-"))
        since_stop = first_new - stopping[old_leader]
        takeovers.append(since_stop)
        assert 0 < since_stop <= lease_duration, f"{name}: first written by the new layout {since_stop:.1f}s " \
            f"after {old_leader}'s SIGTERM"
    print(f"{len(unfinished)} of {len(names)} rollouts handed over mid-rollout; the new layout first wrote each "
          f"{min(takeovers):.2f} to {max(takeovers):.2f} s after its old shard's SIGTERM")
