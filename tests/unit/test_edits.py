"""Search/replace edits: applied exactly, or refused with the reason (issue 9, item 6)."""

from __future__ import annotations

import pytest

from kodr_core.envelope import InvalidProposal, parse_proposal
from kodr_core.patch import EditRefused, apply_edit, apply_edits, proposal_writes

BIG = "".join(f"function f{i}(x) {{\n  return x + {i}\n}}\n" for i in range(2000))


def reader(contents):
    return lambda p: contents[p].encode() if isinstance(contents.get(p), str) else contents.get(p)


def test_exact_unique_anchor_is_replaced():
    text, how = apply_edit(BIG, "function f1500(x) {\n  return x + 1500\n", "function f1500(x) {\n  return x - 1500\n")
    assert how == "exact" and "return x - 1500" in text and len(text) == len(BIG)


def test_an_ambiguous_anchor_is_refused_with_the_count():
    with pytest.raises(EditRefused, match="occurs 2000 times"):
        apply_edit(BIG, "function f", "function g")


def test_a_missing_anchor_is_refused():
    with pytest.raises(EditRefused, match="not found"):
        apply_edit(BIG, "return x * 7", "return 0")


def test_indentation_the_model_dropped_is_tolerated_and_reapplied():
    src = "class A:\n    def f(self):\n        return 1  \n\n    def g(self):\n        return 2\n"
    text, how = apply_edit(src, "def f(self):\n    return 1\n", "def f(self):\n    return 10\n")
    assert how == "indent"
    assert text == "class A:\n    def f(self):\n        return 10\n\n    def g(self):\n        return 2\n"


def test_hunks_apply_in_order_and_all_or_nothing():
    files = {"a.py": "x = 1\ny = 2\n", "img.png": b"\x89PNG\x00"}
    out = apply_edits([("a.py", "x = 1", "x = 3"), ("a.py", "x = 3\ny = 2", "x = 4\ny = 5")], reader(files))
    assert out == {"a.py": ("x = 4\ny = 5\n", ["exact", "exact"])}
    with pytest.raises(EditRefused, match=r"edits\[1\] \(a.py\): the search text was not found"):
        apply_edits([("a.py", "x = 1", "x = 3"), ("a.py", "x = 1", "x = 9")], reader(files))
    with pytest.raises(EditRefused, match="no such file"):
        apply_edits([("gone.py", "a", "b")], reader(files))
    with pytest.raises(EditRefused, match="binary"):
        apply_edits([("img.png", "P", "Q")], reader(files))


def test_a_truncated_file_cannot_be_rewritten_whole_but_can_be_edited():
    files = {"src/big.js": BIG}
    context = {"files": [{"path": "src/big.js", "truncated": True, "cut": "excerpt"}]}
    whole = parse_proposal({"summary": "s", "files": [{"path": "src/big.js", "content": "function f1500(x) {}\n"}]})
    with pytest.raises(InvalidProposal, match="shown truncated, so it cannot be rewritten whole"):
        proposal_writes(whole, reader(files), context)
    edit = parse_proposal(
        {
            "summary": "s",
            "files": [],
            "edits": [{"path": "src/big.js", "search": "  return x + 1500\n", "replace": "  return x - 1500\n"}],
        }
    )
    [(path, content, facts)] = proposal_writes(edit, reader(files), context)
    assert path == "src/big.js" and facts == {"via": "edits", "hunks": ["exact"]}
    assert content == BIG.replace("return x + 1500\n", "return x - 1500\n")
    bad = parse_proposal(
        {"summary": "s", "files": [], "edits": [{"path": "src/big.js", "search": "nope", "replace": ""}]}
    )
    with pytest.raises(InvalidProposal, match="an edit was refused"):
        proposal_writes(bad, reader(files), context)


def test_a_hostile_edit_path_is_never_read_and_left_for_the_workspace_to_refuse():
    seen = []
    prop = parse_proposal(
        {"summary": "s", "files": [], "edits": [{"path": "../../etc/passwd", "search": "r", "replace": "x"}]}
    )
    out = proposal_writes(prop, lambda p: seen.append(p) or b"root", None)
    assert seen == [] and out[0][0] == "../../etc/passwd" and "refused" in out[0][2]
