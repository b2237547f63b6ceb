"""The ports through which the engine reaches the world.

Adapters implement these; tests may pass small fakes. Values crossing a port are
plain frozen dataclasses, so the core never sees an httpx response or a Popen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kodr_core.errors import KodrError
from kodr_core.events import Event, RecordedEvent

if TYPE_CHECKING:
    from kodr_core.results import InstallResult, TestResult

# -- processes ---------------------------------------------------------------


@dataclass(frozen=True)
class ProcessResult:
    argv: list[str]
    cwd: str
    exit_code: int | None  # None when killed at the timeout
    timed_out: bool
    duration_ms: int
    started_at: str  # ISO-8601 UTC
    finished_at: str
    stdout: str  # capped: head and tail kept, with a marker where bytes were dropped
    stderr: str
    log: bytes = b""  # the whole combined output (capped generously), kept as a blob
    error: str | None = None  # could not start (e.g. executable not found)


# -- models ------------------------------------------------------------------


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, Any]]
    response_schema: dict[str, Any] | None = None  # JSON Schema for the envelope
    tools: list[dict[str, Any]] | None = None
    temperature: float | None = 0.0


@dataclass(frozen=True)
class ChatReply:
    content: str
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # the response as received (no headers)
    request_body: dict[str, Any] = field(default_factory=dict)  # what was sent (no headers)
    duration_ms: int = 0
    retries: list[dict[str, Any]] = field(default_factory=list)  # {status|error, wait_ms}
    capabilities: dict[str, Any] = field(default_factory=dict)  # fallbacks in use and learned


class ModelError(KodrError):
    """A model call that produced no reply. ``kind`` is timeout | unavailable | http."""

    def __init__(
        self, kind: str, message: str, *, duration_ms: int = 0, retries: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.duration_ms = duration_ms
        self.retries = retries or []
        self.capabilities: dict[str, Any] = {}


class ModelPort(Protocol):
    def complete(self, request: ChatRequest, *, deadline_s: float | None = None) -> ChatReply:
        """One chat completion; raises :class:`ModelError` when no reply arrives."""


# -- the store -----------------------------------------------------------------


class EventLog(Protocol):
    def load(self, run_id: str) -> list[RecordedEvent]: ...

    def append(self, run_id: str, expected_seq: int, events: Sequence[Event]) -> list[RecordedEvent]:
        """Append after ``expected_seq``; raises ConcurrencyConflict if it is not the last seq."""

    def put_blob(self, data: bytes) -> str:
        """Store content-addressed bytes; returns the sha256 hex. Idempotent."""

    def put_blobs(self, items: Sequence[bytes]) -> list[str]:
        """Many blobs in one transaction; their sha256 hexes, in order."""

    def check_intact(self, run_id: str) -> None:
        """Raise StoreCorrupt unless the run's recorded history verifies (hash chain, tail)."""

    def get_blob(self, sha256: str) -> bytes: ...


# -- the workspace -------------------------------------------------------------


class Workspace(Protocol):
    root: str

    def check_path(self, path: str) -> str:
        """Normalise a relative path or raise RefusedInput saying why it is refused."""

    def write(self, path: str, data: bytes) -> None: ...

    def read(self, path: str) -> bytes | None: ...

    def exists(self, path: str) -> bool: ...

    def snapshot(self) -> dict[str, str]:
        """path -> sha256 of every file kodr should see (gitignore and .kodr/ excluded)."""

    def files(self) -> list[str]: ...


# -- install and verify ----------------------------------------------------------


class Toolchain(Protocol):
    """Runs the allowlisted install and test commands and returns their typed results.

    A plain ``tests.json`` / ``install.json`` mapping is accepted too (fakes): the
    engine validates it into the model.
    """

    def install(
        self, commands: Sequence[Sequence[str]], *, cwd: str, timeout_s: float, step_key: str
    ) -> tuple[InstallResult, bytes]:
        """Run each command in turn, stopping at the first failure: (install.json, whole log)."""

    def test(
        self,
        argv: Sequence[str],
        kind: str,
        *,
        cwd: str,
        timeout_s: float,
        step_key: str,
        only_files: Sequence[str] = (),
    ) -> tuple[TestResult, bytes]:
        """Run the tests and parse them honestly: (tests.json, whole log)."""

    def kill_orphans(self, step_key: str) -> int: ...

    def confinement(self, step: str) -> dict[str, Any]:
        """How the next ``install``/``tests`` step's processes are confined (recorded in its Started event)."""


class ArtifactSink(Protocol):
    def refresh(self, run_id: str, records: Sequence[RecordedEvent]) -> None:
        """Write the run's artifact files again from its events (they are views)."""


# -- the service's queue ----------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    """One row of the runs projection, lease included."""

    run_id: str
    state: str
    outcome: str | None
    reason: str | None
    heal_turn: int
    last_seq: int
    task: str
    mode: str
    workspace: str
    created_at: str | None
    updated_at: str | None
    lease_owner: str | None
    lease_epoch: int
    lease_expires_at: float | None


@dataclass(frozen=True)
class Writer:
    """Who appended an event: the lease owner and epoch (None for unleased appends)."""

    owner: str | None
    epoch: int | None


@dataclass(frozen=True)
class StepTiming:
    kind: str  # model | install | tests
    seconds: float


class RunQueue(Protocol):
    """The store as the service layer uses it: events, blobs, the runs list, the queue."""

    def load(self, run_id: str) -> list[RecordedEvent]: ...

    def load_after(self, run_id: str, seq: int) -> list[RecordedEvent]: ...

    def append(self, run_id: str, expected_seq: int, events: Sequence[Event]) -> list[RecordedEvent]: ...

    def put_blob(self, data: bytes) -> str: ...

    def put_blobs(self, items: Sequence[bytes]) -> list[str]: ...

    def check_intact(self, run_id: str) -> None: ...

    def get_blob(self, sha256: str) -> bytes: ...

    def resolve(self, ref: str) -> str:
        """A run id from an id, a unique prefix or ``last``; RunNotFound otherwise."""

    def announce(self, run_id: str) -> None:
        """Tell idle workers a run is waiting."""

    def append_seized(self, run_id: str, owner: str, expected_seq: int, events: Sequence[Event]) -> list[RecordedEvent]:
        """Take the run's lease from whoever holds it and append under it (fences the holder)."""

    def list_runs(self, state: str | None = None, limit: int = 50, offset: int = 0) -> list[RunRow]: ...

    def get_run(self, run_id: str) -> RunRow | None: ...

    def count_by_state(self) -> dict[str, int]: ...

    def queue_depth(self) -> int: ...

    def heal_turns(self) -> int: ...

    def writers(self, run_id: str) -> dict[int, Writer]: ...

    def step_timings(self) -> list[StepTiming]: ...
