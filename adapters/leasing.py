"""Owning a run while driving it: a lease with a heartbeat, and appends fenced by it.

Whoever drives a run (``kodr run``, ``kodr resume``, a worker) holds its lease. Every
append carries the lease, so a process whose lease was taken over gets a conflict on
its next append and stops instead of writing over the new owner's history.

A workspace holds one live run at a time (two runs writing and testing the same
files would judge each other's work): :func:`workspace_lock` takes an exclusive
``flock`` on ``.kodr/live.lock``, which the kernel releases when the process dies,
so a crashed run never blocks the next one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from kodr_core.errors import KodrError, WorkspaceBusy
from kodr_core.events import Event, RecordedEvent
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


LOCK_FILE = "live.lock"


@contextmanager
def workspace_lock(root: Path) -> Iterator[None]:
    """Hold the workspace for one live run; WorkspaceBusy names the live owner (pid, host, since)."""
    from store.location import KODR_DIR, ensure_kodr_dir

    path = ensure_kodr_dir(root / KODR_DIR) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkspaceBusy(
                f"another kodr is driving a run in {root}: {_owner(fd)}; "
                "wait for it to end, or stop it (its run stays resumable)"
            ) from None
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _owner(fd: int, wait_s: float = 0.5) -> str:
    """The lock holder as recorded in the file.

    The holder writes its record just after it takes the lock, so a loser that
    reads in between finds the file empty: it re-reads for up to ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f"pid {int(data['pid'])} on {str(data['host'])[:64]} since {str(data['since'])[:32]}"
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return "owner unknown"
            time.sleep(0.01)
