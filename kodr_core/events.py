"""Event types: defined once, immutable, versioned.

Everything else (the fold, the projection, artifacts, ``explain``) is derived
from these. A new field gets a default; a field removed or a meaning changed gets a
new VERSION and an entry in :data:`UPCASTERS`, which :func:`decode` applies to older
stored payloads. Results of processes are stored as plain dicts in the shape of
``install.json`` / ``tests.json`` (camelCase keys), since that is what the artifacts
show; everything that reads one reads it as a :mod:`kodr_core.results` model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from kodr_core.errors import StoreCorrupt


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class RecordedEvent:
    """An event as the store holds it: position, time and hash chain around it."""

    run_id: str
    seq: int
    event: Event
    recorded_at: str
    prev_hash: str = ""
    hash: str = ""

    @property
    def type(self) -> str:
        return self.event.TYPE


# -- the run ---------------------------------------------------------------


class RunRequested(Event):
    """The run exists: task, workspace, settings, and the base snapshot of the workspace."""

    TYPE = "RunRequested"
    task: str
    workspace: str
    mode: str = "run"  # run | heal | plan
    options: dict[str, Any] = Field(default_factory=dict)
    base_snapshot: dict[str, str] = Field(default_factory=dict)  # path -> sha256 (blob key)
    snapshot_skipped: list[dict[str, Any]] = Field(default_factory=list)


class StateChanged(Event):
    """The one event every transition ends in."""

    TYPE = "StateChanged"
    from_state: str
    to_state: str
    trigger: str
    heal_turn: int = 0
    facts: dict[str, Any] = Field(default_factory=dict)
    outcome: str | None = None
    reason: str | None = None


# -- side effects: intent, then outcome --------------------------------------


class ModelCallStarted(Event):
    TYPE = "ModelCallStarted"
    purpose: str  # propose | repair | plan
    turn: int
    attempt: int
    key: str
    request_blob: str
    context_blob: str | None = None  # repair context (context.json) for repair turns
    allowed_paths: list[str] = Field(default_factory=list)  # failing paths + context files


class ModelCallCompleted(Event):
    TYPE = "ModelCallCompleted"
    purpose: str
    turn: int
    attempt: int
    key: str
    response_blob: str
    duration_ms: int
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    retries: list[dict[str, Any]] = Field(default_factory=list)
    capabilities: dict[str, Any] = Field(default_factory=dict)  # what the server accepts, and what was learned


class ModelCallFailed(Event):
    TYPE = "ModelCallFailed"
    purpose: str
    turn: int
    attempt: int
    key: str
    error: str  # timeout | unavailable | http
    message: str
    duration_ms: int
    retries: list[dict[str, Any]] = Field(default_factory=list)
    capabilities: dict[str, Any] = Field(default_factory=dict)


class ProposalRejected(Event):
    """The model answered, but not with a valid envelope; ``error`` is quoted back on retry."""

    TYPE = "ProposalRejected"
    purpose: str
    turn: int
    attempt: int
    error: str


class ProposalAccepted(Event):
    TYPE = "ProposalAccepted"
    VERSION = 2  # v1 also had ``plan``, always null: a plan is a PlanRecorded event
    purpose: str
    turn: int
    summary: str = ""
    files: list[dict[str, Any]] = Field(default_factory=list)  # {path, sha256, bytes}


class WritesStarted(Event):
    TYPE = "WritesStarted"
    turn: int
    attempt: int
    key: str
    files: list[dict[str, Any]]  # {path, sha256}


class WritesApplied(Event):
    """Files on disk match the proposal; ``manifest`` is the workspace after the writes."""

    TYPE = "WritesApplied"
    turn: int
    key: str
    files: list[dict[str, Any]]  # {path, sha256, bytes, change: created|modified|unchanged}
    manifest: dict[str, str] = Field(default_factory=dict)


class WritesRefused(Event):
    TYPE = "WritesRefused"
    turn: int
    path: str
    why: str


class InstallStarted(Event):
    TYPE = "InstallStarted"
    turn: int
    attempt: int
    key: str
    commands: list[list[str]]
    confinement: dict[str, Any] = Field(default_factory=dict)  # sandbox, mode, network, why


class InstallFinished(Event):
    TYPE = "InstallFinished"
    turn: int
    attempt: int
    key: str
    result: dict[str, Any]  # install.json


class InstallSkipped(Event):
    TYPE = "InstallSkipped"
    turn: int
    why: str


class TestsStarted(Event):
    TYPE = "TestsStarted"
    turn: int
    attempt: int
    key: str
    command: list[str]
    scope: str = "full"  # full | failing
    files: list[str] = Field(default_factory=list)
    confinement: dict[str, Any] = Field(default_factory=dict)  # sandbox, mode, network, why


class TestsFinished(Event):
    TYPE = "TestsFinished"
    turn: int
    attempt: int
    key: str
    scope: str = "full"
    result: dict[str, Any]  # tests.json


class RunResumed(Event):
    """A process took the run over to continue it; ``overrides`` replace recorded options."""

    TYPE = "RunResumed"
    owner: str
    overrides: dict[str, Any] = Field(default_factory=dict)
    interrupted: str | None = None  # the key of the step that had started without an outcome


class WorkspaceRestored(Event):
    """Files that no longer matched the history were rewritten from their blobs on resume."""

    TYPE = "WorkspaceRestored"
    files: list[dict[str, Any]]  # {path, sha256, found: sha256 | None}


class PlanRecorded(Event):
    """A plan-only turn's scratchpad, for a later run to inject."""

    TYPE = "PlanRecorded"
    plan: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        RunRequested,
        StateChanged,
        ModelCallStarted,
        ModelCallCompleted,
        ModelCallFailed,
        ProposalRejected,
        ProposalAccepted,
        WritesStarted,
        WritesApplied,
        WritesRefused,
        InstallStarted,
        InstallFinished,
        InstallSkipped,
        TestsStarted,
        TestsFinished,
        PlanRecorded,
        RunResumed,
        WorkspaceRestored,
    )
}


class UnknownEvent(StoreCorrupt, ValueError):
    """A stored event this kodr cannot decode (unknown type, or a newer version)."""


def _proposal_accepted_v1(data: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: drop ``plan``, which no kodr ever set (the stored bytes keep it, and verify)."""
    if data.get("plan") is not None:
        raise UnknownEvent("ProposalAccepted v1 carries a plan, which no kodr ever wrote")
    return {k: v for k, v in data.items() if k != "plan"}


#: (type, version) -> the payload one version up. Stored bodies are never rewritten: they
#: are hashed; an old event is upcast each time it is read.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("ProposalAccepted", 1): _proposal_accepted_v1,
}


def decode(type_: str, version: int, data: dict[str, Any]) -> Event:
    """Rebuild an event from storage, upcasting an older version to the current one."""
    cls = EVENT_TYPES.get(type_)
    if cls is None:
        raise UnknownEvent(f"unknown event type {type_!r}")
    if version > cls.VERSION:
        raise UnknownEvent(f"{type_} v{version} is newer than this kodr understands (v{cls.VERSION})")
    if version < 1:
        raise UnknownEvent(f"{type_} v{version} is not a version")
    for v in range(version, cls.VERSION):
        data = UPCASTERS[(type_, v)](data)
    return cls.model_validate(data)
