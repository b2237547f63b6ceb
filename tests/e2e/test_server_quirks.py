"""Issue 11, one test (or a few) per item: the real CLI against a loopback quirk server.

Each test drives ``kodr run`` in a subprocess against the scripted server
imitating one behaviour of LM Studio, Ollama, llama.cpp or vLLM (see the table
in docs/servers.md), and asserts how the run ends and the requests the server
saw.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from store.database import default_url, open_store
from tests.e2e.conftest import Result, envelope, events_of, kodr
from tests.support.scripted_server import ScriptedServer, Turn

CODE = "export const sum = (a, b) => a + b;\n"
ENV = envelope({"src/sum.js": CODE}, summary="add sum")
ENV_JSON = json.dumps(ENV)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "package.json").write_text('{"name": "demo", "type": "module"}\n')
    (root / "README.md").write_text("# demo\n")
    return root


def run(
    ws: Path, base_url: str, *extra: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[Result, dict[str, Any]]:
    r = kodr(
        "run",
        "-p",
        "add sum",
        "--base-url",
        base_url,
        "--model",
        "m",
        "--dry-run",
        "--json",
        *extra,
        cwd=ws,
        env=env,
        timeout=timeout,
    )
    assert "Traceback" not in r.err, r.err[-3000:]
    try:
        return r, json.loads(r.out)
    except ValueError:
        raise AssertionError(f"exit {r.code}\n{r.out}\n{r.err}") from None


def of_type(ws: Path, run_id: str, name: str) -> list[Any]:
    return [r.event for r in events_of(ws, run_id) if r.type == name]


def blob(ws: Path, sha: str) -> Any:
    return json.loads(open_store(default_url(ws)).get_blob(sha))


def landed(out: dict[str, Any]) -> bool:
    return (out["state"], out["reason"]) == ("proposed", "dry_run")


# -- item 1: prose after tool results -------------------------------------------------


def test_1_prose_after_a_tool_result_lands_the_proposal(ws: Path) -> None:
    turns = [
        Turn(tool_calls=[{"name": "list_files", "arguments": {}}]),
        "I have read the listing. I will add src/sum.js with a sum function.",
        ENV,
    ]
    with ScriptedServer(turns) as srv:
        r, out = run(ws, srv.base_url, "--tools")
        seen = [q["body"] for q in srv.requests]
    assert landed(out), out
    assert [("tools" in b, "response_format" in b) for b in seen] == [(True, False), (True, False), (False, True)]
    done = of_type(ws, out["run_id"], "ModelCallCompleted")[0]
    trace = blob(ws, done.response_blob)["response"]
    assert [t["name"] for t in trace["tool_trace"]] == ["list_files"], "the transcript stays in the record"
    assert any("[result of list_files]" in m["content"] for m in seen[2]["messages"])


# -- item 3: fallbacks learned from refusals only -----------------------------------------


def test_3_json_schema_refused_falls_back_to_json_object_then_prompt_only(ws: Path) -> None:
    turns = [
        Turn(status=400, error="response_format type json_schema is not supported"),
        Turn(status=400, error="'response_format' of type 'json_object' is not supported"),
        ENV,
    ]
    with ScriptedServer(turns) as srv:
        r, out = run(ws, srv.base_url)
        seen = [q["body"] for q in srv.requests]
    assert landed(out), out
    assert [(b.get("response_format") or {}).get("type") for b in seen] == ["json_schema", "json_object", None]
    done = of_type(ws, out["run_id"], "ModelCallCompleted")[0]
    assert [r.get("refused") for r in done.retries] == ["response_format", "response_format"]
    learned = done.capabilities["learned"]
    assert [(f["from"], f["to"]) for f in learned] == [("json_schema", "json_object"), ("json_object", "none")]
    shown = kodr("explain", out["run_id"], cwd=ws, timeout=60)
    assert "server fallback: response_format json_schema -> json_object" in shown.out + shown.err, shown.out
    assert "server fallback: response_format json_object -> none" in shown.out + shown.err


def test_3_stream_options_refused_is_omitted(ws: Path) -> None:
    turns = [Turn(status=422, error="Extra inputs are not permitted: stream_options"), ENV]
    with ScriptedServer(turns) as srv:
        r, out = run(ws, srv.base_url)
        seen = [q["body"] for q in srv.requests]
    assert landed(out), out
    assert ["stream_options" in b for b in seen] == [True, False]


def test_3_a_transient_503_is_retried_and_never_learned(ws: Path) -> None:
    turns = [Turn(status=503, error="Loading model", headers={"Retry-After": "0.3"}), ENV]
    with ScriptedServer(turns) as srv:
        r, out = run(ws, srv.base_url, "--tools")
        seen = [q["body"] for q in srv.requests]
    assert landed(out), out
    assert seen[0] == seen[1] and seen[1]["tools"], "the same request again, tools still offered"
    done = of_type(ws, out["run_id"], "ModelCallCompleted")[0]
    assert done.retries[0]["status"] == 503 and done.retries[0]["wait_ms"] == 300
    assert done.duration_ms >= 300 and done.capabilities["learned"] == []


# -- item 5: only a finished stream is an answer ----------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_5_a_complete_looking_stream_without_finish_reason_is_retried(ws: Path) -> None:
    cut = Turn(raw_chunks=[chunk({"content": ENV_JSON})], done=False)
    with ScriptedServer([cut, ENV]) as srv:
        r, out = run(ws, srv.base_url)
        assert len(srv.requests) == 2
    assert landed(out), out
    done = of_type(ws, out["run_id"], "ModelCallCompleted")[0]
    assert "before a finish_reason" in done.retries[0]["error"] and done.finish_reason == "stop"
    assert of_type(ws, out["run_id"], "ProposalRejected") == [], "a cut stream is not the model's fault"


def test_5_a_cut_tool_call_is_never_executed(ws: Path) -> None:
    (ws / "secret.txt").write_text("s\n")
    half = Turn(
        raw_chunks=[
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "a", "function": {"name": "read_file", "arguments": '{"path": "secret'}}
                    ]
                }
            )
        ],
        done=False,
    )
    with ScriptedServer([half, half, half, half]) as srv:
        r, out = run(ws, srv.base_url, "--tools")
        assert len(srv.requests) == 4  # the first try and three retries, all cut
    assert (out["state"], out["reason"]) == ("failed", "model_unavailable"), out
    failed = of_type(ws, out["run_id"], "ModelCallFailed")[0]
    assert "cut off" in failed.message and len(failed.retries) == 4
    assert of_type(ws, out["run_id"], "ModelCallCompleted") == []


# -- item 6: think tags ---------------------------------------------------------------------------


def test_6_think_tags_in_file_content_survive_a_leading_think_block(ws: Path) -> None:
    code = "// <think>keep</think>\nexport const t = '</think>';\n"
    env = envelope({"src/tags.js": code})
    with ScriptedServer([f"<think>plan it</think>\n{json.dumps(env)}"]) as srv:
        r, out = run(ws, srv.base_url)
    assert landed(out), out
    accepted = of_type(ws, out["run_id"], "ProposalAccepted")[0]
    assert open_store(default_url(ws)).get_blob(accepted.files[0]["sha256"]).decode() == code


def test_6_a_draft_inside_an_unclosed_think_is_not_applied(ws: Path) -> None:
    draft = json.dumps(envelope({"src/draft.js": "x\n"}))
    with ScriptedServer([f"<think>maybe {draft}", ENV]) as srv:
        r, out = run(ws, srv.base_url)
        seen = srv.requests
    assert landed(out), out
    rejected = of_type(ws, out["run_id"], "ProposalRejected")[0]
    assert "never closed" in rejected.error and "never closed" in json.dumps(seen[1]["body"]["messages"])
    assert [f["path"] for f in of_type(ws, out["run_id"], "ProposalAccepted")[0].files] == ["src/sum.js"]


# -- item 7: locality ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "local"), [((), True), (("--remote",), False)])
def test_7_a_single_label_host_is_local_and_recorded(ws: Path, flags: tuple[str, ...], local: bool) -> None:
    """``http://ollama:11434/v1`` (docker compose), reached through a proxy that is the quirk server."""
    turns = [Turn(tool_calls=[{"name": "list_files", "arguments": {}}]), ENV]
    with ScriptedServer(turns) as srv:
        proxy = f"http://127.0.0.1:{srv.port}"
        env = {"HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
        r, out = run(ws, "http://ollama:11434/v1", "--tools", *flags, env=env)
        seen = [q["body"] for q in srv.requests]
        paths = [q["path"] for q in srv.requests]
    assert landed(out), out
    assert paths[0] == "http://ollama:11434/v1/chat/completions"
    assert ("response_format" in seen[0]) is (not local), "local tool turns never send the pair"
    options = events_of(ws, out["run_id"])[0].event.options
    assert options["local"] is local
    assert options["locality"] == ("single-label host name 'ollama'" if local else "--remote")


# -- item 9: Retry-After ------------------------------------------------------------------------------


def test_9_retry_after_is_honoured_beyond_the_old_60s_cap_when_the_deadline_allows(ws: Path) -> None:
    with ScriptedServer([Turn(status=429, error="slow down", headers={"Retry-After": "2"}), ENV]) as srv:
        t0 = time.monotonic()
        r, out = run(ws, srv.base_url)
        took = time.monotonic() - t0
    assert landed(out), out
    done = of_type(ws, out["run_id"], "ModelCallCompleted")[0]
    assert done.retries[0]["wait_ms"] == 2000 and took >= 2


def test_9_retry_after_past_the_deadline_ends_the_call_at_once(ws: Path) -> None:
    with ScriptedServer([Turn(status=429, error="slow down", headers={"Retry-After": "3600"}), ENV]) as srv:
        t0 = time.monotonic()
        r, out = run(ws, srv.base_url, "--model-timeout", "30")
        took = time.monotonic() - t0
        assert len(srv.requests) == 1
    assert (out["state"], out["reason"]) == ("failed", "model_unavailable"), out
    failed = of_type(ws, out["run_id"], "ModelCallFailed")[0]
    assert "asked to wait 3600s" in failed.message and took < 20


# -- item 2: a context smaller than kodr's default prompt -----------------------------------------

LLAMA_OVERFLOW = (
    '{"code": 400, "message": "the request exceeds the available context size, try increasing it", '
    '"type": "exceed_context_size_error", "n_prompt_tokens": 9000, "n_ctx": 2048}'
)


def big_workspace(ws: Path) -> None:
    for i in range(6):
        (ws / f"src/mod{i}.js").parent.mkdir(exist_ok=True)
        (ws / f"src/mod{i}.js").write_text(f"// module {i}\n" + "export const x = 1;\n" * 300)  # ~6 KB each


def chat_bytes(body: dict[str, Any]) -> int:
    return sum(len(str(m.get("content") or "").encode()) for m in body["messages"])


def test_2_the_window_is_learned_from_llama_cpp_props_and_the_prompt_fits(ws: Path) -> None:
    from tests.support.scripted_server import json_route

    big_workspace(ws)
    props = {"default_generation_settings": {"n_ctx": 2048}, "total_slots": 1}
    listing = {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "llamacpp"}]}
    with ScriptedServer([ENV], routes={"/props": json_route(props), "/models": json_route(listing)}) as srv:
        r, out = run(ws, srv.base_url)
        body = srv.requests[0]["body"]
        gets = [q["path"] for q in srv.all_requests if q["method"] == "GET"]
    assert landed(out), out
    assert "/props" in gets
    assert chat_bytes(body) <= (2048 - 512) * 3, chat_bytes(body)
    assert "src/mod5.js" in body["messages"][1]["content"], "files that do not fit are still listed by name"


def test_2_context_tokens_flag_sizes_the_prompt(ws: Path) -> None:
    big_workspace(ws)
    with ScriptedServer([ENV]) as srv:
        r, out = run(ws, srv.base_url, "--context-tokens", "1024")
        body = srv.requests[0]["body"]
    assert landed(out), out
    assert chat_bytes(body) <= (1024 - 512) * 3 + 200
    assert events_of(ws, out["run_id"])[0].event.options["context_tokens"] == 1024


def test_2_an_overflow_shrinks_the_prompt_and_retries_once(ws: Path) -> None:
    big_workspace(ws)
    with ScriptedServer([Turn(status=400, error=LLAMA_OVERFLOW), ENV]) as srv:
        r, out = run(ws, srv.base_url, "--tools")
        bodies = [q["body"] for q in srv.requests]
    assert landed(out), out
    assert len(bodies) == 2 and chat_bytes(bodies[1]) < chat_bytes(bodies[0]) // 2
    assert bodies[1]["tools"], "an overflow changes nothing kodr believes the server supports"
    done = of_type(ws, out["run_id"], "ModelCallCompleted")[0]
    assert "prompt 9000 tokens, context 2048" in done.retries[0]["context_overflow"]
    assert done.capabilities["tools"] == "offered without response_format" and done.capabilities["learned"] == []


@pytest.mark.parametrize(
    "error",
    [
        LLAMA_OVERFLOW,  # llama.cpp
        "This model's maximum context length is 4096 tokens. However, you requested 9000 tokens "
        "(8000 in the messages, 1000 in the completion). Please reduce the length of the messages.",  # vLLM
        "Trying to keep the first 9000 tokens when context the overflows. However, the model is loaded with "
        "context length of only 4096 tokens, which is not enough.",  # LM Studio
    ],
)
def test_2_a_second_overflow_ends_failed_context_overflow_with_the_numbers(ws: Path, error: str) -> None:
    big_workspace(ws)
    with ScriptedServer([Turn(status=400, error=error)] * 3) as srv:
        r, out = run(ws, srv.base_url)
        assert len(srv.requests) == 2, "shrink and retry once, then stop"
    assert (out["state"], out["reason"]) == ("failed", "context_overflow"), out
    failed = of_type(ws, out["run_id"], "ModelCallFailed")[0]
    assert failed.error == "context_overflow" and "after shrinking the prompt from" in failed.message
    assert "context 2048" in failed.message or "context 4096" in failed.message, failed.message


# -- item 4: --deadline bounds the step in progress ------------------------------------------------


def run_span(ws: Path, run_id: str) -> float:
    """Seconds from the run's first event to its last."""
    from datetime import datetime

    records = events_of(ws, run_id)
    at = [datetime.fromisoformat(r.recorded_at.replace("Z", "+00:00")).timestamp() for r in (records[0], records[-1])]
    return at[1] - at[0]


def test_4_the_deadline_cuts_a_model_call_in_progress(ws: Path) -> None:
    """A --deadline 5 run once took 42 s: the model call had its own 300 s timeout."""
    with ScriptedServer([Turn(hang=True)]) as srv:
        t0 = time.monotonic()
        r = kodr(
            "run",
            "-p",
            "add sum",
            "--base-url",
            srv.base_url,
            "--model",
            "m",
            "--dry-run",
            "--json",
            "--deadline",
            "5",
            cwd=ws,
            timeout=60,
        )
        took = time.monotonic() - t0
    out = json.loads(r.out)
    assert (out["state"], out["reason"]) == ("timed_out", "run_deadline"), out
    assert run_span(ws, out["run_id"]) < 5 + 1.5  # from RunRequested: start-up on a busy machine is not the run
    assert took < 60
    failed = of_type(ws, out["run_id"], "ModelCallFailed")[0]
    assert "by the run deadline" in failed.message and failed.duration_ms < 5500


def test_4_the_deadline_cuts_a_test_run_in_progress(ws: Path) -> None:
    (ws / "package.json").write_text('{"name": "demo", "type": "module", "scripts": {"test": "node --test"}}\n')
    slow = (
        "import test from 'node:test';\ntest('slow', async () => { await new Promise(r => setTimeout(r, 60000)); });\n"
    )
    env = envelope({"slow.test.js": slow})
    with ScriptedServer([env]) as srv:
        t0 = time.monotonic()
        r = kodr(
            "run",
            "-p",
            "add a slow test",
            "--base-url",
            srv.base_url,
            "--model",
            "m",
            "--json",
            "--deadline",
            "8",
            "--test",
            "node --test",
            cwd=ws,
            timeout=90,
        )
        took = time.monotonic() - t0
    out = json.loads(r.out)
    assert (out["state"], out["reason"]) == ("timed_out", "run_deadline"), (out, r.err[-2000:])
    assert run_span(ws, out["run_id"]) < 8 + 2 and took < 90
    tests = of_type(ws, out["run_id"], "TestsFinished")[0].result
    assert (
        tests["deadline"]["cutByRunDeadline"] is True and tests["deadline"]["ownTimeoutS"] == 300
    )  # camelCase, as tests.json


# -- item 8: probe sends what a run sends, in a run's order ---------------------------------------------


def probe(ws: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    r = kodr("probe", *args, "--json", "--timeout", "20", cwd=ws, timeout=120)
    assert "Traceback" not in r.err, r.err[-3000:]
    return r, json.loads(r.out)


def test_8_probe_sends_the_requests_of_a_run_in_the_same_order(ws: Path) -> None:
    turns = [Turn(status=400, error="response_format json_schema is not supported by this server"), ENV] * 2
    with ScriptedServer(turns) as srv:
        run(ws, srv.base_url.replace("/v1", "/v1"))  # a run, model given
        ran = [(q["method"], q["path"]) for q in srv.all_requests]
        ran_bodies = [{k: v for k, v in q["body"].items() if k != "messages"} for q in srv.requests]
        srv.all_requests.clear()
        r, out = probe(ws, "--base-url", srv.base_url, "--model", "m")
        probed = [(q["method"], q["path"]) for q in srv.all_requests]
        probed_bodies = [{k: v for k, v in q["body"].items() if k != "messages"} for q in srv.requests]
    assert r.code == 0, r.err
    assert probed == ran, "the same requests in the same order"
    assert probed_bodies == ran_bodies, "the same parameters, degraded the same way"
    assert out["protocol"] is True and out["envelope"] == "valid"
    assert [(f["from"], f["to"]) for f in out["fallbacks"]] == [("json_schema", "json_object")]
    assert out["capabilities"]["response_format"] == "json_object"
    assert [e["status"] for e in out["exchanges"] if e["path"] == "/chat/completions"] == [400, 200]


def test_8_probe_with_tools_sends_a_tool_turn_like_a_run(ws: Path) -> None:
    with ScriptedServer([Turn(tool_calls=[{"name": "list_files", "arguments": {}}]), ENV]) as srv:
        r, out = probe(ws, "--base-url", srv.base_url, "--model", "m", "--tools")
        bodies = [q["body"] for q in srv.requests]
    assert r.code == 0 and out["local"] is True
    assert bodies[0]["tools"] and "response_format" not in bodies[0], "a local tool turn never sends the pair"
    assert out["capabilities"]["tools"] == "offered without response_format"


def test_8_probe_of_an_html_404_server_exits_non_zero(ws: Path) -> None:
    from tests.support.scripted_server import html_page

    with ScriptedServer([], routes={"": html_page(404)}) as srv:
        r, out = probe(ws, "--base-url", srv.base_url)
        human = kodr("probe", "--base-url", srv.base_url, "--timeout", "5", cwd=ws, timeout=60)
    assert r.code == 8, (r.code, r.out)
    assert out["reachable"] is True and out["protocol"] is False
    assert out["error"]["kind"] == "http" and "404" in out["error"]["message"]
    assert human.code == 8 and "NOT spoken" in human.out


def test_8_probe_of_an_unreachable_server_exits_7(ws: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r, out = probe(ws, "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "m")
    assert r.code == 7 and out["reachable"] is False and out["protocol"] is False
    assert not (ws / ".kodr").exists(), "probe touches no store"
