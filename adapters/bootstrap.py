"""The composition root: wires the store, the workspace, the toolchain and a model into an engine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from adapters import faults
from adapters.artifacts import ArtifactWriter
from adapters.leasing import held
from adapters.toolchain import ProcessToolchain
from adapters.workspace import DiskWorkspace
from kodr_core.aggregate import Run
from kodr_core.engine import Engine, Observer
from kodr_core.options import RunOptions
from kodr_core.ports import EventLog, ModelPort
from store.database import database_url, open_store
from store.event_store import EventStore


@dataclass
class App:
    workspace: DiskWorkspace
    store: EventStore

    def engine(self, model: ModelPort | None, observer: Observer | None = None, log: EventLog | None = None) -> Engine:
        return Engine(
            faults.wrap(log or self.store),
            self.workspace,
            ProcessToolchain(),
            model,
            artifacts=ArtifactWriter(self.workspace.root, self.store),
            observer=observer,
        )


    def drive(
        self,
        run_id: str,
        model: ModelPort | None,
        observer: Observer | None = None,
        *,
        resume: bool = False,
        overrides: dict | None = None,
    ) -> Run:
        """Drive the run while holding its lease; a live owner elsewhere makes this raise RunLocked."""
        with held(self.store, run_id) as fenced:
            engine = self.engine(model, observer, log=fenced)
            if resume:
                return engine.resume(run_id, fenced.lease.owner, overrides)
            return engine.drive(run_id)


def open_app(workspace: str | os.PathLike[str]) -> App:
    root = Path(workspace).resolve()
    if not root.is_dir():
        from kodr_core.errors import UsageError

        raise UsageError(f"workspace {str(root)!r} is not a directory")
    # run heads are anchored beside the run's artifacts, outside the database (store.anchors)
    return App(DiskWorkspace(root), open_store(database_url(root), anchor_dir=root / ".kodr" / "runs"))


def model_for(options: RunOptions, env: dict[str, str] | None = None) -> ModelPort:
    """The HTTP model client for the run's recorded provider settings; the key comes from env."""
    from adapters.openai_client import OpenAIChatClient
    from adapters.providers import resolve_provider

    if options.provider == "scripted":
        from kodr_core.errors import UsageError

        raise UsageError("this run used the demo's built-in scripted model; give --base-url or --provider to go on")
    config = resolve_provider(options.provider, options.base_url, options.model, dict(env or os.environ))
    return OpenAIChatClient(config, stall_timeout_s=options.stall_timeout_s)


ModelFactory = Callable[[RunOptions], ModelPort]
