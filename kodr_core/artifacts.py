"""The per-run artifact files, rendered from events and blobs (they are views).

``render`` returns relative path -> bytes; an adapter writes them under
``<workspace>/.kodr/runs/<run_id>/``. Any run in the store can be rendered again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from kodr_core import events as ev
from kodr_core.aggregate import fold
from kodr_core.explain import explain
from kodr_core.patch import unified_diff
from kodr_core.results import InstallResult, TestResult

BlobReader = Callable[[str], bytes]


def _j(obj: Any) -> bytes:
    return (
        json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    ).encode()  # same bytes from memory or store


def _blob_json(get_blob: BlobReader, sha: str | None) -> Any:
    if not sha:
        return None
    try:
        return json.loads(get_blob(sha))
    except (KeyError, ValueError):
        return None


def _prompt_md(request: dict[str, Any] | None) -> str:
    if not request:
        return ""
    return "\n\n".join(f"## {m.get('role')}\n\n{m.get('content')}" for m in request.get("messages", []))


def proposal_patch(run_base: dict[str, str], proposal: ev.ProposalAccepted, get_blob: BlobReader) -> str:
    after = dict(run_base)
    after.update({f["path"]: f["sha256"] for f in proposal.files})
    return unified_diff(run_base, after, get_blob, [f["path"] for f in proposal.files])


def render(run_id: str, records: Sequence[ev.RecordedEvent], get_blob: BlobReader) -> dict[str, bytes]:
    run = fold(run_id, records)
    out: dict[str, bytes] = {}
    installs = [r.event for r in records if isinstance(r.event, ev.InstallFinished)]
    tests = [r.event for r in records if isinstance(r.event, ev.TestsFinished)]
    if installs:
        out["install.json"] = _j(InstallResult.of(installs[-1].result).dump())
    if tests:
        full = [t for t in tests if t.scope == "full"] or tests
        out["tests.json"] = _j(TestResult.of(full[-1].result).dump())
    if run.plan:
        out["plan.md"] = (run.plan.rstrip() + "\n").encode()
    first = run.turns[0] if run.turns else None
    if first and first.proposal:
        files = [dict(f, content=get_blob(f["sha256"]).decode("utf-8", "replace")) for f in first.proposal.files]
        out["proposal.json"] = _j({"summary": first.proposal.summary, "files": files})
        out["proposal.diff"] = proposal_patch(run.base_snapshot, first.proposal, get_blob).encode()
    starts = {(r.event.turn, r.event.attempt): r.event for r in records if isinstance(r.event, ev.ModelCallStarted)}
    dones = {(r.event.turn, r.event.attempt): r.event for r in records if isinstance(r.event, ev.ModelCallCompleted)}
    for t in run.turns[1:]:
        d = f"repairs/turn-{t.n}/"
        attempts = sorted(a for (n, a) in starts if n == t.n)
        if attempts:
            last = starts[(t.n, attempts[-1])]
            out[d + "prompt.md"] = _prompt_md(_blob_json(get_blob, last.request_blob)).encode()
            out[d + "context.json"] = _j(_blob_json(get_blob, last.context_blob))
            done = dones.get((t.n, attempts[-1]))
            if done:
                out[d + "response.json"] = _j(_blob_json(get_blob, done.response_blob))
        if t.writes:
            out[d + "writes.json"] = _j(t.writes.files)
            out[d + "diff.patch"] = unified_diff(
                t.manifest_before or {}, t.writes.manifest, get_blob, [f["path"] for f in t.writes.files]
            ).encode()
        if t.final_tests is not None:
            out[d + "tests.json"] = _j(t.final_tests.dump())
        if t.install is not None:
            out[d + "install.json"] = _j(t.install.dump())
        errors = [{"kind": "invalid_output", "message": m} for m in t.rejected]
        errors += [{"kind": "refused_write", "message": m} for m in t.refused]
        if t.model_error:
            errors.append({"kind": f"model_{t.model_error.error}", "message": t.model_error.message})
        out[d + "errors.json"] = _j(errors)
    out["run.json"] = _j(explain(run))  # always present: the folder exists for every run
    if len(run.turns) > 1 or run.options.get("heal"):
        out["repairs/summary.json"] = _j(explain(run))
    return out
