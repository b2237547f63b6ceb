"""Property: whatever bytes a model server sends, a run ends in a recorded terminal state.

Issue 10 item 4. Hypothesis generates replies of three kinds: raw bytes as the
whole HTTP body, SSE chunk sequences whose every field may have the wrong type
(nested values, lone surrogates, numbers where strings belong), and envelopes
whose paths and contents are hostile (surrogates, long emoji names, ``..``,
deep nesting), wrapped in think blocks and fences. Each reply is served over
real loopback HTTP to the real client, driven through the real engine with a
real SQLite store and workspace, with and without the tool loop. Nothing may
raise, every run must be terminal, its events must load back, and nothing may
be written outside the workspace.

``KODR_PROPERTY_EXAMPLES`` sets the examples per strategy (default 500: 1,500 runs, about 0.1 s
each on an idle machine; each test may take 15 minutes on a loaded one).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.bootstrap import open_app
from adapters.openai_client import OpenAIChatClient
from adapters.providers import ProviderConfig
from adapters.tool_loop import ToolLoopModel
from adapters.toolchain import ProcessToolchain
from kodr_core.engine import Engine
from kodr_core.options import RunOptions
from kodr_core.states import TERMINAL
from tests.support.scripted_server import ScriptedServer, Turn

EXAMPLES = int(os.environ.get("KODR_PROPERTY_EXAMPLES", "500"))
pytestmark = pytest.mark.timeout(900)
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

# -- strategies -----------------------------------------------------------------------

any_text = st.text(st.characters(blacklist_categories=()), max_size=40)  # lone surrogates included
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), any_text)
hostile = st.recursive(
    scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(any_text, c, max_size=3), max_leaves=12
)
deep = st.integers(min_value=1, max_value=3000).map(lambda n: json.loads("[" * min(n, 900) + "]" * min(n, 900)))
wild = st.one_of(hostile, deep)

tool_call = st.fixed_dictionaries(
    {},
    optional={
        "index": st.one_of(st.integers(0, 3), wild),
        "id": st.one_of(st.sampled_from(["a", "b"]), wild),
        "type": st.just("function"),
        "function": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": st.one_of(st.sampled_from(["list_files", "read_file", "inspect_symbols", "submit"]), wild),
                    "arguments": st.one_of(
                        st.sampled_from(
                            [
                                '{"path": "a.js"}',
                                "{}",
                                '{"path": "../../etc/passwd"}',
                                '{"path": "a.js", "limit": "99999999999999999999"}',
                                '{"pa',
                            ]
                        ),
                        wild,
                    ),
                },
            ),
            wild,
        ),
    },
)
delta = st.fixed_dictionaries(
    {},
    optional={
        "role": st.just("assistant"),
        "content": st.one_of(any_text, st.lists(st.fixed_dictionaries({"text": st.one_of(any_text, wild)})), wild),
        "tool_calls": st.one_of(st.lists(tool_call, max_size=3), wild),
        "reasoning_content": st.one_of(any_text, wild),
    },
)
choice = st.fixed_dictionaries(
    {"index": st.one_of(st.just(0), wild)},
    optional={
        "delta": st.one_of(delta, wild),
        "message": delta,
        "finish_reason": st.one_of(st.sampled_from([None, "stop", "length", "tool_calls"]), wild),
    },
)
event = st.one_of(
    st.fixed_dictionaries(
        {"choices": st.one_of(st.lists(choice, max_size=2), wild)},
        optional={"usage": wild, "error": wild, "id": wild, "model": wild},
    ),
    wild,
)
payload = st.one_of(
    event.map(lambda e: json.dumps(e, ensure_ascii=True)),
    any_text.map(lambda t: t.encode("utf-8", "surrogatepass").decode("utf-8", "replace")),
    st.just("[DONE]"),
)
sse = st.tuples(st.lists(payload, max_size=6), st.booleans()).map(lambda x: Turn(raw_chunks=x[0], done=x[1]))

hostile_path = st.one_of(
    any_text,
    st.integers(1, 120).map(lambda n: "\U0001f600" * n + ".js"),
    st.sampled_from(
        [
            "../x.js",
            "/etc/x",
            ".git/config",
            "a\\b.js",
            "C:/x",
            "a/./b.js",
            "",
            "a\x00.js",
            "ok.js",
            ".kodr/kodr.db",
            "a" * 300,
        ]
    ),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
)
envelope = st.fixed_dictionaries(
    {
        "summary": st.one_of(any_text, wild),
        "files": st.one_of(
            st.lists(
                st.fixed_dictionaries({"path": st.one_of(hostile_path, wild), "content": st.one_of(any_text, wild)}),
                max_size=3,
            ),
            wild,
        ),
    },
    optional={"notes": st.one_of(any_text, wild)},
)
wrapped = st.tuples(
    envelope,
    st.sampled_from(
        [
            "{}",
            "<think>{}</think>",
            "```json\n{}\n```",
            "<think>x</think>{}",
            "{} trailing",
            "</think>{}",
            "<think>{}",
            "{}{}",
        ]
    ),
    st.booleans(),
).map(lambda x: Turn(content=x[1].replace("{}", json.dumps(x[0], ensure_ascii=x[2]) if not x[2] else json.dumps(x[0]))))
raw_body = st.one_of(
    st.binary(max_size=3000),
    st.sampled_from([b"[" * 100_000, b'{"choices": ' * 50_000, b"data: " + b"[" * 100_000 + b"\n\n"]),
).map(lambda b: Turn(raw_body=b))


# -- the harness ------------------------------------------------------------------------


class Harness:
    """One server, one workspace, one store; each example is a new run in them."""

    def __init__(self, root: Path) -> None:
        self.turn = Turn(content="{}")
        self.root = root / "ws"
        self.root.mkdir()
        (self.root / "a.js").write_text("export const a = 1;\n")
        self.sibling = root / "outside"
        self.sibling.mkdir()
        (self.sibling / "keep.txt").write_text("untouched\n")
        self.srv = ScriptedServer(responder=lambda body: self.turn).start()
        self.app = open_app(self.root)
        config = ProviderConfig("test", self.srv.base_url, model="m", local=True)
        self.client = OpenAIChatClient(config, stall_timeout_s=5, deadline_s=20, max_retries=0)
        self.runs = 0

    def run(self, turn: Turn, *, tools: bool) -> None:
        self.turn = turn
        model = ToolLoopModel(self.client, self.app.workspace, max_steps=3, local=True) if tools else self.client
        engine = Engine(self.app.store, self.app.workspace, ProcessToolchain(), model)
        opts = RunOptions(base_url=self.srv.base_url, model="m", dry_run=True, tools=tools, model_timeout_s=20)
        run_id = engine.request("t", opts)
        run = engine.drive(run_id)
        assert run.state in TERMINAL, (run.state, turn)
        records = self.app.store.load(run_id)  # the history reads back (and was hashable to store)
        assert records[-1].type == "StateChanged" and records[-1].event.outcome is not None
        self.runs += 1

    def close(self) -> None:
        self.client.close()
        self.srv.stop()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory):
    h = Harness(tmp_path_factory.mktemp("props"))
    yield h
    h.close()
    assert sorted(p.name for p in h.sibling.iterdir()) == ["keep.txt"]
    assert (h.sibling / "keep.txt").read_text() == "untouched\n"
    assert sorted(p.name for p in h.root.iterdir()) == [".kodr", "a.js"], "a dry run writes nothing"


@SETTINGS
@given(turn=sse, tools=st.booleans())
def test_any_sse_chunk_sequence_ends_the_run(harness: Harness, turn: Turn, tools: bool) -> None:
    harness.run(turn, tools=tools)


@SETTINGS
@given(turn=wrapped, tools=st.booleans())
def test_any_envelope_ends_the_run(harness: Harness, turn: Turn, tools: bool) -> None:
    harness.run(turn, tools=tools)


@SETTINGS
@given(turn=raw_body)
def test_any_body_bytes_end_the_run(harness: Harness, turn: Turn) -> None:
    harness.run(turn, tools=False)


def test_the_strategies_reach_the_cases_of_the_issue(harness: Harness) -> None:
    """The named cases of issue 10, each once, so a regression names itself."""
    cases: list[Any] = [
        Turn(content='{"summary": "s", "files": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        Turn(content=json.dumps({"summary": "s", "files": [{"path": "a\ud800.js", "content": "x"}]})),
        Turn(content=json.dumps({"summary": "s", "files": [{"path": "\U0001f600" * 64 + ".js", "content": "x"}]})),
        Turn(raw_chunks=[{"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": 7}]}]),
        Turn(raw_chunks=[{"choices": [{"index": 0, "delta": {"content": [{"text": 5}]}, "finish_reason": "stop"}]}]),
        Turn(
            raw_chunks=[
                {
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [{"index": [0], "function": {"name": "list_files", "arguments": "{}"}}]
                            },
                            "finish_reason": "tool_calls",
                        }
                    ]
                }
            ]
        ),
    ]
    for turn in cases:
        for tools in (False, True):
            harness.run(turn, tools=tools)
