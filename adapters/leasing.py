"""Owning a run while driving it: a lease with a heartbeat, and appends fenced by it.

Whoever drives a run (``kodr run``, ``kodr resume``, a worker) holds its lease. Every
append carries the lease, so a process whose lease was taken over gets a conflict on
its next append and stops instead of writing over the new owner's history.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Sequence

from kodr_core.events import Event, RecordedEvent
from kodr_core.errors import KodrError
from store.event_store import EventStore
from store.leases import Lease, owner_id

LEASE_TTL_S = 30.0


class FencedLog:
    """The store, seen through a lease: appends fail once the lease is lost."""

    def __init__(self, store: EventStore, lease: Lease) -> None:
        self.store = store
        self.lease = lease

    def load(self, run_id: str) -> list[RecordedEvent]:
        return self.store.load(run_id)

    def append(self, run_id: str, expected_seq: int, events: Sequence[Event]) -> list[RecordedEvent]:
        return self.store.append(run_id, expected_seq, events, lease=self.lease)

    def put_blob(self, data: bytes) -> str:
        return self.store.put_blob(data)

    def put_blobs(self, items: Sequence[bytes]) -> list[str]:
        return self.store.put_blobs(items)

    def get_blob(self, sha256: str) -> bytes:
        return self.store.get_blob(sha256)

    def check_intact(self, run_id: str) -> None:
        self.store.check_intact(run_id)


@contextmanager
def held(store: EventStore, run_id: str, ttl_s: float = LEASE_TTL_S, owner: str | None = None) -> Iterator[FencedLog]:
    """Claim the run (RunLocked names the live owner), heartbeat it, release it on exit."""
    lease = store.claim(run_id, owner or owner_id(), ttl_s)
    log = FencedLog(store, lease)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(ttl_s / 3):
            try:
                log.lease = store.heartbeat(log.lease, ttl_s)
            except KodrError:
                return  # lost: the next append fails with a conflict and the run stops

    thread = threading.Thread(target=beat, name=f"kodr-lease-{run_id}", daemon=True)
    thread.start()
    try:
        yield log
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            store.release(log.lease)
        except KodrError:
            pass
