"""Getting the envelope and text tool calls out of what local models really send."""

from __future__ import annotations

import json

import pytest

from kodr_core.envelope import InvalidProposal, proposal_json_schema
from kodr_core.model_output import (
    envelope_from_reply,
    extract_envelope,
    parse_text_tool_calls,
    response_format_for,
    strip_thinking,
)
from kodr_core.ports import ChatReply

ENV = {
    "summary": "add sum",
    "files": [{"path": "src/sum.js", "content": "export const sum = (a, b) => { return a + b; };\n"}],
    "notes": None,
}
JSON = json.dumps(ENV)


def paths(proposal):
    return [f.path for f in proposal.files]


@pytest.mark.parametrize(
    "content",
    [
        JSON,
        f"  {JSON}\n",
        f"```json\n{JSON}\n```",
        f"```\n{JSON}\n```",
        f"Here is the change:\n```json\n{JSON}\n```\nLet me know!",
        f"Sure. {JSON} Done.",
        f'<think>The user wants {{a sum}}. Maybe {{"summary": "draft"}}</think>\n{JSON}',
        f"<THINK>upper case</THINK>{JSON}",
        f"<thinking>x</thinking>```json\n{JSON}\n```",
        f"I should write sum.js first.\n</think>\n\n{JSON}",  # the opening tag was in the template
        f"<|channel|>final<|message|>{JSON}",
    ],
)
def test_envelope_found(content):
    assert paths(extract_envelope(content)) == ["src/sum.js"]


def test_literal_think_tag_inside_file_content_survives():
    env = {"summary": "s", "files": [{"path": "p.py", "content": "END = '</think>'\n"}], "notes": None}
    assert extract_envelope(json.dumps(env)).files[0].content == "END = '</think>'\n"


def test_raw_newlines_inside_strings_are_accepted():
    content = '{"summary": "s", "files": [{"path": "a.py", "content": "x = 1\ny = 2\n"}], "notes": null}'
    assert extract_envelope(content).files[0].content == "x = 1\ny = 2\n"


def test_trailing_commas_are_tolerated():
    content = '{"summary": "s", "files": [{"path": "a.js", "content": "f(a, ]);",},], "notes": null,}'
    assert extract_envelope(content).files[0].content == "f(a, ]);"


def test_last_valid_envelope_wins():
    first = json.dumps({**ENV, "summary": "first"})
    second = json.dumps({**ENV, "summary": "second"})
    assert extract_envelope(f"{first}\nActually, better:\n{second}").summary == "second"


def test_reasoning_field_used_when_content_is_empty():
    assert paths(extract_envelope("", reasoning=f"Thinking... final answer: {JSON}")) == ["src/sum.js"]
    assert paths(extract_envelope("<think>" + JSON + "</think>")) == ["src/sum.js"]


def test_reasoning_ignored_when_content_has_an_answer():
    with pytest.raises(InvalidProposal, match="no JSON object found"):
        extract_envelope("I could not decide.", reasoning=f"draft: {JSON}")


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"name": "submit", "arguments": ENV}),
        json.dumps({"name": "submit", "arguments": JSON}),
        json.dumps({"name": "submit_proposal", "parameters": ENV}),
        json.dumps({"type": "function", "function": {"name": "submit", "arguments": JSON}}),
        f"<tool_call>\n{json.dumps({'name': 'submit', 'arguments': ENV})}\n</tool_call>",
        json.dumps({"proposal": ENV}),
    ],
)
def test_envelope_inside_a_text_tool_call_or_wrapper(content):
    assert paths(extract_envelope(content)) == ["src/sum.js"]


def test_cut_off_reply_is_refused_even_if_it_parses():
    with pytest.raises(InvalidProposal, match="cut off at the token limit"):
        extract_envelope(JSON, finish_reason="length")


@pytest.mark.parametrize(
    "content, reasoning, message",
    [
        ("", None, "the reply was empty"),
        ("   ", "", "the reply was empty"),
        ("I will write the file now.", None, "no JSON object found"),
        ('{"summary": "s", "files": [{"path": "a.js", "content": "x"}', None, "does not parse"),
        (
            '```json\n{"summary": "s", "files": [ {"path": "a.js" "content": "x"}]}\n```',
            None,
            "Expecting ',' delimiter",
        ),
        ('{"answer": 42}', None, "found keys ['answer']"),
        (json.dumps({"summary": "s"}), None, "files: Field required"),
    ],
)
def test_failures_say_precisely_what_was_wrong(content, reasoning, message):
    with pytest.raises(InvalidProposal) as info:
        extract_envelope(content, reasoning)
    assert message in info.value.message
    assert '"files"' in info.value.message  # the hint shows the expected shape


def test_envelope_from_reply_prefers_a_protocol_tool_call():
    call = {"id": "c1", "type": "function", "function": {"name": "submit", "arguments": JSON}}
    reply = ChatReply(content="calling submit", tool_calls=[call], finish_reason="tool_calls")
    assert paths(envelope_from_reply(reply)) == ["src/sum.js"]
    assert paths(envelope_from_reply(ChatReply(content=JSON))) == ["src/sum.js"]
    with pytest.raises(InvalidProposal, match="cut off"):
        envelope_from_reply(ChatReply(content=JSON, finish_reason="length"))


def test_strip_thinking_removes_only_the_leading_block():
    assert strip_thinking("<think>a</think>b<think>c</think>d") == "b<think>c</think>d"
    assert strip_thinking("  <THINKING>a</THINKING>b") == "b"
    assert strip_thinking("thinking\n</think>answer</think>") == "answer</think>"  # a lone leading close
    assert strip_thinking("answer<think>still thinking") == "answer<think>still thinking"
    assert strip_thinking('{"a": "</think>"}') == '{"a": "</think>"}'  # JSON first: content, not a close
    assert strip_thinking('<think>never closed {"files": []}') == ""


def test_think_tags_inside_file_content_are_kept_byte_for_byte_after_a_think_block():
    """Issue 11 item 6: the tags were silently stripped when the reply began with a think block."""
    code = "const open = '<think>';\nconst close = '</think>';\n// <think>x</think>\n"
    env = {"summary": "s", "files": [{"path": "tags.js", "content": code}], "notes": None}
    for reply in (
        f"<think>plan</think>{json.dumps(env)}",
        f"plan\n</think>\n{json.dumps(env)}",
        f"<think>plan</think>```json\n{json.dumps(env)}\n```",
    ):
        assert extract_envelope(reply).files[0].content == code


def test_a_draft_inside_an_unclosed_think_is_no_answer():
    draft = json.dumps({"summary": "draft", "files": [{"path": "a.js", "content": "x"}], "notes": None})
    with pytest.raises(InvalidProposal, match="never closed"):
        extract_envelope(f"<think>maybe this: {draft}")


# -- tool calls written as text ------------------------------------------------


def _named(calls):
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]


def test_hermes_tool_call_tags():
    text = (
        'Let me look.\n<tool_call>\n{"name": "read_file", "arguments": {"path": "a.js"}}\n</tool_call>\n'
        '<tool_call>{"name": "list_files", "arguments": "{}"}</tool_call>'
    )
    calls = parse_text_tool_calls(text)
    assert _named(calls) == [("read_file", {"path": "a.js"}), ("list_files", {})]
    assert [c["id"] for c in calls] == ["text_call_0", "text_call_1"]
    assert all(c["type"] == "function" for c in calls)


def test_unclosed_tool_call_tag():
    assert _named(parse_text_tool_calls('<tool_call>{"name": "list_files", "arguments": {}}')) == [("list_files", {})]


def test_qwen_coder_xml_tool_call():
    text = "<tool_call>\n<function=read_file>\n<parameter=path>\nsrc/a.js\n</parameter>\n</function>\n</tool_call>"
    assert _named(parse_text_tool_calls(text)) == [("read_file", {"path": "src/a.js"})]


def test_mistral_tool_calls():
    assert _named(parse_text_tool_calls('[TOOL_CALLS] [{"name": "read_file", "arguments": {"path": "x"}}]')) == [
        ("read_file", {"path": "x"})
    ]
    assert _named(parse_text_tool_calls('[TOOL_CALLS]read_file[ARGS]{"path": "y"}')) == [("read_file", {"path": "y"})]


def test_bare_and_fenced_json_tool_calls():
    bare = 'I will call {"name": "inspect_symbols", "parameters": {"path": "a.py"}} now'
    assert _named(parse_text_tool_calls(bare)) == [("inspect_symbols", {"path": "a.py"})]
    fenced = '```json\n{"name": "read_file", "arguments": {"path": "b"}}\n```'
    assert _named(parse_text_tool_calls(fenced)) == [("read_file", {"path": "b"})]


def test_not_tool_calls():
    assert parse_text_tool_calls(JSON) == []  # the envelope is an answer, not a call
    assert parse_text_tool_calls('{"name": "my-package", "version": "1.0.0"}') == []
    assert parse_text_tool_calls('<think><tool_call>{"name": "read_file", "arguments": {}}</tool_call></think>') == []
    assert parse_text_tool_calls("") == [] and parse_text_tool_calls(None) == []


def test_names_filter():
    text = (
        '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>'
        '<tool_call>{"name": "read_file", "arguments": {}}</tool_call>'
    )
    assert _named(parse_text_tool_calls(text, names=["read_file", "list_files"])) == [("read_file", {})]


# -- the response_format policy ---------------------------------------------------

SCHEMA = proposal_json_schema()


@pytest.mark.parametrize(
    "local, has_tools, schema, sent",
    [
        (False, False, SCHEMA, True),
        (False, True, SCHEMA, True),
        (True, False, SCHEMA, True),
        (True, True, SCHEMA, False),  # local servers break on tools + response_format
        (False, False, None, False),
        (True, False, None, False),
    ],
)
def test_response_format_policy(local, has_tools, schema, sent):
    fmt = response_format_for(local, has_tools, schema)
    if not sent:
        assert fmt is None
    else:
        assert fmt == {
            "type": "json_schema",
            "json_schema": {"name": "kodr_proposal", "strict": True, "schema": SCHEMA},
        }
