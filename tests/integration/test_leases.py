"""Run leases on SQLite and PostgreSQL: claims, contention, expiry, heartbeats, fencing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from kodr_core import events as ev
from kodr_core.errors import ConcurrencyConflict, RunLocked, RunNotFound
from store.event_store import EventStore
from store.leases import Lease, is_local_owner_dead, owner_id

A = "host-a:101:aaaaaaaa"
B = "host-b:202:bbbbbbbb"
T0 = 1_000_000.0


def new_run(store: EventStore, run_id: str = "run-1") -> str:
    store.append(run_id, 0, [ev.RunRequested(task="t", workspace="/tmp/ws")])
    return run_id


def finish(store: EventStore, run_id: str) -> None:
    store.append(
        run_id,
        1,
        [
            ev.StateChanged(
                from_state="requested",
                to_state="failed",
                trigger="fail",
                outcome="failed",
                reason="run_deadline",
            )
        ],
    )


def test_claim_a_free_run(store):
    new_run(store)
    lease = store.claim("run-1", A, ttl_s=30, now=T0)
    assert lease == Lease("run-1", A, 1, T0 + 30)
    row = store.get_run("run-1")
    assert (row["lease_owner"], row["lease_epoch"], row["lease_expires_at"]) == (A, 1, T0 + 30)


def test_second_owner_gets_run_locked_naming_the_owner(store):
    new_run(store)
    store.claim("run-1", A, ttl_s=30, now=T0)
    with pytest.raises(RunLocked, match=rf"run-1 is leased by {A} until .*30s from now"):
        store.claim("run-1", B, ttl_s=30, now=T0)
    assert store.get_run("run-1")["lease_owner"] == A


def test_same_owner_reclaims_with_a_new_epoch(store):
    new_run(store)
    first = store.claim("run-1", A, ttl_s=30, now=T0)
    again = store.claim("run-1", A, ttl_s=30, now=T0 + 5)
    assert again.epoch == first.epoch + 1 and again.expires_at == T0 + 35


def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced(store):
    new_run(store)
    old = store.claim("run-1", A, ttl_s=10, now=T0)
    new = store.claim("run-1", B, ttl_s=10, now=T0 + 11)
    assert (new.owner, new.epoch) == (B, old.epoch + 1)
    with pytest.raises(RunLocked, match=rf"lost.*now held by {B} \(epoch 2"):
        store.heartbeat(old, ttl_s=10, now=T0 + 12)
    assert store.release(old) is False
    assert store.get_run("run-1")["lease_owner"] == B
    with pytest.raises(ConcurrencyConflict, match="run-1"):
        store.append("run-1", 1, [ev.PlanRecorded(plan="x")], lease=old)
    store.append("run-1", 1, [ev.PlanRecorded(plan="x")], lease=new)


def test_heartbeat_extends_and_release_frees(store):
    new_run(store)
    lease = store.claim("run-1", A, ttl_s=10, now=T0)
    lease = store.heartbeat(lease, ttl_s=10, now=T0 + 8)
    assert lease.expires_at == T0 + 18 and lease.epoch == 1
    with pytest.raises(RunLocked):
        store.claim("run-1", B, ttl_s=10, now=T0 + 15)  # would have expired without the heartbeat
    assert store.release(lease) is True
    row = store.get_run("run-1")
    assert (row["lease_owner"], row["lease_expires_at"], row["lease_epoch"]) == (None, None, 1)
    assert store.claim("run-1", B, ttl_s=10, now=T0 + 16).epoch == 2


def test_claim_of_an_unknown_run(store):
    with pytest.raises(RunNotFound, match="nobody"):
        store.claim("nobody", A, ttl_s=10)


def test_appends_keep_the_lease(store):
    new_run(store)
    lease = store.claim("run-1", A, ttl_s=10, now=T0)
    store.append("run-1", 1, [ev.PlanRecorded(plan="p")], lease=lease)
    row = store.get_run("run-1")
    assert (row["lease_owner"], row["lease_epoch"], row["last_seq"]) == (A, 1, 2)


def test_racing_claimers_exactly_one_wins(store):
    new_run(store)
    n = 4
    barrier = threading.Barrier(n)
    results: list[object] = []

    def claimer(i: int) -> None:
        barrier.wait()
        try:
            results.append(store.claim("run-1", f"host:{i}:cccccccc", ttl_s=30, now=T0))
        except RunLocked as exc:
            results.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    wins = [r for r in results if isinstance(r, Lease)]
    assert len(results) == n and len(wins) == 1
    assert store.get_run("run-1")["lease_owner"] == wins[0].owner


def test_claim_next_picks_free_live_runs_only(store):
    for rid in ("run-done", "run-held", "run-free"):
        new_run(store, rid)
    finish(store, "run-done")
    store.claim("run-held", A, ttl_s=10, now=T0)
    got = store.claim_next(B, ttl_s=10, now=T0 + 1)
    assert got is not None and (got.run_id, got.owner, got.epoch) == ("run-free", B, 1)
    assert store.claim_next(B, ttl_s=10, now=T0 + 2) is None
    late = store.claim_next("host-c:3:cccccccc", ttl_s=10, now=T0 + 10.5)  # run-held expired
    assert late is not None and (late.run_id, late.epoch) == ("run-held", 2)


def test_concurrent_claim_next_hands_out_distinct_runs(store):
    n = 4
    for i in range(n):
        new_run(store, f"run-{i}")
    barrier = threading.Barrier(n)
    got: list[Lease | None] = []

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(20):  # on PostgreSQL a SKIP LOCKED miss returns None while others claim
            lease = store.claim_next(f"w:{i}:dddddddd", ttl_s=30, now=T0)
            if lease is not None:
                break
        got.append(lease)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    leases = [g for g in got if g is not None]
    assert len({lease.run_id for lease in leases}) == len(leases) == n


def test_a_dead_local_owner_can_be_taken_over_before_expiry(store):
    new_run(store)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = f"{socket.gethostname()}:{child.pid}:eeeeeeee"
    store.claim("run-1", dead, ttl_s=600, now=T0)
    lease = store.claim("run-1", owner_id(), ttl_s=10, now=T0 + 1)
    assert lease.epoch == 2


def test_owner_ids():
    mine = owner_id()
    host, pid, tag = mine.rsplit(":", 2)
    assert host == socket.gethostname() and pid == str(os.getpid()) and len(tag) == 8
    assert owner_id() != mine
    assert not is_local_owner_dead(mine)
    assert not is_local_owner_dead("elsewhere:1:abcdabcd")
    assert not is_local_owner_dead("garbage")
    assert not is_local_owner_dead(None)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert is_local_owner_dead(f"{socket.gethostname()}:{child.pid}:abcdabcd")
