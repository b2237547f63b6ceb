"""kodr against llmock, a third-party fault-injecting mock, judged by llmock's own verdict.

Issue 11, Must be shown. llmock (PyPI ``llmock``) journals every attempt and
its timing and judges the client: Retry-After ignored, non-retryable errors
retried, truncated streams accepted, malformed chunks ignored, no backoff,
giving up without a retry, sitting through stalls. Two sessions, each a series
of real ``kodr run`` subprocesses against one llmock server on loopback, then
``llmock report --strict`` (exit 1 on any FAIL or WARN):

* scripted: one fault per call, each kind once;
* chaos: seeded random HTTP errors and stream faults on every request.

Every run must end in a recorded terminal state with no traceback; the
scripted session's runs must all land their proposal.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llmock")

from llmock.chaos import ChaosSettings, StreamChaos  # noqa: E402
from llmock.pytest_plugin import LLMock  # noqa: E402
from llmock.scenarios import Delay, Fail, Match  # noqa: E402
from llmock.testing import LLMockServer  # noqa: E402

from tests.e2e.conftest import envelope, events_of, kodr, kodr_env  # noqa: E402

ENV_TEXT = json.dumps(envelope({"src/sum.js": "export const sum = (a, b) => a + b;\n"}, summary="add sum"))


def dry_run(ws: Path, mock: LLMock, *extra: str) -> dict[str, Any]:
    r = kodr(
        "run",
        "-p",
        "add sum",
        "--base-url",
        mock.base_url("openai"),
        "--model",
        "gpt-4o-mini",
        "--dry-run",
        "--json",
        "--stall-timeout",
        "1",
        *extra,
        cwd=ws,
        timeout=180,
    )
    assert "Traceback" not in r.err, r.err[-3000:]
    out = json.loads(r.out)
    assert out["state"] in ("proposed", "failed", "timed_out"), out
    return out


def verdict(mock: LLMock) -> tuple[int, str, dict[str, Any]]:
    """``llmock report`` as a user runs it, strict: warnings fail too."""
    cmd = [sys.executable, "-m", "llmock.cli", "report", "--url", mock.url, "--strict"]
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=kodr_env())
    data = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60, env=kodr_env())
    return text.returncode, text.stdout + text.stderr, json.loads(data.stdout)


CHAT = Match(path="*/chat/completions")

#: One fault per call. HTTP faults are aimed at the chat call: a run also asks /models and the
#: server's own context-window endpoints first, and those are retried the same way.
FAULTS: dict[str, Callable[[LLMock], object]] = {
    "429 with Retry-After": lambda m: m.add(Fail(429, retry_after=0.6, match=CHAT)),
    "503": lambda m: m.add(Fail(503, match=CHAT)),
    "500 twice": lambda m: m.add(Fail(500, times=2, match=CHAT)),
    "503 on GET /models": lambda m: m.add(Fail(503, match=Match(path="*/models"))),
    "disconnect mid-stream": lambda m: m.disconnect(after_chunks=2),
    "truncated stream (no finish_reason)": lambda m: m.truncate(after_chunks=2),
    "malformed chunk": lambda m: m.corrupt(after_chunks=1),
    "stall mid-stream": lambda m: m.stall(after_chunks=1, seconds=3),
    "slow first token": lambda m: m.slow_first_token(0.5),
    "delay": lambda m: m.add(Delay(0.5, match=CHAT)),
}


def test_scripted_session_one_fault_per_call_lands_every_run(tmp_path: Path) -> None:
    with LLMockServer() as server:
        mock = LLMock(server)
        mock.reply(ENV_TEXT, times=None)
        # Chunks paced like a model generating: a client that stops reading at a bad chunk is then seen
        # to stop (llmock cannot tell a retry from a new call when the whole stream was already sent).
        mock.pace(20)
        outcomes = {}
        for name, fault in FAULTS.items():
            ws = tmp_path / name.replace(" ", "_").replace("/", "_")
            ws.mkdir()
            fault(mock)
            out = dry_run(ws, mock)
            outcomes[name] = (out["state"], out["reason"])
            records = events_of(ws, out["run_id"])
            done = [r.event for r in records if r.type == "ModelCallCompleted"]
            assert done and done[0].retries or name in ("slow first token", "delay", "503 on GET /models"), (name, done)
        # a 400 is surfaced, never retried with the same body
        ws = tmp_path / "context_overflow"
        ws.mkdir()
        mock.add(
            Fail(
                400,
                code="context_length_exceeded",
                match=CHAT,
                times=2,
                message="This model's maximum context length was exceeded.",
            )
        )
        overflow = dry_run(ws, mock)
        code, text, data = verdict(mock)
    assert all(v == ("proposed", "dry_run") for v in outcomes.values()), outcomes
    assert (overflow["state"], overflow["reason"]) == ("failed", "context_overflow"), overflow
    assert code == 0, text
    assert data["passed"] and not data["errors"] and not data["warnings"], text
    assert "FAIL" not in text and "WARN" not in text, text
    assert data["attempts"] >= len(FAULTS) * 2


def test_seeded_chaos_session_has_a_clean_verdict(tmp_path: Path) -> None:
    random.seed(20261126)  # llmock draws its chaos from the global generator of this process
    chaos = ChaosSettings(error_rates={429: 0.1, 500: 0.05, 503: 0.1})
    with LLMockServer(chaos=chaos) as server:
        server.state.stream_chaos = StreamChaos(
            fault_rates=(("disconnect", 0.1), ("truncate", 0.1), ("malformed", 0.1), ("stall", 0.05)),
            stall_seconds=2.0,
            max_after_chunks=3,
            chunk_delay_ms=20,
        ).validated()
        mock = LLMock(server)
        mock.reply(ENV_TEXT, times=None)
        states = []
        for i in range(8):
            ws = tmp_path / f"chaos{i}"
            ws.mkdir()
            states.append(dry_run(ws, mock, *(["--tools"] if i % 2 else []))["state"])
        code, text, data = verdict(mock)
    assert code == 0, text
    assert data["passed"] and not data["errors"] and not data["warnings"], text
    assert data["faults_injected"] > 0, "the seed injected no fault: the session proves nothing"
    assert states.count("proposed") >= 6, states
