"""The composition root: wires the store, the workspace, the toolchain and a model into an engine.

Two ways in: :func:`open_app` for commands that record (it creates and migrates
the workspace's SQLite store on first use) and :func:`open_reader` for commands
that only read, which never create a file or a directory: with no store yet it
returns None and the command says there is nothing. A reader runs on the database
driver directly (:class:`store.reader.DriverReader`): neither this module nor the
read path imports SQLAlchemy or alembic, which alone cost more than a read-only
command's 0.2 s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kodr_core.errors import UsageError
from store.location import database_url, default_anchors, sqlite_file

if TYPE_CHECKING:  # what only recording commands need is imported when they run
    from adapters.toolchain import ProcessToolchain
    from adapters.workspace import DiskWorkspace
    from kodr_core.aggregate import Run
    from kodr_core.engine import Engine, Observer
    from kodr_core.options import RunOptions
    from kodr_core.ports import EventLog, ModelPort
    from store.anchors import HeadAnchors
    from store.event_store import EventStore
    from store.reader import StoreReader


@dataclass
class Reading:
    """What a read-only command works with: the workspace's root and a reader of its store."""

    root: Path
    store: StoreReader


@dataclass
class App(Reading):
    """What a recording command works with: the store itself, and the workspace built on demand."""

    store: EventStore

    @cached_property
    def workspace(self) -> DiskWorkspace:
        """Built on first use: read-only commands need only ``root`` (and skip the envelope's pydantic models)."""
        from adapters.workspace import DiskWorkspace

        return DiskWorkspace(self.root)

    def engine(
        self,
        model: ModelPort | None,
        observer: Observer | None = None,
        log: EventLog | None = None,
        options: RunOptions | None = None,
    ) -> Engine:
        from kodr_core.options import RunOptions

        return build_engine(
            log or self.store, self.workspace, model, options or RunOptions(), store=self.store, observer=observer
        )

    def workspace_held(self) -> AbstractContextManager[None]:
        """One live run per workspace: a second one is refused with WorkspaceBusy naming the owner."""
        from adapters.leasing import workspace_lock

        return workspace_lock(self.root)

    def drive(
        self,
        run_id: str,
        model: ModelPort | None,
        observer: Observer | None = None,
        *,
        resume: bool = False,
        overrides: dict[str, Any] | None = None,
        options: RunOptions | None = None,
    ) -> Run:
        """Drive the run while holding its lease; a live owner elsewhere makes this raise RunLocked."""
        from adapters.leasing import held

        with held(self.store, run_id) as fenced:
            engine = self.engine(model, observer, log=fenced, options=options)
            if resume:
                return engine.resume(run_id, fenced.lease.owner, overrides)
            return engine.drive(run_id)


def confined_toolchain(options: RunOptions) -> ProcessToolchain:
    """Installs and tests in the run's sandbox, from kodr's dependency sources, their output scrubbed.

    ``--sandbox required`` where bubblewrap cannot run raises SandboxUnavailable (a usage error).
    """
    from adapters.processes import SubprocessRunner
    from adapters.sandbox import Sandbox
    from adapters.toolchain import ProcessToolchain
    from kodr_core.secrets import Scrubber
    from kodr_core.sources import DependencySources

    if options.sandbox == "required":
        Sandbox("required").confinement(network=False)
    runner = SubprocessRunner(sandbox=Sandbox(options.sandbox), scrubber=Scrubber.of_env(os.environ))
    return ProcessToolchain(runner, sources=DependencySources.of(os.environ), test_network=options.test_network)


def build_engine(
    log: EventLog,
    workspace: DiskWorkspace,
    model: ModelPort | None,
    options: RunOptions,
    *,
    store: EventStore,
    toolchain: ProcessToolchain | None = None,
    observer: Observer | None = None,
) -> Engine:
    """The one wiring of an Engine (the CLI and the workers): secrets are scrubbed from every
    blob, event and prompt; processes run in the run's sandbox."""
    from adapters import faults
    from adapters.artifacts import ArtifactWriter
    from adapters.scrubbing import ScrubbingLog, ScrubbingModel
    from kodr_core.engine import Engine
    from kodr_core.secrets import Scrubber

    scrubber = Scrubber.of_env(os.environ)
    workspace.allow_secret_files = options.allow_secret_files
    toolchain = toolchain or confined_toolchain(options)
    return Engine(
        ScrubbingLog(faults.wrap(log), scrubber),
        workspace,
        toolchain,
        ScrubbingModel(model, scrubber) if model is not None else None,
        artifacts=ArtifactWriter(workspace.root, store.get_blob),
        observer=observer,
        sources=toolchain.sources,
    )


def _root(workspace: str | os.PathLike[str]) -> Path:
    root = Path(workspace).resolve()
    if not root.is_dir():
        raise UsageError(f"workspace {str(root)!r} is not a directory")
    return root


def open_app(workspace: str | os.PathLike[str]) -> App:
    """The app for a command that records: the SQLite store is created and migrated on first use."""
    from store.database import open_store

    root = _root(workspace)
    url = database_url(root)
    return App(root, open_store(url, anchor_dir=anchor_dir(root, url)))


def anchor_dir(root: Path, url: str) -> Path | None:
    """Where run heads are kept outside the database (:mod:`store.anchors`).

    A SQLite store keeps them in ``runs/`` beside its file (``.kodr/runs/`` for the default
    store, the run's artifacts folder), so every workspace sharing one file sees the same
    heads and a run rebound to another workspace still verifies. A server database anchors
    in the workspace, where runs of other workspaces are not required to have a head.
    """
    return None if sqlite_file(url) is not None else root / ".kodr" / "runs"


def head_anchors(root: Path, url: str) -> HeadAnchors | None:
    """The run heads of this workspace's store, read without opening the database."""
    return default_anchors(url, anchor_dir(root, url))


def store_location(workspace: str | os.PathLike[str]) -> str:
    """Where this workspace's store is, for messages (password masked)."""
    from store.errors import mask_url

    return mask_url(database_url(_root(workspace)))


def open_reader(workspace: str | os.PathLike[str]) -> Reading | None:
    """The reader for a read-only command, or None when there is no store yet.

    Creates nothing and migrates nothing: a SQLite file is opened read-only, and a
    schema behind or ahead of this kodr's is refused on the first read with
    StoreUnavailable. A URL kodr keeps no store in is refused here. Head anchors and
    ``KODR_AUDIT_KEY`` are those a recording command uses, so a keyed chain verifies.
    """
    from store.location import audit_key
    from store.reader import open_reading

    root = _root(workspace)
    url = database_url(root)
    reader = open_reading(url, anchors=head_anchors(root, url), audit_key=audit_key())
    return None if reader is None else Reading(root, reader)


def model_for(options: RunOptions, env: dict[str, str] | None = None) -> ModelPort:
    """The HTTP model client for the run's recorded provider settings; the key comes from env."""
    from adapters.openai_client import OpenAIChatClient
    from adapters.providers import resolve_provider

    if options.provider == "scripted":
        raise UsageError("this run used the demo's built-in scripted model; give --base-url or --provider to go on")
    config = resolve_provider(
        options.provider, options.base_url, options.model, dict(env or os.environ), local=options.local
    )  # the run's recorded choice (--local/--remote or the guess)
    return OpenAIChatClient(config, stall_timeout_s=options.stall_timeout_s)


ModelFactory = Callable[["RunOptions"], "ModelPort"]
