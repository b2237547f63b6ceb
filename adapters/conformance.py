"""Static proof that each adapter satisfies the core port it is wired into.

Nothing here runs: ``mypy`` checks these assignments (``.ci/run`` type-checks
``adapters``), so an adapter whose signature drifts from its port in
:mod:`kodr_core.ports` fails the static gate instead of a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.artifacts import ArtifactWriter
    from adapters.leasing import FencedLog
    from adapters.openai_client import OpenAIChatClient
    from adapters.scripted_model import ScriptedModel
    from adapters.scrubbing import ScrubbingLog, ScrubbingModel
    from adapters.tool_loop import ToolLoopModel
    from adapters.toolchain import ProcessToolchain
    from adapters.workspace import DiskWorkspace
    from kodr_core import ports
    from store.event_store import EventStore
    from store.queue import RunQueue


def _models(a: OpenAIChatClient, b: ScriptedModel, c: ToolLoopModel, d: ScrubbingModel) -> list[ports.ModelPort]:
    return [a, b, c, d]


def _logs(a: EventStore, b: FencedLog, c: ScrubbingLog) -> list[ports.EventLog]:
    return [a, b, c]


def _rest(
    w: DiskWorkspace, t: ProcessToolchain, s: ArtifactWriter, q: RunQueue
) -> tuple[ports.Workspace, ports.Toolchain, ports.ArtifactSink, ports.RunQueue]:
    return w, t, s, q
