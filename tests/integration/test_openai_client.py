"""The model adapter against a scripted OpenAI-compatible server over real loopback HTTP."""

from __future__ import annotations

import json
import socket
import time

import pytest

from adapters.openai_client import OpenAIChatClient
from adapters.providers import ProviderConfig, resolve_provider
from kodr_core.envelope import InvalidProposal, proposal_json_schema
from kodr_core.errors import UsageError
from kodr_core.model_output import extract_envelope
from kodr_core.ports import ChatRequest, ModelError
from tests.support.scripted_server import ScriptedServer, Turn

KEY = "sk-test-very-secret-0123456789"
ENV = {
    "summary": "add sum",
    "files": [{"path": "src/sum.js", "content": "export const sum = (a, b) => a + b;\n"}],
    "notes": None,
}
ASK = ChatRequest(messages=[{"role": "user", "content": "write sum.js"}])
TOOLS = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object", "properties": {}}}}]


def client_for(srv: ScriptedServer, *, local: bool = True, key: str | None = KEY, **kw) -> OpenAIChatClient:
    opts = {"stall_timeout_s": 5.0, "deadline_s": 10.0, "max_retries": 2, "backoff_base_s": 0.01} | kw
    config = ProviderConfig("test", srv.base_url, api_key=key, model="test-model", local=local)
    return OpenAIChatClient(config, **opts)


def one_reply(*turns, request: ChatRequest = ASK, **kw):
    with ScriptedServer(turns) as srv:
        with client_for(srv, **kw) as client:
            return client.complete(request), srv.requests


# -- assembling replies ----------------------------------------------------------


def test_streamed_reply_is_assembled_with_usage():
    reply, requests = one_reply(ENV)
    assert extract_envelope(reply.content).files[0].path == "src/sum.js"
    assert reply.finish_reason == "stop"
    assert reply.usage and reply.usage["total_tokens"] > 0
    body = requests[0]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "test-model" and body["temperature"] == 0.0
    assert reply.request_body == body
    assert reply.raw["choices"][0]["message"]["content"] == reply.content
    assert set(reply.raw) >= {"id", "model", "choices", "usage"}


def test_stream_without_usage_is_fine():
    reply, _ = one_reply(Turn(content="hi", usage=None))
    assert reply.content == "hi" and reply.usage is None


def test_server_that_ignores_stream_returns_plain_json():
    reply, _ = one_reply(Turn(content="plain", reasoning="r", ignore_stream=True))
    assert (reply.content, reply.reasoning, reply.finish_reason) == ("plain", "r", "stop")
    assert reply.raw["object"] == "chat.completion"


def test_non_streaming_client():
    reply, requests = one_reply("whole", stream=False)
    assert reply.content == "whole"
    assert "stream" not in requests[0]["body"]


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content", "thinking"])
def test_reasoning_fields(field):
    reply, _ = one_reply(Turn(content="", reasoning=f"plan first. {json.dumps(ENV)}", reasoning_field=field))
    assert reply.content == ""
    assert reply.reasoning.startswith("plan first.")
    assert extract_envelope(reply.content, reply.reasoning).summary == "add sum"


def test_think_block_in_content():
    reply, _ = one_reply(f"<think>let me think {{ about it</think>\n```json\n{json.dumps(ENV)}\n```")
    assert extract_envelope(reply.content).summary == "add sum"


def test_incremental_tool_call_deltas():
    calls = [{"name": "read_file", "arguments": {"path": "a.js"}}, {"name": "list_files", "arguments": {}}]
    reply, _ = one_reply(Turn(tool_calls=calls))
    assert reply.finish_reason == "tool_calls"
    got = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in reply.tool_calls]
    assert got == [("call_0", "read_file", {"path": "a.js"}), ("call_1", "list_files", {})]


def _chunk(delta, finish=None):
    return {"id": "x", "model": "qwen", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _call(cid, name, args, index=None):
    call = {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
    return call if index is None else {"index": index, **call}


@pytest.mark.parametrize(
    "chunks",
    [
        # Ollama: whole calls in one chunk, with indexes
        [
            _chunk(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [_call("a", "read_file", '{"path":"a.js"}', 0), _call("b", "list_files", "{}", 1)],
                }
            )
        ],
        # whole calls in separate chunks that all claim index 0
        [
            _chunk({"tool_calls": [_call("a", "read_file", '{"path":"a.js"}', 0)]}),
            _chunk({"tool_calls": [_call("b", "list_files", "{}", 0)]}),
        ],
        # whole calls without an index, arguments as an object
        [
            _chunk({"tool_calls": [_call("a", "read_file", {"path": "a.js"})]}),
            _chunk({"tool_calls": [_call("b", "list_files", {})]}),
        ],
    ],
)
def test_whole_tool_calls_in_one_chunk(chunks):
    tail = [_chunk({"content": "", "tool_calls": []}), _chunk({"role": "assistant", "content": ""}, "tool_calls")]
    reply, _ = one_reply(Turn(raw_chunks=chunks + tail))
    got = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in reply.tool_calls]
    assert got == [("a", "read_file", {"path": "a.js"}), ("b", "list_files", {})]
    assert reply.finish_reason == "tool_calls" and reply.usage is None


def test_empty_tool_call_arrays_and_null_are_ignored():
    chunks = [
        _chunk({"content": "he", "tool_calls": []}),
        _chunk({"content": "llo", "tool_calls": None}),
        _chunk({}, "stop"),
    ]
    reply, _ = one_reply(Turn(raw_chunks=chunks))
    assert reply.content == "hello" and reply.tool_calls == []
    assert "tool_calls" not in reply.raw["choices"][0]["message"]


def test_stream_without_done_marker():
    reply, _ = one_reply(Turn(raw_chunks=[_chunk({"content": "ok"}, "stop")], done=False))
    assert reply.content == "ok"


def test_cut_off_reply_is_reported_by_the_parser():
    reply, _ = one_reply(Turn(content=json.dumps(ENV)[:40], finish_reason="length"))
    assert reply.finish_reason == "length"
    with pytest.raises(InvalidProposal, match="cut off at the token limit"):
        extract_envelope(reply.content, reply.reasoning, finish_reason=reply.finish_reason)


def test_error_inside_the_stream_is_retried_then_reported():
    crashed = Turn(raw_chunks=[_chunk({"content": "a"}), {"error": {"message": "model crashed"}}])
    with pytest.raises(ModelError) as info:
        one_reply(crashed, crashed, crashed)
    assert info.value.kind == "http" and "model crashed" in info.value.message
    assert [r["attempt"] for r in info.value.retries] == [1, 2, 3]


def test_malformed_stream_event_is_retried():
    reply, requests = one_reply(Turn(raw_chunks=["{not json"]), "ok")
    assert reply.content == "ok" and len(requests) == 2
    assert "not JSON" in reply.retries[0]["error"]


# -- issue 11 item 5: only a finished stream is an answer ------------------------------


def test_a_complete_looking_stream_without_finish_reason_is_retried_not_trusted():
    """llmock's truncated_stream_accepted: a valid envelope, then the connection ends."""
    cut = Turn(raw_chunks=[_chunk({"content": json.dumps(ENV)}, None)])
    reply, requests = one_reply(cut, Turn(content=json.dumps(ENV)))
    assert len(requests) == 2 and reply.finish_reason == "stop"
    assert "before a finish_reason" in reply.retries[0]["error"]


def test_a_stream_cut_mid_json_is_a_transport_failure_not_the_models_fault():
    cut = Turn(raw_chunks=[_chunk({"content": json.dumps(ENV)[:30]}, None)], done=False)
    with pytest.raises(ModelError) as info:
        one_reply(cut, cut, cut)
    assert info.value.kind == "unavailable" and "cut off" in info.value.message
    assert len(info.value.retries) == 3


def test_a_cut_tool_call_is_never_returned():
    half = Turn(raw_chunks=[_chunk({"tool_calls": [_call("a", "read_file", '{"path": "src/', 0)]}, None)])
    reply, requests = one_reply(half, Turn(tool_calls=[{"name": "read_file", "arguments": {"path": "src/a.js"}}]))
    assert [json.loads(c["function"]["arguments"]) for c in reply.tool_calls] == [{"path": "src/a.js"}]
    assert len(requests) == 2


def test_hostile_fields_are_ignored_and_noted_not_raised():
    chunks = [
        _chunk({"content": [{"text": 5}, {"text": "ok"}]}, None),
        _chunk({"tool_calls": [{"index": [0], "function": {"name": "list_files", "arguments": {"a": 1}}}]}, None),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": 7}]},
        _chunk({"content": "\ud800"}, "stop"),
    ]
    reply, _ = one_reply(Turn(raw_chunks=[json.dumps(c).replace("\\\\ud800", "\\ud800") for c in chunks]))
    assert reply.content == "ok\ufffd" and reply.finish_reason == "stop"
    assert [c["function"]["name"] for c in reply.tool_calls] == ["list_files"]
    problems = reply.raw["protocol_problems"]
    assert any("index is not an integer" in p for p in problems)
    assert any("finish_reason is not a string: 7" in p for p in problems)


# -- deadlines and stalls -----------------------------------------------------------


def test_server_that_never_sends_a_byte_times_out_at_the_deadline():
    with ScriptedServer([Turn(hang=True)]) as srv, client_for(srv, stall_timeout_s=30) as client:
        started = time.monotonic()
        with pytest.raises(ModelError) as info:
            client.complete(ASK, deadline_s=1.5)
        elapsed = time.monotonic() - started
    assert info.value.kind == "timeout" and "deadline" in info.value.message
    assert 1.4 <= elapsed < 1.5 + 1.0, elapsed
    assert info.value.duration_ms >= 1400


def test_stream_that_goes_silent_is_cut_at_the_deadline_not_a_stall_window_later():
    # A fixed httpx read timeout would wait the full 30s stall window here.
    turn = Turn(content="a" * 40, slow_chunks=(4, 0.2), hang_after_chunks=3)
    with ScriptedServer([turn]) as srv, client_for(srv, stall_timeout_s=30) as client:
        started = time.monotonic()
        with pytest.raises(ModelError, match="deadline") as info:
            client.complete(ASK, deadline_s=1.5)
        elapsed = time.monotonic() - started
    assert info.value.kind == "timeout"
    assert elapsed < 1.5 + 1.0, elapsed


def test_stall_timeout_fires_between_chunks_and_is_retried_like_a_disconnect():
    turn = Turn(content="abc", hang_after_chunks=2)
    with ScriptedServer([turn, turn, "ok"]) as srv, client_for(srv, stall_timeout_s=0.5, max_retries=1) as client:
        started = time.monotonic()
        with pytest.raises(ModelError, match="stall") as info:
            client.complete(ASK)
        elapsed = time.monotonic() - started
        assert len(srv.requests) == 2
    assert info.value.kind == "timeout" and [r["attempt"] for r in info.value.retries] == [1, 2]
    assert 0.9 <= elapsed < 2.5, elapsed


def test_slow_but_steady_stream_outlives_the_stall_timeout():
    turn = Turn(content="x" * 80, slow_chunks=(8, 0.25))  # ~2.75s of events, 0.25s apart
    with ScriptedServer([turn]) as srv, client_for(srv, stall_timeout_s=0.75) as client:
        started = time.monotonic()
        reply = client.complete(ASK, deadline_s=8)
        elapsed = time.monotonic() - started
    assert reply.content == "x" * 80
    assert elapsed > 0.75 * 2, elapsed


# -- retries -----------------------------------------------------------------------


def test_429_then_success_honours_retry_after_and_records_it():
    turns = [Turn(status=429, error="slow down", headers={"Retry-After": "1"}), "ok"]
    with ScriptedServer(turns) as srv, client_for(srv) as client:
        started = time.monotonic()
        reply = client.complete(ASK)
        elapsed = time.monotonic() - started
    assert reply.content == "ok"
    assert [{k: v for k, v in r.items() if k != "duration_ms"} for r in reply.retries] == [
        {"attempt": 1, "status": 429, "message": "slow down", "wait_ms": 1000}
    ]
    assert reply.retries[0]["duration_ms"] >= 0
    assert elapsed >= 1.0


def test_retry_after_is_capped():
    turns = [Turn(status=503, headers={"Retry-After": "3600"}), "ok"]
    with ScriptedServer(turns) as srv, client_for(srv, retry_after_cap_s=0.2) as client:
        reply = client.complete(ASK)
    assert reply.retries[0]["wait_ms"] == 200 and reply.content == "ok"


def test_500s_exhaust_the_retries():
    turns = [Turn(status=500, error=f"boom {i}") for i in range(3)] + ["never reached"]
    with ScriptedServer(turns) as srv, client_for(srv, max_retries=2) as client:
        with pytest.raises(ModelError) as info:
            client.complete(ASK)
        assert len(srv.requests) == 3
    err = info.value
    assert err.kind == "http" and "HTTP 500: boom 2" in err.message and "3 attempts" in err.message
    # every attempt is recorded, the last one too (it has no wait: nothing came after it)
    assert [(r["attempt"], r["status"]) for r in err.retries] == [(1, 500), (2, 500), (3, 500)]
    assert all(r["wait_ms"] >= 0 for r in err.retries[:2]) and "wait_ms" not in err.retries[2]


def test_retries_stop_when_the_wait_would_pass_the_deadline():
    turns = [Turn(status=503, headers={"Retry-After": "30"}), "never reached"]
    with ScriptedServer(turns) as srv, client_for(srv) as client:
        started = time.monotonic()
        with pytest.raises(ModelError, match="no time left") as info:
            client.complete(ASK, deadline_s=2)
    assert time.monotonic() - started < 1.0
    assert info.value.kind == "http"


def test_non_retryable_4xx_carries_the_server_message():
    with ScriptedServer([Turn(status=400, error="response_format is not supported"), "x"]) as srv:
        with client_for(srv) as client, pytest.raises(ModelError) as info:
            client.complete(ASK)
        assert len(srv.requests) == 1
    assert info.value.kind == "http"
    assert info.value.message == "HTTP 400: response_format is not supported"


def test_connection_refused_is_retried_then_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ProviderConfig("test", f"http://127.0.0.1:{port}/v1", api_key=KEY, model="m")
    with OpenAIChatClient(config, max_retries=2, backoff_base_s=0.01) as client, pytest.raises(ModelError) as info:
        client.complete(ASK)
    assert info.value.kind == "unavailable"
    assert [r["attempt"] for r in info.value.retries] == [1, 2, 3]
    assert "cannot connect" in info.value.retries[0]["error"]


# -- secrets, request body ------------------------------------------------------------


def test_api_key_goes_in_the_header_and_nowhere_else(capsys):
    turns = [
        Turn(status=429, error=f"bad key {KEY}", headers={"Retry-After": "0"}),
        f"echo {KEY}",
        Turn(status=401, error=f"invalid key {KEY}"),
    ]
    with ScriptedServer(turns) as srv:
        config = resolve_provider("openai-compatible", srv.base_url, "m", {"KODR_API_KEY": KEY})
        with OpenAIChatClient(config, backoff_base_s=0.01) as client:
            reply = client.complete(ChatRequest(messages=[{"role": "user", "content": f"my key is {KEY}"}]))
            with pytest.raises(ModelError) as info:
                client.complete(ASK)
            assert KEY not in repr(client)
        assert srv.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    dumped = json.dumps([reply.request_body, reply.raw, reply.retries, reply.content, reply.tool_calls])
    assert KEY not in dumped and "Bearer" not in dumped
    assert KEY not in str(info.value) and KEY not in info.value.message
    assert KEY not in repr(config) and KEY not in str(config) and KEY not in repr(reply)
    assert KEY not in capsys.readouterr().out


def test_no_authorization_header_without_a_key():
    with ScriptedServer(["ok"]) as srv, client_for(srv, key=None) as client:
        client.complete(ASK)
        assert "Authorization" not in srv.requests[0]["headers"]


@pytest.mark.parametrize(
    "local, tools, expect_format",
    [(True, None, True), (True, TOOLS, False), (False, TOOLS, True), (False, None, True)],
)
def test_response_format_on_the_wire(local, tools, expect_format):
    request = ChatRequest(messages=ASK.messages, response_schema=proposal_json_schema(), tools=tools)
    reply, requests = one_reply("ok", request=request, local=local)
    body = requests[0]["body"]
    assert ("response_format" in body) is expect_format
    assert ("tools" in body) is bool(tools)
    if expect_format:
        assert body["response_format"]["json_schema"]["strict"] is True
    assert reply.request_body == body


# -- discovery -------------------------------------------------------------------------


def test_model_defaults_to_the_servers_first_model():
    with ScriptedServer(["ok"], models=["qwen2.5-coder", "other"]) as srv:
        config = resolve_provider(None, srv.base_url, None, {})
        with OpenAIChatClient(config, max_retries=0) as client:
            assert client.list_models() == ["qwen2.5-coder", "other"]
            reply = client.complete(ASK)
            with pytest.raises(ModelError, match="script exhausted at request #2"):
                client.complete(ASK)
        assert [(r["method"], r["path"]) for r in srv.all_requests[:2]] == [("GET", "/v1/models")] * 2
        assert [r["method"] for r in srv.requests] == ["POST", "POST"]
        assert len(srv.wait_for_requests(4, timeout=1, chat_only=False)) == 4
    assert reply.request_body["model"] == "qwen2.5-coder"


def test_probe_sends_a_runs_request_and_reports_fallbacks():
    env = json.dumps(ENV)
    turns = [Turn(status=400, error="response_format json_schema is not supported"), env]
    with ScriptedServer(turns) as srv:
        config = ProviderConfig("test", srv.base_url, model=None, local=True)
        with OpenAIChatClient(config, stall_timeout_s=5.0, max_retries=0) as client:
            result = client.probe(timeout_s=5)
        bodies = [r["body"] for r in srv.requests]
    assert result["reachable"] is True and result["protocol"] is True and result["models"] == ["scripted-model"]
    assert [b["response_format"]["type"] for b in bodies] == ["json_schema", "json_object"]
    assert [(f["from"], f["to"]) for f in result["fallbacks"]] == [("json_schema", "json_object")]
    assert result["envelope"] == "valid" and result["model"] == "scripted-model"
    assert [e["method"] + " " + e["path"] for e in result["exchanges"]][:1] == ["GET /models"]


def test_probe_of_nothing():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAIChatClient(ProviderConfig("x", f"http://127.0.0.1:{port}/v1", model="m"), max_retries=0)
    result = client.probe(timeout_s=2)
    assert result["reachable"] is False and result["protocol"] is False
    assert result["error"]["kind"] == "unavailable"


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("ollama", True),
        ("host.docker.internal", True),
        ("gpu.internal", True),
        ("box.lan", True),
        ("10.1.2.3", True),
        ("[fd00::1]", True),
        ("169.254.1.1", True),
        ("api.example.com", False),
        ("8.8.8.8", False),
    ],
)
def test_locality_of_hosts(host, local):
    assert resolve_provider("openai-compatible", f"http://{host}:8000/v1", "m", {}).local is local
    assert resolve_provider("openai-compatible", f"http://{host}:8000/v1", "m", {}, local=not local).local is not local


# -- provider resolution (pure, but it belongs with the client it configures) -----------


@pytest.mark.parametrize(
    "name, url, local",
    [
        ("lmstudio", "http://localhost:1234/v1", True),
        ("ollama", "http://localhost:11434/v1", True),
        ("llamacpp", "http://localhost:8080/v1", True),
        ("vllm", "http://localhost:8000/v1", True),
    ],
)
def test_local_presets(name, url, local):
    config = resolve_provider(name, None, "m", {})
    assert (config.base_url, config.local, config.api_key) == (url, local, None)


def test_remote_presets_need_a_key_from_the_environment():
    with pytest.raises(UsageError, match="OPENAI_API_KEY or KODR_API_KEY"):
        resolve_provider("openai", None, "gpt", {})
    config = resolve_provider("openai", None, "gpt", {"OPENAI_API_KEY": "k1"})
    assert (config.base_url, config.local, config.api_key) == ("https://api.openai.com/v1", False, "k1")
    both = {"OPENROUTER_API_KEY": "k2", "KODR_API_KEY": "k3"}
    assert resolve_provider("openrouter", None, "m", both).api_key == "k3"  # KODR_API_KEY wins
    assert resolve_provider("openrouter", None, "m", both).base_url == "https://openrouter.ai/api/v1"


def test_openai_compatible_needs_a_base_url_and_guesses_local_from_the_host():
    with pytest.raises(UsageError, match="needs --base-url"):
        resolve_provider("openai-compatible", None, "m", {})
    assert resolve_provider("openai-compatible", "http://10.0.0.5:8000/v1/", "m", {}).local is True
    remote = resolve_provider("openai-compatible", "https://llm.example.com/v1", "m", {"KODR_API_KEY": "k"})
    assert (remote.local, remote.base_url, remote.api_key) == (False, "https://llm.example.com/v1", "k")
    assert resolve_provider(None, "https://llm.example.com/v1", "m", {}).name == "openai-compatible"


def test_provider_refusals_and_defaults():
    with pytest.raises(UsageError, match="unknown provider"):
        resolve_provider("gpt4all", None, None, {})
    with pytest.raises(UsageError, match="must not carry credentials"):
        resolve_provider("openai-compatible", "http://user:pw@host/v1", None, {})
    with pytest.raises(UsageError, match="http"):
        resolve_provider("openai-compatible", "ftp://host/v1", None, {})
    assert resolve_provider("ollama", None, None, {"KODR_MODEL": "qwen3"}).model == "qwen3"
    config = resolve_provider("ollama", None, None, {"KODR_API_KEY": KEY})
    assert KEY not in repr(config) and "'***'" in repr(config) and config.describe()["api_key"] == "set"
