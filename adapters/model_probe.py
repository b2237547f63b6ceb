"""``kodr probe``: send what a run would send, in the same order, and report what the server made of it.

A run asks ``GET /models`` when no model is given, then the server's own
context-window endpoints (local servers), then the proposal request (through
the tool loop with ``--tools``), degrading on refusals as it goes. The probe
does exactly that with the same client and a one-line task, and reports every
exchange, the window learned, the fallbacks taken and what a run would
therefore send. A server that does not answer a chat completion with one
(an HTML 404 page, a JSON error, a non-OpenAI API) does not speak the protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kodr_core.envelope import InvalidProposal, proposal_json_schema
from kodr_core.model_output import envelope_from_reply
from kodr_core.ports import ChatRequest, ModelError

if TYPE_CHECKING:
    from adapters.openai_client import OpenAIChatClient

PROBE_TASK = "kodr probe: answer with an envelope that changes no file (files: [])."
SYSTEM = 'You are kodr\'s coding model. Answer with one JSON object: {"summary": ..., "files": [...], "notes": ...}.'


def probe(
    client: OpenAIChatClient,
    *,
    timeout_s: float = 60.0,
    tools: bool = False,
    workspace: Path | None = None,
    tool_steps: int = 2,
) -> dict[str, Any]:
    """Run's requests, in a run's order; the result says what happened to each."""
    result: dict[str, Any] = {
        "provider": client.config.name,
        "base_url": client.config.base_url,
        "local": client.config.local,
        "reachable": False,
        "protocol": False,
        "model": client.config.model,
        "models": [],
        "context_tokens": None,
        "capabilities": {},
        "fallbacks": [],
        "envelope": None,
        "error": None,
        "exchanges": [],
    }
    try:
        if client.config.model is None:
            result["models"] = client.list_models(timeout_s=timeout_s)
        result["context_tokens"] = client.context_tokens(timeout_s=min(10.0, timeout_s))
        model: Any = client
        if tools:
            from adapters.tool_loop import ToolLoopModel
            from adapters.workspace import DiskWorkspace

            model = ToolLoopModel(
                client, DiskWorkspace(workspace or Path.cwd()), max_steps=tool_steps, local=client.config.local
            )
        request = ChatRequest(
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROBE_TASK}],
            response_schema=proposal_json_schema(),
        )
        reply = model.complete(request, deadline_s=timeout_s)
    except ModelError as exc:
        result["error"] = {"kind": exc.kind, "message": exc.message}
        result["capabilities"] = exc.capabilities
    else:
        result["protocol"] = True
        result["capabilities"] = reply.capabilities
        try:
            envelope_from_reply(reply)
            result["envelope"] = "valid"
        except InvalidProposal as exc:
            result["envelope"] = f"invalid: {exc.message[:200]}"
    result["model"] = client._model
    result["reachable"] = any(e.get("status") is not None for e in client.exchanges)
    result["fallbacks"] = list(client.learned)
    result["exchanges"] = list(client.exchanges)
    return result
