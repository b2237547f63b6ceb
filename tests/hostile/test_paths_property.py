"""Property: no envelope path, however generated, writes outside the workspace or raises anything but a refusal.

Envelope paths only (SSE chunks are engineer ``models``' property test). Every generated
path goes through the same gate the engine uses (``DiskWorkspace.check_path`` then
``write``) in a workspace that has a symlink to its sibling, a file where a directory
would be, and a ``.git``/``.kodr``; the sibling must stay byte for byte the same.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.workspace import DiskWorkspace
from kodr_core.errors import KodrError
from tests.hostile.conftest import tree

PIECES = st.sampled_from(
    [
        "..",
        ".",
        "",
        "/",
        "\\",
        "link",
        "file.txt",
        ".git",
        ".kodr",
        "~",
        "C:",
        "a",
        "b",
        "..\\..",
        "%2e%2e",
        "\0",
        "\n",
        " ",
        "node_modules",
        "." * 3,
        "é",
        "😀" * 64,
        "x" * 300,
    ]
)
SEGMENT = st.one_of(PIECES, st.text(st.characters(exclude_categories=("Cs",)), max_size=12))
PATHS = st.one_of(
    st.lists(SEGMENT, min_size=1, max_size=6).map("/".join),
    st.lists(SEGMENT, min_size=1, max_size=4).map(lambda p: "/" + "/".join(p)),
    st.text(max_size=40).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
)


def _fresh() -> tuple[Path, Path, DiskWorkspace]:
    root = Path(tempfile.mkdtemp(prefix="kodr-prop-"))
    ws, sib = root / "ws", root / "sibling"
    (ws / ".git").mkdir(parents=True)
    (ws / ".kodr").mkdir()
    (ws / "file.txt").write_text("f")
    sib.mkdir()
    (sib / "keep.txt").write_text("keep")
    (ws / "link").symlink_to(sib, target_is_directory=True)
    return ws, sib, DiskWorkspace(ws)


WS, SIB, WORKSPACE = _fresh()
BEFORE = tree(SIB)


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=PATHS)
def test_no_envelope_path_escapes(path: str) -> None:
    try:
        rel = WORKSPACE.check_path(path)
        WORKSPACE.write(path, b"generated")
    except KodrError:
        return  # a refusal, named: what the user gets as unsafe_write
    except OSError as e:  # the OS refusing a name (too long, invalid) inside the workspace is not an escape
        assert e.errno is not None
        return
    real = os.path.realpath(WS / rel)
    assert os.path.commonpath([real, str(WS.resolve())]) == str(WS.resolve())
    assert not rel.startswith((".git/", ".kodr/")) and rel not in (".git", ".kodr")
    assert tree(SIB) == BEFORE
