"""Hostile model replies through the real CLI: every one ends in a recorded terminal state.

Issue 10 item 4: each reply below once crashed kodr with a traceback and left the
run stuck in ``proposing`` (crashing again on every resume). Each case here goes
through ``kodr run`` in a subprocess against the loopback quirk server and
asserts what the user gets: the exit code, the terminal state and reason, the
error quoted back to the model, the requests the server saw, no traceback, and
that ``kodr resume`` has nothing left to do.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import events_of, kodr
from tests.support.scripted_server import ScriptedServer, Turn, endless


def chunk(delta: dict[str, Any], finish: Any = "stop", **choice: Any) -> dict[str, Any]:
    return {"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish, **choice}]}


def env_text(path: str) -> str:
    return json.dumps({"summary": "s", "files": [{"path": path, "content": "x\n"}], "notes": None})


DEEP = '{"summary": "s", "files": ' + "[" * 100_000 + "]" * 100_000 + "}"

#: name -> (reply, the error the model is told, extra flags)
CASES: dict[str, tuple[Turn, str, tuple[str, ...]]] = {
    "nested 100,000 deep": (Turn(content=DEEP), "JSON nested too deep", ()),
    "nested 100,000 deep objects": (Turn(content='{"a":' * 100_000 + "1" + "}" * 100_000), "JSON nested too deep", ()),
    "lone surrogate in a path": (
        Turn(content=env_text("a\ud800.js").replace("\\ud800", "\\ud800")),
        "not valid Unicode",
        (),
    ),
    "lone surrogate in the stream": (
        Turn(raw_chunks=['{"choices":[{"index":0,"delta":{"content":"\\ud800"},"finish_reason":"stop"}]}']),
        "no JSON object",
        (),
    ),
    "64-emoji path (ENAMETOOLONG)": (Turn(content=env_text("\U0001f600" * 64 + ".js")), "longer than 255 bytes", ()),
    "content part {text: 5}": (Turn(raw_chunks=[chunk({"content": [{"text": 5}]})]), "the reply was empty", ()),
    "tool call index [0]": (
        Turn(
            raw_chunks=[
                chunk(
                    {"tool_calls": [{"index": [0], "id": "a", "function": {"name": "list_files", "arguments": "{}"}}]},
                    "tool_calls",
                )
            ]
        ),
        "no JSON object",
        ("--tools",),
    ),
    "tool call with 10,000-digit limit": (
        Turn(
            raw_chunks=[
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "a",
                                "function": {
                                    "name": "read_file",
                                    "arguments": json.dumps({"path": "a", "limit": "9" * 10000}),
                                },
                            }
                        ]
                    },
                    "tool_calls",
                )
            ]
        ),
        "no JSON object",
        ("--tools",),
    ),
    "binary garbage body": (Turn(raw_body=bytes(range(256)) * 4), "", ()),
    "JSON body nested 100,000 deep": (
        Turn(raw_body=b"[" * 100_000, headers={"Content-Type": "application/json"}),
        "",
        (),
    ),
    "usage nested deep": (
        Turn(
            raw_chunks=[
                chunk({"content": "hi"}),
                {"choices": [], "usage": json.loads("[" * 500 + "]" * 500)},
                {"choices": [], "usage": {"a": json.loads('{"b":' * 500 + "1" + "}" * 500)}},
            ]
        ),
        "no JSON object",
        (),
    ),
}


def run(ws: Path, srv: ScriptedServer, *extra: str) -> tuple[int, dict[str, Any], str]:
    r = kodr(
        "run",
        "-p",
        "t",
        "--base-url",
        srv.base_url,
        "--model",
        "m",
        "--dry-run",
        "--json",
        "--model-timeout",
        "20",
        *extra,
        cwd=ws,
        timeout=120,
    )
    assert "Traceback" not in r.err, r.err[-3000:]
    return r.code, json.loads(r.out), r.err


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_reply_ends_the_run_with_a_recorded_state(tmp_path: Path, name: str) -> None:
    turn, told, extra = CASES[name]
    (tmp_path / "a.js").write_text("a\n")
    with ScriptedServer([turn] * 8) as srv:
        code, out, err = run(tmp_path, srv, *extra)
        seen = srv.requests
    assert code != 0 and out["state"] == "failed", out
    assert out["reason"] in ("invalid_proposal", "model_unavailable"), out
    records = events_of(tmp_path, out["run_id"])
    assert records[-1].type == "StateChanged" and records[-1].event.outcome == "failed"
    if out["reason"] == "invalid_proposal":
        rejected = [r.event.error for r in records if r.type == "ProposalRejected"]
        assert len(rejected) == 2 and told in rejected[0], rejected
        assert len(seen) == 2 if not extra else len(seen) >= 2, len(seen)
        assert told in json.dumps(seen[-1]["body"]["messages"]), "the retry quotes the error"
    else:
        failed = [r.event for r in records if r.type == "ModelCallFailed"]
        assert failed and failed[0].error == "http", failed
    # nothing is left to resume
    again = kodr("resume", out["run_id"], "--json", cwd=tmp_path, timeout=60)
    assert "Traceback" not in again.err and "proposing" not in again.out, again.err[-2000:]


def test_a_models_list_that_never_ends_is_cut_by_size_and_time(tmp_path: Path) -> None:
    """Without --model, GET /models is asked; an endless one once grew kodr to 10.9 GB."""
    with ScriptedServer(["never used"], routes={"/models": endless()}) as srv:
        started = time.monotonic()
        r = kodr(
            "run",
            "-p",
            "t",
            "--base-url",
            srv.base_url,
            "--dry-run",
            "--json",
            "--model-timeout",
            "5",
            cwd=tmp_path,
            timeout=60,
        )
        elapsed = time.monotonic() - started
        sent = srv.bytes_sent
        chats = srv.requests
    assert "Traceback" not in r.err, r.err[-2000:]
    out = json.loads(r.out)
    assert (out["state"], out["reason"]) == ("failed", "model_unavailable"), out
    records = events_of(tmp_path, out["run_id"])
    failed = [r.event for r in records if r.type == "ModelCallFailed"][0]
    assert "GET /models" in failed.message and "1048576 bytes" in failed.message, failed.message
    assert chats == [], "no chat request without a model"
    assert elapsed < 30 and sent < 64 * 1024 * 1024, (elapsed, sent)


def test_a_models_list_that_trickles_ends_at_the_model_timeout(tmp_path: Path) -> None:
    with ScriptedServer(["never used"], routes={"/models": endless(b" ", interval_s=0.2)}) as srv:
        started = time.monotonic()
        r = kodr(
            "run",
            "-p",
            "t",
            "--base-url",
            srv.base_url,
            "--dry-run",
            "--json",
            "--model-timeout",
            "3",
            cwd=tmp_path,
            timeout=60,
        )
        elapsed = time.monotonic() - started
    out = json.loads(r.out)
    assert (out["state"], out["reason"]) == ("timed_out", "model_timeout"), out
    records = events_of(tmp_path, out["run_id"])
    span = (
        datetime.fromisoformat(records[-1].recorded_at.replace("Z", "+00:00"))
        - datetime.fromisoformat(records[0].recorded_at.replace("Z", "+00:00"))
    ).total_seconds()
    assert span < 3 + 1.5, span  # the run itself (CLI start-up on a busy machine is not the run)
    assert elapsed < 60
    failed = [r.event for r in records if r.type == "ModelCallFailed"][0]
    assert "GET /models" in failed.message and failed.duration_ms >= 2500
