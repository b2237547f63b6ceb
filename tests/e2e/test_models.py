"""The model side end to end: the real ``kodr`` CLI against a scripted OpenAI-compatible server.

What local models and servers actually send (think blocks, reasoning fields,
fences, tool calls written as text, Ollama's whole-call chunks, cut-off replies),
what a server does to a call (hangs, slow streams, 429s), what kodr records of a
call (usage, retries, the tool trace), that API keys stay out of every file kodr
writes, the plan → run hand-off and the read-only tool loop (``kodr probe``: test_server_quirks.py).

Every test goes through the CLI in a subprocess over real loopback HTTP and reads
the run back from the store; ``--dry-run`` keeps the parsing tests fast (nothing
is written, installed or tested; the run ends ``proposed``).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from store.database import default_url, open_store
from tests.e2e.conftest import Result, chain, envelope, events_of, kodr, snapshot
from tests.support.scripted_server import ScriptedServer, Turn

TASK = "add a sub function"
ENV = envelope({"src/sum.js": "export const sum = (a, b) => a + b;\n"}, summary="add sum")
ENV_JSON = json.dumps(ENV)
DRY_CHAIN = [
    "RunRequested",
    "StateChanged:propose",
    "ModelCallStarted",
    "ModelCallCompleted",
    "ProposalAccepted",
    "StateChanged:conclude_dry_run",
]


# -- helpers --------------------------------------------------------------------------


def dry(ws: Path, srv: ScriptedServer, *extra: str, env: dict[str, str] | None = None) -> tuple[Result, dict]:
    r = kodr("run", "-p", TASK, "--base-url", srv.base_url, "--dry-run", "--json", *extra, cwd=ws, env=env, timeout=120)
    try:
        out = r.json()
    except ValueError:
        raise AssertionError(f"no JSON summary (exit {r.code}):\nstdout: {r.out}\nstderr: {r.err}") from None
    return r, out


def run_span(records) -> float:
    """Seconds from the run's first event to its last."""
    from datetime import datetime

    at = [datetime.fromisoformat(r.recorded_at.replace("Z", "+00:00")).timestamp() for r in (records[0], records[-1])]
    return at[1] - at[0]


def of_type(records, name: str) -> list[Any]:
    return [r.event for r in records if r.type == name]


def blob_json(ws: Path, sha: str) -> Any:
    return json.loads(open_store(default_url(ws)).get_blob(sha))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-ollama",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "qwen2.5-coder",
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def assert_accepted(ws: Path, r: Result, out: dict, files: dict[str, str] | None = None) -> list:
    files = files or {f["path"]: f["content"] for f in ENV["files"]}
    assert r.code == 0, r.err
    assert (out["state"], out["reason"]) == ("proposed", "dry_run"), out
    records = events_of(ws, out["run_id"])
    assert chain(records) == DRY_CHAIN
    accepted = of_type(records, "ProposalAccepted")[0]
    assert [(f["path"], f["sha256"]) for f in accepted.files] == [(p, sha(c)) for p, c in files.items()]
    assert snapshot(ws) == records[0].event.base_snapshot, "a dry run writes nothing"
    return records


# -- 1. parsing quirks ----------------------------------------------------------------

OLLAMA_WHOLE_CALL_STRING_ARGS = Turn(
    raw_chunks=[
        chunk(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_9x",
                        "index": 0,
                        "type": "function",
                        "function": {"name": "submit", "arguments": ENV_JSON},
                    }
                ],
            }
        ),
        chunk({"role": "assistant", "content": ""}, "stop"),  # Ollama says "stop" even after a tool call
    ]
)
OLLAMA_WHOLE_CALL_OBJECT_ARGS = Turn(
    raw_chunks=[
        chunk(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "call_9y", "type": "function", "function": {"name": "submit", "arguments": ENV}}],
            }
        ),
        chunk({"role": "assistant", "content": "", "tool_calls": []}, "tool_calls"),
    ]
)
HALF = len(ENV_JSON) // 2
EMPTY_TOOL_CALLS_ARRAY = Turn(
    raw_chunks=[
        chunk({"role": "assistant", "content": "", "tool_calls": []}),
        chunk({"content": ENV_JSON[:HALF], "tool_calls": []}),
        chunk({"content": ENV_JSON[HALF:], "tool_calls": None}),
        chunk({}, "stop"),
    ]
)

QUIRKS = {
    "think_block": Turn(content=f'<think>The user wants sum. Maybe {{"files": []}}? No.</think>\n{ENV_JSON}'),
    "lone_close_think": Turn(content=f"I need a sum function {{ with two args.\n</think>\n\n{ENV_JSON}"),
    "reasoning_content_only": Turn(content="", reasoning=f"Here is the answer: {ENV_JSON}"),
    "reasoning_field_only": Turn(content="", reasoning=ENV_JSON, reasoning_field="reasoning"),
    "markdown_fence": Turn(content=f"Sure, here is the change:\n\n```json\n{json.dumps(ENV, indent=2)}\n```\n"),
    "tool_call_as_text": Turn(content=f'<tool_call>\n{{"name": "submit", "arguments": {ENV_JSON}}}\n</tool_call>'),
    "protocol_tool_call": Turn(tool_calls=[{"name": "submit", "arguments": ENV}]),
    "ollama_whole_call_string_args": OLLAMA_WHOLE_CALL_STRING_ARGS,
    "ollama_whole_call_object_args": OLLAMA_WHOLE_CALL_OBJECT_ARGS,
    "empty_tool_calls_array": EMPTY_TOOL_CALLS_ARRAY,
    "server_ignores_stream": Turn(content=f"<think>hmm</think>```json\n{ENV_JSON}\n```", ignore_stream=True),
}


@pytest.mark.parametrize("turn", list(QUIRKS.values()), ids=list(QUIRKS))
def test_parsing_quirk_is_accepted(workspace: Path, turn: Turn) -> None:
    with ScriptedServer([turn]) as srv:
        r, out = dry(workspace, srv)
        assert len(srv.requests) == 1, "a parseable reply needs no retry"
    records = assert_accepted(workspace, r, out)
    done = of_type(records, "ModelCallCompleted")[0]
    reply = blob_json(workspace, done.response_blob)
    assert reply["request"]["model"] == "scripted-model"  # the server's first model, from GET /models
    if turn.reasoning:
        assert reply["content"] == "" and ENV_JSON in reply["reasoning"]


def test_cut_off_reply_is_rejected_then_retried(workspace: Path) -> None:
    # Even a complete, valid envelope is not trusted when the server says it hit the token limit.
    with ScriptedServer([Turn(content=ENV_JSON, finish_reason="length"), ENV]) as srv:
        r, out = dry(workspace, srv)
        retry_note = srv.requests[1]["body"]["messages"][-1]["content"]
    records = events_of(workspace, out["run_id"])
    assert chain(records) == DRY_CHAIN[:4] + [
        "ProposalRejected",
        "ModelCallStarted",
        "ModelCallCompleted",
        "ProposalAccepted",
        "StateChanged:conclude_dry_run",
    ]
    rejected = of_type(records, "ProposalRejected")[0]
    assert "token limit" in rejected.error and "finish_reason=length" in rejected.error
    assert of_type(records, "ModelCallCompleted")[0].finish_reason == "length"
    assert "token limit" in retry_note and "rejected" in retry_note
    assert [e.attempt for e in of_type(records, "ModelCallStarted")] == [1, 2]
    assert (out["state"], out["reason"]) == ("proposed", "dry_run")


def test_two_cut_off_replies_fail_with_invalid_proposal(workspace: Path) -> None:
    cut = Turn(content=ENV_JSON[:60], finish_reason="length")
    with ScriptedServer([cut, cut, ENV]) as srv:
        r, out = dry(workspace, srv)
        assert len(srv.requests) == 2, "one bounded retry, not more"
    assert r.code == 10
    assert (out["state"], out["reason"]) == ("failed", "invalid_proposal")
    records = events_of(workspace, out["run_id"])
    assert chain(records) == ["RunRequested", "StateChanged:propose"] + [
        "ModelCallStarted",
        "ModelCallCompleted",
        "ProposalRejected",
    ] * 2 + ["StateChanged:fail"]
    errors = [e.error for e in of_type(records, "ProposalRejected")]
    assert len(errors) == 2 and all("token limit" in e for e in errors)
    assert out["facts"]["errors"] == errors
    assert "invalid model output" in r.err and "token limit" in r.err


# -- 2. a server that never answers -------------------------------------------------------


def test_hung_server_times_out_at_the_model_timeout(workspace: Path) -> None:
    with ScriptedServer([Turn(hang=True), ENV]) as srv:
        t0 = time.monotonic()
        r, out = dry(workspace, srv, "--model-timeout", "2")
        took = time.monotonic() - t0
        assert len(srv.requests) == 1, "a call past its deadline is cancelled, not retried"
    assert took < 60, f"a 2 s model timeout took {took:.1f} s"
    assert r.code == 12, r.err
    assert (out["state"], out["reason"]) == ("timed_out", "model_timeout")
    records = events_of(workspace, out["run_id"])
    assert run_span(records) < 2 + 3, "the run itself (CLI start-up on a loaded machine is not the run)"
    assert chain(records) == [
        "RunRequested",
        "StateChanged:propose",
        "ModelCallStarted",
        "ModelCallFailed",
        "StateChanged:time_out",
    ]
    failed = of_type(records, "ModelCallFailed")[0]
    assert (failed.error, failed.purpose, failed.attempt) == ("timeout", "propose", 1)
    assert 1900 <= failed.duration_ms < 8000 and "2s deadline" in failed.message
    assert out["facts"]["error"] == "timeout"


# -- 3. a slow but steady stream ----------------------------------------------------------------


def test_slow_steady_stream_is_not_cut_off(workspace: Path) -> None:
    # 24 content pieces, 0.2 s apart: about 5 s of streaming, far below the client's 120 s stall
    # window between events, and inside the model timeout. It must be read to the end.
    with ScriptedServer([Turn(content=ENV_JSON, slow_chunks=(24, 0.2))]) as srv:
        r, out = dry(workspace, srv, "--model-timeout", "30")
    records = assert_accepted(workspace, r, out)
    done = of_type(records, "ModelCallCompleted")[0]
    assert done.duration_ms >= 4000, done.duration_ms
    assert blob_json(workspace, done.response_blob)["content"] == ENV_JSON


def test_slow_stream_longer_than_the_model_timeout_is_cancelled(workspace: Path) -> None:
    # The same steady trickle, but the whole call has 2 s: the deadline cancels it mid-stream.
    with ScriptedServer([Turn(content=ENV_JSON, slow_chunks=(40, 0.25))]) as srv:
        t0 = time.monotonic()
        r, out = dry(workspace, srv, "--model-timeout", "2")
        took = time.monotonic() - t0
    assert took < 60, took
    assert (out["state"], out["reason"]) == ("timed_out", "model_timeout")
    records = events_of(workspace, out["run_id"])
    failed = of_type(records, "ModelCallFailed")[0]
    assert failed.error == "timeout" and failed.duration_ms < 6000 and run_span(records) < 2 + 3


def test_stream_that_goes_silent_is_cut_at_the_stall_timeout(workspace: Path) -> None:
    # Two events, then silence: --stall-timeout 1 cancels it long before the 60 s model timeout,
    # while a steady stream with 0.2 s gaps under the same stall timeout is read to the end.
    # A stall is a transport failure: retried like a disconnect (3 retries), each cut after 1 s.
    silent = Turn(content=ENV_JSON, slow_chunks=(24, 0.2), hang_after_chunks=2)
    with ScriptedServer([silent] * 4) as srv:
        r, out = dry(workspace, srv, "--model-timeout", "60", "--stall-timeout", "1")
        assert len(srv.requests) == 4
    assert (out["state"], out["reason"]) == ("timed_out", "model_timeout")
    records = events_of(workspace, out["run_id"])
    failed = of_type(records, "ModelCallFailed")[0]
    assert failed.error == "timeout" and [("stall" in str(r.get("error"))) for r in failed.retries] == [True] * 4
    assert run_span(records) < 4 * 1 + 7 + 3, "four 1 s stalls and the backoffs, far below the 60 s model timeout"
    steady = workspace.parent / "steady"
    steady.mkdir()
    with ScriptedServer([Turn(content=ENV_JSON, slow_chunks=(24, 0.2))]) as srv:
        r, out = dry(steady, srv, "--model-timeout", "60", "--stall-timeout", "1")
    assert_accepted(steady, r, out)


# -- 4. rate limited, then fine ---------------------------------------------------------------


def test_429_with_retry_after_then_success(workspace: Path) -> None:
    turns = [Turn(status=429, error="rate limited: slow down", headers={"Retry-After": "1"}), ENV]
    with ScriptedServer(turns) as srv:
        r, out = dry(workspace, srv)
        assert len(srv.requests) == 2
    records = assert_accepted(workspace, r, out)
    assert [e.attempt for e in of_type(records, "ModelCallStarted")] == [1], "retries live inside one call"
    done = of_type(records, "ModelCallCompleted")[0]
    assert len(done.retries) == 1
    retry = done.retries[0]
    assert (retry["attempt"], retry["status"], retry["wait_ms"]) == (1, 429, 1000)
    assert "rate limited" in retry["message"]
    assert done.duration_ms >= 1000


# -- 5. API keys never stored -----------------------------------------------------------------

SECRET = "sk-test-SECRET-123"


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def assert_key_stored_nowhere(ws: Path, *outputs: str, artifacts_expected: bool = True) -> None:
    """Not in the SQLite files (main, -wal, -shm), not in any artifact, not in what the CLI printed."""
    for text in outputs:
        assert SECRET not in text
    kodr_dir = ws / ".kodr"
    db_files = [p for p in kodr_dir.iterdir() if p.name.startswith("kodr.db")]
    assert kodr_dir / "kodr.db" in db_files
    for p in db_files:
        assert SECRET.encode() not in p.read_bytes(), f"the key is in {p}"
    artifacts = _files_under(kodr_dir / "runs")
    assert artifacts or not artifacts_expected, "the run left artifacts to check"
    for p in artifacts:
        assert SECRET.encode() not in p.read_bytes(), f"the key is in {p}"
    run_id = kodr("runs", "--json", cwd=ws).json()[0]["run_id"]
    for cmd in (("events", run_id, "--json"), ("show", run_id, "--json"), ("explain", run_id, "--json")):
        shown = kodr(*cmd, cwd=ws, env={"KODR_API_KEY": SECRET})
        assert shown.code == 0 and SECRET not in shown.out + shown.err, cmd


def test_api_key_is_sent_but_never_stored(workspace: Path) -> None:
    # The 429 echoes the key the way some providers do ("Incorrect API key provided: sk-...").
    turns = [Turn(status=429, error=f"quota exceeded for key {SECRET}", headers={"Retry-After": "0"}), ENV]
    with ScriptedServer(turns) as srv:
        r = kodr(
            "--log-level",
            "debug",
            "run",
            "-p",
            TASK,
            "--provider",
            "openai-compatible",
            "--base-url",
            srv.base_url,
            "--dry-run",
            cwd=workspace,
            env={"KODR_API_KEY": SECRET},
            timeout=120,
        )
        sent = srv.all_requests
    assert r.code == 0, r.err
    assert len(sent) == 3 and any(q["method"] == "GET" for q in sent), "GET /models, then the 429, then the answer"
    for q in sent:
        assert {k.lower(): v for k, v in q["headers"].items()}.get("authorization") == f"Bearer {SECRET}", q
    assert "+++ b/src/sum.js" in r.out
    assert '"model_retry"' in r.err and "quota exceeded for key ***" in r.err, "the retry was logged, scrubbed"
    assert_key_stored_nowhere(workspace, r.out, r.err)
    run_id = kodr("runs", "--json", cwd=workspace).json()[0]["run_id"]
    done = of_type(events_of(workspace, run_id), "ModelCallCompleted")[0]
    assert done.retries[0]["status"] == 429 and done.retries[0]["message"] == "quota exceeded for key ***"


def test_api_key_echoed_by_a_refusal_is_scrubbed(workspace: Path) -> None:
    refusal = Turn(status=401, error=f"Incorrect API key provided: {SECRET}. You can find your key at ...")
    with ScriptedServer([refusal]) as srv:
        r = kodr(
            "--log-level",
            "debug",
            "run",
            "-p",
            TASK,
            "--base-url",
            srv.base_url,
            "--model",
            "gpt-x",
            "--json",
            cwd=workspace,
            env={"KODR_API_KEY": SECRET},
            timeout=120,
        )
        assert len(srv.requests) == 1, "a 401 is not retried"
    out = r.json()
    assert r.code == 10, r.err
    assert (out["state"], out["reason"]) == ("failed", "model_unavailable")
    failed = of_type(events_of(workspace, out["run_id"]), "ModelCallFailed")[0]
    assert (
        failed.error == "http" and "HTTP 401" in failed.message and "Incorrect API key provided: ***" in failed.message
    )
    assert_key_stored_nowhere(workspace, r.out, r.err, artifacts_expected=False)  # nothing proposed


# -- 6. token usage ------------------------------------------------------------------------------


def test_token_usage_is_recorded(workspace: Path) -> None:
    usage = {
        "prompt_tokens": 1234,
        "completion_tokens": 56,
        "total_tokens": 1290,
        "completion_tokens_details": {"reasoning_tokens": 7},
    }
    with ScriptedServer([Turn(content=ENV_JSON, usage=usage)]) as srv:
        r, out = dry(workspace, srv)
        assert srv.requests[0]["body"]["stream_options"] == {"include_usage": True}
    records = assert_accepted(workspace, r, out)
    assert of_type(records, "ModelCallCompleted")[0].usage == usage


def test_usage_of_a_non_streaming_answer_is_recorded(workspace: Path) -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    with ScriptedServer([Turn(content=ENV_JSON, usage=usage, ignore_stream=True)]) as srv:
        r, out = dry(workspace, srv)
    assert of_type(assert_accepted(workspace, r, out), "ModelCallCompleted")[0].usage == usage


# -- 7. plan, then execute ----------------------------------------------------------------------

PLAN = """# Plan

1. `calc.js`: add `sub(a, b)` next to `add` and export it.
2. `calc.test.js` (new): node:test cases for add and sub.
3. `README.md` (new): one paragraph on the two functions.

The tests pass with `node --test`.
"""
CALC = "function add(a, b) {\n  return a + b;\n}\nmodule.exports = { add };\n"
CALC_NEW = (
    "function add(a, b) {\n  return a + b;\n}\nfunction sub(a, b) {\n  return a - b;\n}\n"
    "module.exports = { add, sub };\n"
)
CALC_TEST = (
    "const test = require('node:test');\nconst assert = require('node:assert/strict');\n"
    "const { add, sub } = require('./calc.js');\ntest('add', () => assert.equal(add(2, 3), 5));\n"
    "test('sub', () => assert.equal(sub(5, 3), 2));\n"
)
README = "# calc\n\n`add` and `sub` for two numbers.\n"
PLAN_ENV = envelope({"calc.js": CALC_NEW, "calc.test.js": CALC_TEST, "README.md": README}, summary="add sub")


def _assert_multi_file_patch(out: str) -> None:
    assert "--- a/calc.js" in out and "+++ b/calc.js" in out and "+function sub(a, b) {" in out
    assert "-module.exports = { add };" in out and "+module.exports = { add, sub };" in out
    assert "--- /dev/null" in out and "+++ b/calc.test.js" in out and "+test('sub'" in out
    assert "+++ b/README.md" in out and "+# calc" in out


def _plan_in(request: dict) -> bool:
    return any(PLAN.strip() in (m.get("content") or "") for m in request["body"]["messages"])


def test_plan_then_run_with_the_last_plan(workspace: Path) -> None:
    (workspace / "calc.js").write_text(CALC)
    with ScriptedServer([f"<think>short plan</think>\n{PLAN}"]) as srv:
        p = kodr("plan", "-p", TASK, "--base-url", srv.base_url, "--json", cwd=workspace, timeout=120)
        plan_request = srv.requests[0]["body"]
    assert p.code == 0, p.err
    pout = p.json()
    assert (pout["state"], pout["reason"]) == ("proposed", "plan_recorded")
    records = events_of(workspace, pout["run_id"])
    assert chain(records) == [
        "RunRequested",
        "StateChanged:propose",
        "ModelCallStarted",
        "ModelCallCompleted",
        "PlanRecorded",
        "StateChanged:conclude_dry_run",
    ]
    assert records[0].event.mode == "plan"
    recorded = of_type(records, "PlanRecorded")[0].plan
    assert recorded == PLAN.strip(), "the think block is dropped, the plan kept"
    assert (workspace / ".kodr" / "runs" / pout["run_id"] / "plan.md").read_text() == PLAN.strip() + "\n"
    assert "response_format" not in plan_request, "a plan is Markdown, not the envelope"
    assert "calc.js" in plan_request["messages"][-1]["content"] and TASK in plan_request["messages"][-1]["content"]
    assert (workspace / "calc.js").read_text() == CALC and "calc.test.js" not in snapshot(workspace)

    with ScriptedServer([PLAN_ENV]) as srv:
        r = kodr(
            "run", "-p", TASK, "--base-url", srv.base_url, "--plan", "last", "--dry-run", cwd=workspace, timeout=120
        )
        run_request = srv.requests[0]
    assert r.code == 0, r.err
    assert _plan_in(run_request), run_request["body"]["messages"]
    assert "response_format" in run_request["body"]
    _assert_multi_file_patch(r.out)
    assert snapshot(workspace) == {"calc.js": sha(CALC)}, "a dry run writes nothing"
    rows = kodr("runs", "--json", cwd=workspace).json()
    assert [(row["mode"], row["state"], row["reason"]) for row in rows] == [
        ("run", "proposed", "dry_run"),
        ("plan", "proposed", "plan_recorded"),
    ]
    assert recorded_plan(workspace, rows[0]["run_id"]) == PLAN.strip()


def recorded_plan(ws: Path, run_id: str) -> str | None:
    """The plan recorded in the run's options (so resume and replay inject the same plan)."""
    return (events_of(ws, run_id)[0].event.options.get("plan") or "").strip() or None


def test_run_with_a_plan_file_and_a_plan_run_id(workspace: Path, tmp_path: Path) -> None:
    (workspace / "calc.js").write_text(CALC)
    plan_file = tmp_path / "my-plan.md"
    plan_file.write_text(PLAN)
    with ScriptedServer([PLAN_ENV]) as srv:
        r = kodr(
            "run",
            "-p",
            TASK,
            "--base-url",
            srv.base_url,
            "--plan",
            str(plan_file),
            "--dry-run",
            cwd=workspace,
            timeout=120,
        )
        assert _plan_in(srv.requests[0])
    assert r.code == 0, r.err
    _assert_multi_file_patch(r.out)

    with ScriptedServer([PLAN]) as srv:
        plan_id = kodr("plan", "-p", TASK, "--base-url", srv.base_url, "--json", cwd=workspace).json()["run_id"]
    with ScriptedServer([PLAN_ENV]) as srv:
        r = kodr(
            "run",
            "-p",
            TASK,
            "--base-url",
            srv.base_url,
            "--plan",
            plan_id[:8],
            "--dry-run",
            cwd=workspace,
            timeout=120,
        )
        assert _plan_in(srv.requests[0])
    assert r.code == 0, r.err


def test_plan_last_without_a_plan_is_refused(workspace: Path) -> None:
    with ScriptedServer([ENV]) as srv:
        r = kodr("run", "-p", TASK, "--base-url", srv.base_url, "--plan", "last", "--dry-run", cwd=workspace)
        assert srv.requests == []
    assert r.code == 2 and "kodr plan" in r.err


def test_cut_off_plan_is_rejected_not_recorded(workspace: Path) -> None:
    # A plan cut at the token limit is as untrustworthy as a cut-off envelope: a later
    # `run --plan last` would inject half a plan. It should be rejected and retried.
    cut = Turn(content="# Plan\n\n1. `calc.js`: add sub\n2. `calc.test", finish_reason="length")
    with ScriptedServer([cut, PLAN]) as srv:
        p = kodr("plan", "-p", TASK, "--base-url", srv.base_url, "--json", cwd=workspace, timeout=120)
    out = p.json()
    records = events_of(workspace, out["run_id"])
    rejected = of_type(records, "ProposalRejected")
    assert rejected and "token limit" in rejected[0].error, chain(records)
    assert (out["state"], out["reason"]) == ("proposed", "plan_recorded")
    assert of_type(records, "PlanRecorded")[0].plan == PLAN.strip()


def test_plan_prints_the_plan(workspace: Path) -> None:
    with ScriptedServer([PLAN]) as srv:
        r = kodr("plan", "-p", TASK, "--base-url", srv.base_url, cwd=workspace)
    assert r.code == 0, r.err
    assert PLAN.strip() in r.out


# -- 8. the read-only tool loop --------------------------------------------------------------------

TOOL_NAMES = {"list_files", "read_file", "inspect_symbols"}


def _tool_names(body: dict) -> set[str]:
    return {t["function"]["name"] for t in body.get("tools") or []}


def test_tool_loop_lists_reads_then_answers(workspace: Path) -> None:
    (workspace / "src").mkdir()
    (workspace / "src" / "calc.js").write_text(CALC)
    (workspace / "package.json").write_text('{"name": "calc", "version": "1.0.0"}\n')
    env = envelope({"src/calc.js": CALC_NEW})
    turns = [
        Turn(tool_calls=[{"name": "list_files", "arguments": {}}]),
        Turn(tool_calls=[{"name": "read_file", "arguments": {"path": "src/calc.js"}}]),
        Turn(content=f"<think>now I know</think>{json.dumps(env)}"),
    ]
    with ScriptedServer(turns) as srv:
        r, out = dry(workspace, srv, "--tools")
        requests = [q["body"] for q in srv.requests]
    assert r.code == 0, r.err
    assert (out["state"], out["reason"]) == ("proposed", "dry_run")
    assert len(requests) == 3
    for body in requests:
        assert _tool_names(body) >= TOOL_NAMES, body.get("tools")
        assert "response_format" not in body, "a local server gets tools without response_format"
    listing = [m for m in requests[1]["messages"] if m["role"] == "tool"]
    assert len(listing) == 1 and "src/calc.js" in listing[0]["content"] and "package.json" in listing[0]["content"]
    read = [m for m in requests[2]["messages"] if m["role"] == "tool"]
    assert len(read) == 2 and "return a + b;" in read[1]["content"]
    records = events_of(workspace, out["run_id"])
    assert chain(records) == DRY_CHAIN, "the whole loop is one model call in the history"
    done = of_type(records, "ModelCallCompleted")[0]
    response = blob_json(workspace, done.response_blob)["response"]
    trace = response["tool_trace"]
    assert [(t["step"], t["name"], t["source"]) for t in trace] == [
        (1, "list_files", "protocol"),
        (2, "read_file", "protocol"),
    ]
    assert json.loads(trace[1]["arguments"]) == {"path": "src/calc.js"} and trace[1]["result_bytes"] > 0
    assert response["tool_steps"] == 3
    assert done.usage["prompt_tokens"] == 36, "usage is summed over the loop's three calls"
    accepted = of_type(records, "ProposalAccepted")[0]
    assert [f["path"] for f in accepted.files] == ["src/calc.js"]
    assert (workspace / "src" / "calc.js").read_text() == CALC


def test_tool_loop_with_calls_written_as_text(workspace: Path) -> None:
    (workspace / "calc.js").write_text(CALC)
    turns = [
        Turn(content='<tool_call>\n{"name": "read_file", "arguments": {"path": "calc.js"}}\n</tool_call>'),
        Turn(content=json.dumps(envelope({"calc.js": CALC_NEW}))),
    ]
    with ScriptedServer(turns) as srv:
        r, out = dry(workspace, srv, "--tools")
        requests = [q["body"] for q in srv.requests]
    assert (out["state"], out["reason"]) == ("proposed", "dry_run"), r.err
    assert len(requests) == 2
    fed_back = requests[1]["messages"][-1]
    assert fed_back["role"] == "user" and "[result of read_file" in fed_back["content"]
    assert "return a + b;" in fed_back["content"]
    done = of_type(events_of(workspace, out["run_id"]), "ModelCallCompleted")[0]
    trace = blob_json(workspace, done.response_blob)["response"]["tool_trace"]
    assert [(t["name"], t["source"]) for t in trace] == [("read_file", "text")]


def test_tool_budget_spent_final_turn_asks_for_the_envelope_without_tools(workspace: Path) -> None:
    (workspace / "calc.js").write_text(CALC)
    turns = [
        Turn(tool_calls=[{"name": "list_files", "arguments": {}}]),
        json.dumps(envelope({"calc.js": CALC_NEW})),
    ]
    with ScriptedServer(turns) as srv:
        r, out = dry(workspace, srv, "--tools", "--tool-steps", "2")
        requests = [q["body"] for q in srv.requests]
    assert (out["state"], out["reason"]) == ("proposed", "dry_run"), r.err
    assert _tool_names(requests[0]) >= TOOL_NAMES and "response_format" not in requests[0]
    final = requests[1]
    assert "tools" not in final, "the last step offers no tools"
    assert final["response_format"]["type"] == "json_schema", "and asks for the envelope strictly"
    assert not any(m["role"] == "tool" for m in final["messages"]), "tool messages are flattened to text"
    assert "tool budget is used up" in final["messages"][-1]["content"]


def ollama_call(name: str, args: dict[str, Any]) -> Turn:
    """Ollama's stream: the whole call in one chunk, id ``call_0`` every step, then finish "stop"."""
    call = {"id": "call_0", "index": 0, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
    return Turn(
        raw_chunks=[
            chunk({"role": "assistant", "content": "", "tool_calls": [call]}),
            chunk({"role": "assistant", "content": ""}, "stop"),
        ]
    )


def test_tool_loop_with_ollama_whole_call_chunks(workspace: Path) -> None:
    (workspace / "calc.js").write_text(CALC)
    (workspace / "util.js").write_text("module.exports = {};\n")
    turns = [
        ollama_call("read_file", {"path": "calc.js"}),
        ollama_call("read_file", {"path": "util.js"}),
        json.dumps(envelope({"calc.js": CALC_NEW})),
    ]
    with ScriptedServer(turns) as srv:
        r, out = dry(workspace, srv, "--tools")
        requests = [q["body"] for q in srv.requests]
    assert (out["state"], out["reason"]) == ("proposed", "dry_run"), r.err
    assert len(requests) == 3
    tool_msgs = [m for m in requests[2]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_msgs] == ["call_0", "call_0"]
    assert "return a + b;" in tool_msgs[0]["content"] and "module.exports = {};" in tool_msgs[1]["content"]
    done = of_type(events_of(workspace, out["run_id"]), "ModelCallCompleted")[0]
    trace = blob_json(workspace, done.response_blob)["response"]["tool_trace"]
    assert [json.loads(t["arguments"])["path"] for t in trace] == ["calc.js", "util.js"]


def test_tool_loop_envelope_in_a_protocol_call_ends_the_loop(workspace: Path) -> None:
    (workspace / "calc.js").write_text(CALC)
    env = envelope({"calc.js": CALC_NEW})
    with ScriptedServer([Turn(tool_calls=[{"name": "submit", "arguments": env}]), ENV]) as srv:
        r, out = dry(workspace, srv, "--tools")
        assert len(srv.requests) == 1, "an envelope in a call is the answer, not a tool to run"
    assert_accepted(workspace, r, out, {"calc.js": CALC_NEW})


def test_tool_loop_on_a_hung_server_times_out(workspace: Path) -> None:
    (workspace / "calc.js").write_text(CALC)
    with ScriptedServer([Turn(tool_calls=[{"name": "list_files", "arguments": {}}]), Turn(hang=True)]) as srv:
        t0 = time.monotonic()
        r, out = dry(workspace, srv, "--tools", "--model-timeout", "2")
        took = time.monotonic() - t0
        assert len(srv.requests) == 2
    assert took < 60, f"a 2 s model timeout took {took:.1f} s"
    assert r.code == 12 and (out["state"], out["reason"]) == ("timed_out", "model_timeout")
    records = events_of(workspace, out["run_id"])
    assert run_span(records) < 2 + 3, "the run itself (CLI start-up on a loaded machine is not the run)"
    assert chain(records)[-3:] == ["ModelCallStarted", "ModelCallFailed", "StateChanged:time_out"]
    failed = of_type(records, "ModelCallFailed")[0]
    assert failed.error == "timeout" and 1900 <= failed.duration_ms < 8000


def test_tool_loop_timeout_message_names_the_users_budget(workspace: Path) -> None:
    # The user gave 2 s; the message should say so, not the few ms less the last step had left.
    with ScriptedServer([Turn(hang=True)]) as srv:
        r, out = dry(workspace, srv, "--tools", "--model-timeout", "2")
    failed = of_type(events_of(workspace, out["run_id"]), "ModelCallFailed")[0]
    assert "its 2s deadline" in failed.message, failed.message
