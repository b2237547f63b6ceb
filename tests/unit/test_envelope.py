"""The proposal envelope: strict schema, path refusals, duplicates and size caps."""

from __future__ import annotations

import pytest

from kodr_core import envelope
from kodr_core.envelope import InvalidProposal, check_relative_path, parse_proposal, proposal_json_schema
from kodr_core.errors import RefusedInput


def _objects(node):
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def test_schema_is_openai_strict():
    schema = proposal_json_schema()
    objects = list(_objects(schema))
    assert len(objects) == 3  # the envelope, a file write, an edit
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])
    text = repr(schema)
    assert "$ref" not in text and "anyOf" not in text and "default" not in text
    assert schema["properties"]["notes"]["type"] == ["string", "null"]
    assert schema["properties"]["files"]["items"]["properties"]["path"]["type"] == "string"
    assert schema["properties"]["edits"]["items"]["required"] == ["path", "search", "replace"]


def test_each_call_gets_its_own_schema():
    """Built once per process, handed out as copies: a caller that edits its schema edits no other's."""
    first = proposal_json_schema()
    first["properties"]["files"]["items"]["properties"].clear()
    first["required"].append("extra")
    again = proposal_json_schema()
    assert again["properties"]["files"]["items"]["properties"]["path"]["type"] == "string"
    assert "extra" not in again["required"]


#: Keywords llama.cpp's json-schema-to-grammar and vLLM's guided decoding both handle.
GRAMMAR_KEYWORDS = {"type", "properties", "required", "additionalProperties", "items", "description"}


def test_schema_uses_only_keywords_local_grammars_support():
    def keys(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k != "properties":
                    yield k
                    yield from keys(v)
                else:
                    for sub in v.values():
                        yield from keys(sub)
        elif isinstance(node, list):
            for v in node:
                yield from keys(v)

    assert set(keys(proposal_json_schema())) <= GRAMMAR_KEYWORDS


def test_edits_are_optional_in_validation_and_checked():
    assert parse_proposal({"summary": "s", "files": []}).edits == []
    p = parse_proposal({"summary": "s", "files": [], "edits": [{"path": "./a.js", "search": "x", "replace": "y"}]})
    assert p.edits[0].path == "a.js"
    with pytest.raises(InvalidProposal, match="also written whole"):
        parse_proposal(
            {
                "summary": "s",
                "files": [{"path": "a.js", "content": ""}],
                "edits": [{"path": "a.js", "search": "x", "replace": "y"}],
            }
        )
    with pytest.raises(InvalidProposal, match="search is empty"):
        parse_proposal({"summary": "s", "files": [], "edits": [{"path": "a.js", "search": "", "replace": "y"}]})
    with pytest.raises(InvalidProposal, match="too many edits"):
        parse_proposal(
            {
                "summary": "s",
                "files": [],
                "edits": [{"path": "a.js", "search": "x", "replace": "y"}] * (envelope.MAX_EDITS + 1),
            }
        )


@pytest.mark.parametrize(
    "path, expected",
    [
        ("src/a.js", "src/a.js"),
        ("./src//a.js", "src/a.js"),
        ("a/./b.py", "a/b.py"),
        ("src/", "src"),
        (".gitignore", ".gitignore"),
        (".github/workflows/ci.yml", ".github/workflows/ci.yml"),
        ("my.git/x", "my.git/x"),
        ("notes..md", "notes..md"),
    ],
)
def test_accepted_paths_are_normalised(path, expected):
    assert check_relative_path(path) == expected


@pytest.mark.parametrize(
    "path, reason",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("/etc/passwd", "absolute"),
        ("C:\\Windows\\x", "absolute (drive)"),
        ("C:/Windows/x", "absolute (drive)"),
        ("c:x", "absolute (drive)"),
        ("\\\\server\\share\\x", "network"),
        ("//server/share/x", "network"),
        ("../x", "'..'"),
        ("a/../../b", "'..'"),
        ("a/..", "'..'"),
        ("a\\b.js", "backslash"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        (".git/config", ".git/ is off limits"),
        (".GIT/HEAD", "off limits"),
        ("sub/.git/hooks/pre-commit", "off limits"),
        (".kodr/kodr.db", ".kodr/ is off limits"),
        (".Kodr/runs/x", "off limits"),
        ("x" * 300, "longer than"),
        ("a/" + "y" * 200, "longer than"),
        (".", "names no file"),
        ("./", "names no file"),
    ],
)
def test_refused_paths_say_why(path, reason):
    with pytest.raises(RefusedInput) as info:
        check_relative_path(path)
    assert reason in info.value.message


def _env(*files, **extra):
    return {"summary": "s", "files": [{"path": p, "content": c} for p, c in files], **extra}


def test_parse_proposal_normalises_and_defaults_notes():
    proposal = parse_proposal({**_env(("./src/a.js", "x")), "extra": "ignored"})
    assert proposal.files[0].path == "src/a.js"
    assert proposal.notes is None


def test_hostile_path_is_kept_as_written_for_the_workspace_to_refuse():
    # An escaping path is not a formatting slip to retry: the engine records it as
    # WritesRefused and the run fails with unsafe_write (tests/e2e/test_run_pipeline.py).
    proposal = parse_proposal(_env(("ok.js", ""), ("../evil.js", "")))
    assert [f.path for f in proposal.files] == ["ok.js", "../evil.js"]
    with pytest.raises(RefusedInput, match="'..' escapes the workspace"):
        check_relative_path(proposal.files[1].path)


def test_missing_fields_are_listed():
    with pytest.raises(InvalidProposal) as info:
        parse_proposal({"summary": "s", "files": [{"path": "a.js"}]})
    assert "files[0].content: Field required" in info.value.message


def test_not_an_object():
    with pytest.raises(InvalidProposal, match="must be a JSON object"):
        parse_proposal(["a"])


@pytest.mark.parametrize("second", ["a.js", "./a.js", "A.js"])
def test_duplicate_paths_refused(second):
    with pytest.raises(InvalidProposal, match="duplicate path"):
        parse_proposal(_env(("a.js", "1"), (second, "2")))


def test_size_caps(monkeypatch):
    monkeypatch.setattr(envelope, "MAX_FILE_BYTES", 10)
    monkeypatch.setattr(envelope, "MAX_TOTAL_BYTES", 15)
    parse_proposal(_env(("a.js", "x" * 10)))
    with pytest.raises(InvalidProposal, match="over the 10-byte limit per file"):
        parse_proposal(_env(("a.js", "é" * 6)))  # 12 bytes in UTF-8
    with pytest.raises(InvalidProposal, match="over the 15-byte limit per proposal"):
        parse_proposal(_env(("a.js", "x" * 8), ("b.js", "y" * 8)))


def test_file_count_cap(monkeypatch):
    monkeypatch.setattr(envelope, "MAX_FILES", 2)
    with pytest.raises(InvalidProposal, match="too many files"):
        parse_proposal(_env(("a", ""), ("b", ""), ("c", "")))
