"""The tool loop and ``kodr probe`` against a scripted server over real loopback HTTP."""

from __future__ import annotations

import json
import time

import pytest

from adapters.openai_client import OpenAIChatClient
from adapters.providers import ProviderConfig
from adapters.tool_loop import FINAL_PROMPT, PROSE_PROMPT, ToolLoopModel
from adapters.workspace import DiskWorkspace
from kodr_core.envelope import proposal_json_schema
from kodr_core.model_output import envelope_from_reply
from kodr_core.ports import ChatRequest, ModelError
from tests.support.scripted_server import ScriptedServer, Turn

ENV = {
    "summary": "add mul",
    "files": [{"path": "src/mul.js", "content": "export const mul = (a, b) => a * b;\n"}],
    "notes": None,
}
SUM_JS = "export function sum(a, b) {\n  return a + b;\n}\n"
APP_PY = "class App:\n    def run(self):\n        return 1\n\n\ndef main():\n    App().run()\n"


def ask() -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "system", "content": "You write code."}, {"role": "user", "content": "add mul.js"}],
        response_schema=proposal_json_schema(),
    )


class CountingWorkspace(DiskWorkspace):
    """A real workspace on disk that counts its reads."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def read(self, path: str) -> bytes | None:
        self.reads.append(path)
        return super().read(path)


@pytest.fixture
def workspace(tmp_path) -> CountingWorkspace:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "sum.js").write_text(SUM_JS)
    (root / "app.py").write_text(APP_PY)
    (root / "package.json").write_text('{"name": "demo", "type": "module"}\n')
    (tmp_path / "secret.txt").write_text("TOP SECRET\n")
    return CountingWorkspace(root)


def call(name: str, **args) -> Turn:
    return Turn(tool_calls=[{"name": name, "arguments": args}])


def run_loop(workspace, *turns, local: bool = True, max_steps: int = 6, deadline_s: float | None = 20.0):
    with ScriptedServer(turns) as srv:
        config = ProviderConfig("test", srv.base_url, model="test-model", local=local)
        with OpenAIChatClient(config, stall_timeout_s=5.0, deadline_s=20.0, max_retries=0) as client:
            loop = ToolLoopModel(client, workspace, max_steps=max_steps, local=local)
            reply = loop.complete(ask(), deadline_s=deadline_s)
        return reply, [r["body"] for r in srv.requests]


def tool_messages(body) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


# -- the loop --------------------------------------------------------------------------


def test_list_read_inspect_then_envelope(workspace):
    reply, bodies = run_loop(
        workspace,
        call("list_files"),
        call("read_file", path="src/sum.js"),
        call("inspect_symbols", path="app.py"),
        ENV,
    )
    assert envelope_from_reply(reply).files[0].path == "src/mul.js"
    trace = reply.raw["tool_trace"]
    assert [(t["step"], t["name"], t["cached"]) for t in trace] == [
        (1, "list_files", False),
        (2, "read_file", False),
        (3, "inspect_symbols", False),
    ]
    assert trace[1]["arguments"] == '{"path": "src/sum.js"}' and all(t["result_bytes"] > 0 for t in trace)
    assert reply.raw["tool_steps"] == 4
    assert len(bodies) == 4
    assert "src/sum.js" in tool_messages(bodies[1])[0] and "app.py" in tool_messages(bodies[1])[0]
    assert SUM_JS.strip() in tool_messages(bodies[2])[-1]
    symbols = json.loads(tool_messages(bodies[3])[-1])["symbols"]
    assert {"name": "App.run", "kind": "method", "start_line": 2, "end_line": 3} in symbols
    # the transcript grows: assistant tool_calls then tool results, ids matching
    last = bodies[3]["messages"]
    assistant = [m for m in last if m["role"] == "assistant"]
    assert len(assistant) == 3 and all(m["tool_calls"] for m in assistant)
    assert [m["tool_call_id"] for m in last if m["role"] == "tool"] == ["call_0"] * 3
    assert "list_files, read_file and inspect_symbols" in last[0]["content"]  # the hint joins the system prompt
    # the engine records the whole transcript: the final request body is the last one sent
    assert reply.request_body["messages"] == last
    assert reply.usage["prompt_tokens"] == 4 * 12
    # three tool-call turns (no content: 1 completion token each) and the envelope turn
    assert reply.usage["total_tokens"] == 3 * (12 + 1) + 12 + len(json.dumps(ENV)) // 4


def test_early_envelope_returns_at_once(workspace):
    reply, bodies = run_loop(workspace, ENV)
    assert len(bodies) == 1 and reply.raw["tool_trace"] == [] and reply.raw["tool_steps"] == 1
    assert envelope_from_reply(reply).summary == "add mul"
    assert workspace.reads == []


def test_repeated_identical_call_is_answered_from_the_cache(workspace):
    reply, bodies = run_loop(
        workspace,
        call("read_file", path="src/sum.js"),
        Turn(tool_calls=[{"name": "read_file", "arguments": '{ "path" : "src/sum.js" }'}]),
        ENV,
    )
    assert [t["cached"] for t in reply.raw["tool_trace"]] == [False, True]
    assert workspace.reads == ["src/sum.js"]
    second = tool_messages(bodies[2])[-1]
    assert second.startswith("[cached: you already made this exact call at step 1") and SUM_JS.strip() in second


def test_step_budget_forces_a_final_request_without_tools(workspace):
    reply, bodies = run_loop(workspace, call("list_files"), call("list_files", glob="*.js"), ENV, max_steps=3)
    assert envelope_from_reply(reply).summary == "add mul"
    assert len(bodies) == 3 and reply.raw["tool_steps"] == 3
    for body in bodies[:2]:
        assert body["tools"] and "response_format" not in body  # local tool turns
    final = bodies[-1]
    assert "tools" not in final
    assert final["response_format"]["type"] == "json_schema"
    assert final["response_format"]["json_schema"]["strict"] is True
    # flattened: no tool protocol left in a request that offers no tools
    assert all(m["role"] in ("system", "user", "assistant") and "tool_calls" not in m for m in final["messages"])
    assert FINAL_PROMPT in final["messages"][-1]["content"]
    assert "[result of list_files]" in final["messages"][-1]["content"]
    roles = [m["role"] for m in final["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]


def test_tool_calls_written_as_text(workspace):
    qwen_xml = (
        "<tool_call>\n<function=read_file>\n<parameter=path>\napp.py\n</parameter>\n"
        "<parameter=start_line>\n6\n</parameter>\n</function>\n</tool_call>"
    )
    reply, bodies = run_loop(
        workspace,
        Turn(
            content='<think>look first</think><tool_call>{"name": "read_file", "arguments": {"path": "src/sum.js"}}</tool_call>'
        ),
        Turn(content=qwen_xml),
        ENV,
    )
    assert envelope_from_reply(reply).summary == "add mul"
    trace = reply.raw["tool_trace"]
    assert [(t["name"], t["source"]) for t in trace] == [("read_file", "text"), ("read_file", "text")]
    results = bodies[1]["messages"][-1]
    assert results["role"] == "user" and SUM_JS.strip() in results["content"]
    echoed = bodies[1]["messages"][-2]
    assert echoed["role"] == "assistant" and "tool_calls" not in echoed
    assert echoed["content"].startswith("<tool_call>")  # the thinking is dropped from the history
    assert "app.py (lines 6-7 of 7)" in bodies[2]["messages"][-1]["content"]


def test_path_escape_gets_an_error_result_not_an_exception(workspace):
    reply, bodies = run_loop(
        workspace,
        Turn(
            tool_calls=[
                {"name": "read_file", "arguments": {"path": "../secret.txt"}},
                {"name": "read_file", "arguments": {"path": "/etc/passwd"}, "id": "call_1"},
                {"name": "read_file", "arguments": {"path": "missing.js"}, "id": "call_2"},
                {"name": "write_file", "arguments": {"path": "x.js"}, "id": "call_3"},
            ]
        ),
        ENV,
    )
    assert envelope_from_reply(reply).summary == "add mul"
    results = tool_messages(bodies[1])
    assert len(results) == 4 and all(r.startswith("error:") for r in results)
    assert "escapes the workspace" in results[0] and "absolute" in results[1]
    assert "no file 'missing.js'" in results[2] and "unknown tool 'write_file'" in results[3]
    assert not any("TOP SECRET" in r for r in results)
    assert workspace.reads == []


@pytest.mark.parametrize("local", [True, False], ids=["local", "remote"])
def test_response_format_on_tool_turns_only_for_remote(workspace, local):
    _, bodies = run_loop(workspace, call("list_files"), ENV, local=local)
    for body in bodies:
        assert body["tools"]
        assert ("response_format" in body) is (not local)


def test_remote_server_refusing_tools_with_response_format_is_asked_again_without_it(workspace):
    refused = Turn(status=400, error="'response_format' is not supported together with 'tools'")
    reply, bodies = run_loop(workspace, refused, call("list_files"), ENV, local=False)
    assert envelope_from_reply(reply).summary == "add mul"
    assert "response_format" in bodies[0]
    assert bodies[1]["tools"] and "response_format" not in bodies[1]
    assert bodies[2]["tools"] and "response_format" not in bodies[2]  # remembered
    assert "refused tools with response_format" in reply.raw["tool_notes"][0]


def test_server_refusing_tools_gets_a_plain_request(workspace):
    reply, bodies = run_loop(workspace, Turn(status=400, error="tools are not supported"), ENV, local=True)
    assert envelope_from_reply(reply).summary == "add mul"
    assert "tools" not in bodies[1] and bodies[1]["response_format"]["type"] == "json_schema"
    assert bodies[1]["messages"] == ask().messages


def test_a_later_overflow_is_raised_as_an_overflow_not_taken_for_a_refusal(workspace):
    with pytest.raises(ModelError) as info:
        run_loop(workspace, call("list_files"), Turn(status=400, error="context length exceeded"), ENV)
    assert info.value.kind == "context_overflow" and "context length" in info.value.message


def test_an_overflow_on_the_first_tool_step_never_turns_tools_off(workspace):
    """llama.cpp's exceed_context_size_error was once read as "server refused tools"."""
    overflow = Turn(status=400, error="the request exceeds the available context size, try increasing it")
    with ScriptedServer([overflow, call("list_files"), ENV]) as srv:
        config = ProviderConfig("test", srv.base_url, model="test-model", local=True)
        with OpenAIChatClient(config, stall_timeout_s=5.0, max_retries=0) as client:
            loop = ToolLoopModel(client, workspace, local=True)
            with pytest.raises(ModelError) as info:
                loop.complete(ask(), deadline_s=20)
            assert info.value.kind == "context_overflow"
            assert not loop.tools_refused and client.learned == []
            loop.complete(ask(), deadline_s=20)
            assert srv.requests[1]["body"]["tools"]


# -- issue 11 item 1: prose after tool results -------------------------------------------


def test_prose_after_tool_results_gets_one_more_turn_without_tools_and_with_the_schema(workspace):
    """llmock (and many small models) answer in prose after a tool result."""
    prose = "I have looked at the files. I will now add mul.js next to sum.js."
    reply, bodies = run_loop(workspace, call("list_files"), prose, ENV, local=True)
    assert envelope_from_reply(reply).summary == "add mul"
    assert len(bodies) == 3
    assert bodies[0]["tools"] and "response_format" not in bodies[0]  # a local tool turn
    final = bodies[2]
    assert "tools" not in final and final["response_format"]["type"] == "json_schema"
    texts = [m["content"] for m in final["messages"]]
    assert any("[result of list_files]" in t for t in texts), "the tool transcript is kept"
    assert any(prose in t for t in texts) and texts[-1].endswith(PROSE_PROMPT)
    assert [t["name"] for t in reply.raw["tool_trace"]] == ["list_files"]
    assert reply.raw["tool_steps"] == 3 and "prose" in reply.raw["tool_notes"][0]


def test_prose_twice_is_the_models_answer_and_the_run_decides(workspace):
    reply, bodies = run_loop(workspace, "just prose", "still prose", "never asked", local=True)
    assert len(bodies) == 2 and reply.content == "still prose"  # asked once more, not forever


# -- issue 11 item 3: refusals only from a 400/422 naming the parameter --------------------


@pytest.mark.parametrize(
    "transient",
    [
        Turn(status=503, error="model is loading"),
        Turn(raw_chunks=[]),  # one empty 200 stream
        Turn(raw_chunks=["{not json"]),  # a malformed chunk
        Turn(raw_chunks=[{"choices": [{"index": 0, "delta": {"content": '{"summ'}, "finish_reason": None}]}]),
    ],
)
def test_a_transient_error_on_the_first_tool_turn_never_turns_tools_off(workspace, transient):
    with ScriptedServer([transient, call("list_files"), ENV]) as srv:
        config = ProviderConfig("test", srv.base_url, model="test-model", local=True)
        with OpenAIChatClient(config, stall_timeout_s=5.0, max_retries=0) as client:
            loop = ToolLoopModel(client, workspace, local=True)
            with pytest.raises(ModelError) as info:
                loop.complete(ask(), deadline_s=20)
            assert not loop.tools_refused and loop.format_with_tools is False
            assert client.learned == [] and client.format_mode == "json_schema"
            assert len(info.value.retries) == 1 and info.value.retries[0]["duration_ms"] >= 0
            reply = loop.complete(ask(), deadline_s=20)  # the next call still offers tools
            bodies = [r["body"] for r in srv.requests]
    assert envelope_from_reply(reply).summary == "add mul"
    assert bodies[1]["tools"] and bodies[2]["tools"]


def test_a_503_retried_then_refused_records_true_attempts_and_time(workspace):
    """The record once showed retries=0 and a few ms after 7 s of retries."""
    turns = [Turn(status=503, error="busy", headers={"Retry-After": "0.4"})] * 2 + [
        Turn(status=400, error="tools are not supported by this model"),
        ENV,
    ]
    with ScriptedServer(turns) as srv:
        config = ProviderConfig("test", srv.base_url, model="test-model", local=True)
        with OpenAIChatClient(config, stall_timeout_s=5.0, max_retries=3) as client:
            reply = ToolLoopModel(client, workspace, local=True).complete(ask(), deadline_s=20)
    assert envelope_from_reply(reply).summary == "add mul"
    assert [r.get("status") or r.get("refused") for r in reply.retries] == [503, 503, "tools"]
    assert reply.duration_ms >= 800 and sum(r["wait_ms"] for r in reply.retries[:2]) == 800


def test_the_whole_loop_keeps_the_callers_deadline(workspace):
    started = time.monotonic()
    with pytest.raises(ModelError) as info:
        run_loop(workspace, call("list_files"), Turn(hang=True), deadline_s=1.5)
    elapsed = time.monotonic() - started
    assert info.value.kind == "timeout" and elapsed < 4.0
    assert info.value.duration_ms >= 1000


def test_max_steps_one_is_a_plain_call(workspace):
    reply, bodies = run_loop(workspace, ENV, max_steps=1)
    assert "tools" not in bodies[0] and bodies[0]["messages"] == ask().messages
    assert reply.raw["tool_trace"] == []
