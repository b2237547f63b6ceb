"""Small in-memory fakes of kodr's ports, for driving the Engine in unit tests.

Each fake does the least its port promises and records what it was asked, so a
test can set up the world, run the engine and look at what happened:

* :class:`MemoryLog` - the event store (seq checks, ISO ``recorded_at``, blobs);
* :class:`MemoryWorkspace` - a dict of files behind the real path checks;
* :class:`FakeToolchain` - install and test results from a script, in the shapes
  of ``install.json`` / ``tests.json`` (see ``kodr_core.results``);
* :class:`FakeModel` - scripted replies or :class:`ModelError` s.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kodr_core import events as ev
from kodr_core.aggregate import project_onto
from kodr_core.envelope import check_relative_path
from kodr_core.errors import ConcurrencyConflict, RefusedInput, StoreCorrupt
from kodr_core.ports import ChatReply, ChatRequest, ModelError
from kodr_core.results import InstallResult, TestResult
from store.hashchain import GENESIS, canonical_bytes, chain_hash

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z: every fake clock starts here


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the store -----------------------------------------------------------------------


class MemoryLog:
    """kodr_core.ports.EventLog in memory, held to the store's contract.

    Events go through their JSON payload and :func:`events.decode` on the way in,
    as they do in the real store, so an event that would not survive storage fails here.
    Like the store it refuses a seq conflict and an illegal transition (checked against
    the projection, with :func:`aggregate.project_onto`), chains the events' hashes, and
    refuses to let a resume append to a history that no longer verifies.
    tests/integration/test_store_contract.py runs the same suite on it, SQLite and PostgreSQL.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock or FakeClock()
        self.runs: dict[str, list[ev.RecordedEvent]] = {}
        self.projections: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, bytes] = {}
        self.blob_writes = 0  # blobs passed to put_blob(s), deduplicated or not
        self.blob_transactions = 0  # put_blob / put_blobs calls

    def load(self, run_id: str) -> list[ev.RecordedEvent]:
        return list(self.runs.get(run_id, []))

    def iter_events(self, run_id: str, *, after: int = 0, batch: int = 1000) -> Iterator[ev.RecordedEvent]:
        return iter([r for r in self.runs.get(run_id, []) if r.seq > after])

    def append(self, run_id: str, expected_seq: int, events: Sequence[ev.Event]) -> list[ev.RecordedEvent]:
        if not run_id or len(run_id) > 64:
            raise ValueError(f"run id must be 1..64 characters, got {run_id!r}")
        if expected_seq < 0:
            raise ValueError(f"expected_seq must be >= 0, got {expected_seq}")
        records = self.runs.get(run_id, [])
        last_seq = records[-1].seq if records else 0
        if last_seq != expected_seq:
            raise ConcurrencyConflict(
                f"run {run_id}: expected to append seq {expected_seq + 1}, but the last seq is {last_seq}"
            )
        if not events:
            return []
        recorded_at = iso_utc(self.clock())
        prev = records[-1].hash if records else GENESIS
        new = []
        for seq, event in enumerate(events, start=expected_seq + 1):
            payload = json.loads(json.dumps(event.payload()))
            stored = ev.decode(event.TYPE, event.VERSION, payload)
            digest = chain_hash(prev, canonical_bytes(run_id, seq, event.TYPE, event.VERSION, recorded_at, payload))
            new.append(ev.RecordedEvent(run_id, seq, stored, recorded_at, prev, digest))
            prev = digest
        projection = project_onto(self.projections.get(run_id), run_id, new)  # raises on an illegal move
        self.runs[run_id] = records + new
        self.projections[run_id] = projection
        return new

    def put_blob(self, data: bytes) -> str:
        return self.put_blobs([data])[0]

    def put_blobs(self, items: Sequence[bytes]) -> list[str]:
        self.blob_transactions += 1
        keys = []
        for data in items:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"blobs are bytes, got {type(data).__name__}")
            self.blob_writes += 1
            keys.append(sha(bytes(data)))
            self.blobs.setdefault(keys[-1], bytes(data))
        return keys

    def get_blob(self, sha256: str) -> bytes:
        return self.blobs[sha256]  # KeyError when absent, as the port allows

    def check_intact(self, run_id: str) -> None:
        """The chain recomputed from the events as held; StoreCorrupt at the first break."""
        prev = GENESIS
        for i, r in enumerate(self.runs.get(run_id, []), start=1):
            body = canonical_bytes(run_id, r.seq, r.type, r.event.VERSION, r.recorded_at, r.event.payload())
            if r.seq != i or r.prev_hash != prev or chain_hash(prev, body) != r.hash:
                raise StoreCorrupt(f"run {run_id}: history does not verify at seq {i}; refusing to append to it")
            prev = r.hash
        projection = self.projections.get(run_id)
        if projection is not None and projection["last_seq"] != len(self.runs.get(run_id, [])):
            raise StoreCorrupt(f"run {run_id}: events were removed from the tail; refusing to append to it")

    # -- for assertions --------------------------------------------------------
    def events(self, run_id: str) -> list[ev.Event]:
        return [r.event for r in self.runs.get(run_id, [])]

    def types(self, run_id: str) -> list[str]:
        return [r.type for r in self.runs.get(run_id, [])]

    def of_type(self, run_id: str, cls: type[ev.Event]) -> list[Any]:
        return [e for e in self.events(run_id) if isinstance(e, cls)]

    def triggers(self, run_id: str) -> list[str]:
        return [e.trigger for e in self.of_type(run_id, ev.StateChanged)]


# -- the workspace -------------------------------------------------------------------


class MemoryWorkspace:
    """kodr_core.ports.Workspace over a dict of path -> bytes."""

    def __init__(self, files: Mapping[str, bytes | str] | None = None, root: str = "/ws") -> None:
        self.root = root
        self.data: dict[str, bytes] = {p: v.encode() if isinstance(v, str) else v for p, v in (files or {}).items()}
        self.writes: list[str] = []

    def check_path(self, path: str) -> str:
        rel = check_relative_path(path)
        if any(p.startswith(rel + "/") for p in self.data):
            raise RefusedInput(f"refused path {path!r}: exists and is not a regular file")
        return rel

    def write(self, path: str, data: bytes) -> None:
        rel = self.check_path(path)
        self.data[rel] = bytes(data)
        self.writes.append(rel)

    def read(self, path: str) -> bytes | None:
        return self.data.get(path)

    def exists(self, path: str) -> bool:
        return path in self.data

    def files(self) -> list[str]:
        return sorted(self.data)

    def snapshot(self) -> dict[str, str]:
        return {p: sha(self.data[p]) for p in self.files()}

    def text(self, path: str) -> str | None:
        data = self.read(path)
        return None if data is None else data.decode()


# -- install and verify ------------------------------------------------------------


def failure(name: str, file: str | None = None, line: int | None = None, message: str = "assertion failed") -> dict:
    return {"name": name, "file": file, "line": line, "message": message, "stack": ""}


def fake_tests_json(
    argv: Sequence[str],
    *,
    passed: int = 0,
    failed: int = 0,
    skipped: int = 0,
    failures: Sequence[dict] = (),
    timed_out: bool = False,
    exit_code: int | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """tests.json with the keys of kodr_core.results.build_tests_json."""
    total = passed + failed + skipped
    if exit_code is None and not timed_out:
        exit_code = 1 if failed else 0
    ok = not timed_out and exit_code == 0 and total > 0 and failed == 0
    if error is None and not ok:
        error = "timed out" if timed_out else "no tests ran" if total == 0 else None
    return TestResult.of(
        {
            "command": shlex.join(argv),
            "argv": list(argv),
            "exitCode": exit_code,
            "ok": ok,
            "timedOut": timed_out,
            "durationMs": 120,
            "startedAt": "2023-11-14T22:13:21.000000Z",
            "finishedAt": "2023-11-14T22:13:21.120000Z",
            "stdoutTail": "\n".join(f"not ok - {f['name']}" for f in failures),
            "stderrTail": "",
            "passed": passed,
            "failed": failed,
            "skipped": skipped,
            "total": total,
            "failures": [dict(f) for f in failures],
            "parser": "junit" if total else None,
            "error": error,
        }
    ).dump()


def fake_install_json(
    commands: Sequence[Sequence[str]], *, ok: bool = True, timed_out: bool = False, stderr: str = ""
) -> dict[str, Any]:
    """install.json with the keys of kodr_core.results.build_install_json."""
    exit_code = None if timed_out else 0 if ok else 1
    step = {
        "command": shlex.join(commands[-1]) if commands else "",
        "argv": list(commands[-1]) if commands else [],
        "exitCode": exit_code,
        "ok": ok and not timed_out,
        "timedOut": timed_out,
        "durationMs": 800,
        "startedAt": "2023-11-14T22:13:21.000000Z",
        "finishedAt": "2023-11-14T22:13:21.800000Z",
        "stdoutTail": "",
        "stderrTail": stderr,
        "error": None,
    }
    return InstallResult.of(
        {
            "command": " && ".join(shlex.join(c) for c in commands),
            "commands": [list(c) for c in commands],
            "exitCode": exit_code,
            "ok": ok and not timed_out,
            "timedOut": timed_out,
            "durationMs": 800,
            "startedAt": step["startedAt"],
            "finishedAt": step["finishedAt"],
            "stdoutTail": "",
            "stderrTail": stderr,
            "steps": [step],
            "error": "timed out" if timed_out else None if ok else "exit code 1",
        }
    ).dump()


def passing(n: int = 2) -> dict[str, Any]:
    """A scripted test outcome: ``n`` tests pass."""
    return {"passed": n}


def failing(*failures: dict, passed: int = 1) -> dict[str, Any]:
    """A scripted test outcome: these failures, and ``passed`` tests that pass."""
    return {"passed": passed, "failed": len(failures), "failures": list(failures)}


class Crash(Exception):
    """Raised by a fake to stop the engine mid-step, like a killed process."""


class FakeToolchain:
    """kodr_core.ports.Toolchain from a script.

    ``tests`` holds one entry per test run: keyword arguments of :func:`fake_tests_json`
    (built with the argv the engine passed) or an exception to raise. ``installs``
    likewise holds keyword arguments of :func:`fake_install_json` or an exception.
    """

    def __init__(self, tests: Sequence[dict | Exception] = (), installs: Sequence[dict | Exception] = ()) -> None:
        self.tests_script = list(tests)
        self.installs_script = list(installs)
        self.calls: list[dict[str, Any]] = []
        self.killed: list[str] = []

    def confinement(self, step):
        return {"sandbox": "fake", "step": step}

    def install(self, commands, *, cwd, timeout_s, step_key):
        self.calls.append({"op": "install", "commands": [list(c) for c in commands], "cwd": cwd,
                           "timeout_s": timeout_s, "step_key": step_key})  # fmt: skip
        if not self.installs_script:
            raise AssertionError("the engine ran an install the test did not script")
        entry = self.installs_script.pop(0)
        if isinstance(entry, Exception):
            raise entry
        return InstallResult.of(fake_install_json(commands, **entry)), b"install log\n"

    def test(self, argv, kind, *, cwd, timeout_s, step_key, only_files=()):
        self.calls.append({"op": "test", "argv": list(argv), "kind": kind, "cwd": cwd, "timeout_s": timeout_s,
                           "step_key": step_key, "only_files": list(only_files)})  # fmt: skip
        if not self.tests_script:
            raise AssertionError("the engine ran tests the test did not script")
        entry = self.tests_script.pop(0)
        if isinstance(entry, Exception):
            raise entry
        result = fake_tests_json(argv, **entry)
        log = ("\n".join(["test log"] + [f["name"] for f in result["failures"]]) + "\n").encode()
        return TestResult.of(result), log  # typed, as the Toolchain port returns them

    def kill_orphans(self, step_key: str) -> int:
        self.killed.append(step_key)
        return 0

    def ops(self, op: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["op"] == op]


# -- the model ------------------------------------------------------------------------


def envelope(files: Mapping[str, str], summary: str = "the change") -> str:
    """A valid proposal envelope, as a model would send it."""
    return json.dumps({"summary": summary, "files": [{"path": p, "content": c} for p, c in files.items()],
                       "notes": None})  # fmt: skip


class FakeModel:
    """kodr_core.ports.ModelPort from a script of replies (str, ChatReply) or ModelErrors."""

    def __init__(self, *replies: str | ChatReply | ModelError) -> None:
        self.replies = list(replies)
        self.requests: list[ChatRequest] = []
        self.deadlines: list[float | None] = []

    def complete(self, request: ChatRequest, *, deadline_s: float | None = None) -> ChatReply:
        self.requests.append(request)
        self.deadlines.append(deadline_s)
        if not self.replies:
            raise AssertionError("the engine called the model more often than the test scripted")
        reply = self.replies.pop(0)
        if isinstance(reply, ModelError):
            raise reply
        if isinstance(reply, str):
            return ChatReply(content=reply, finish_reason="stop", duration_ms=40,
                             usage={"prompt_tokens": 10, "completion_tokens": 5})  # fmt: skip
        return reply

    def prompt(self, i: int = -1) -> str:
        """All message contents of the i-th request, joined."""
        return "\n".join(str(m.get("content")) for m in self.requests[i].messages)
