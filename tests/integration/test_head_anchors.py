"""Head anchors as the append path writes them (from a cached path and a template): the
bytes are json.dumps of the head, and a file deleted, replaced or edited is written again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kodr_core.errors import StoreCorrupt
from store.anchors import _SIZE, HeadAnchors, _mac

HEX = "ab" * 32


def old_bytes(run_id: str, seq: int, digest: str, key: bytes | None) -> bytes:
    """What the anchor file held before it was written from a template: json.dumps of the body."""
    body: dict[str, object] = {"run_id": run_id, "seq": seq, "hash": digest}
    if key:
        body["hmac"] = _mac(key, run_id, seq, digest)
    return (json.dumps(body, sort_keys=True) + "\n").ljust(_SIZE).encode("utf-8")


@pytest.mark.parametrize("key", [None, b"k"])
@pytest.mark.parametrize("run_id", ["run-1", 'we"ird/ü..x', "a" * 64])
@pytest.mark.parametrize("digest", [HEX, 'not"hex'])
def test_the_bytes_are_json_dumps_of_the_head(tmp_path, key, run_id, digest):
    anchors = HeadAnchors(tmp_path, key=key)
    anchors.write(run_id, 12, digest)
    assert anchors.path(run_id).read_bytes() == old_bytes(run_id, 12, digest, key)
    head = anchors.read(run_id)
    assert head is not None and (head.seq, head.hash) == (12, digest)


def test_a_deleted_head_is_written_again(tmp_path):
    anchors = HeadAnchors(tmp_path)
    anchors.write("run-1", 1, HEX)
    path = anchors.path("run-1")
    path.unlink()
    anchors.write("run-1", 2, HEX)
    assert anchors.read("run-1").seq == 2
    path.unlink()
    os.rmdir(path.parent)
    anchors.write("run-1", 3, HEX)  # its directory too
    assert anchors.read("run-1").seq == 3


def test_a_head_replaced_by_rename_is_written_at_its_path(tmp_path):
    anchors = HeadAnchors(tmp_path)
    anchors.write("run-1", 1, HEX)
    path = anchors.path("run-1")
    forged = path.with_name("forged")
    forged.write_text(json.dumps({"run_id": "run-1", "seq": 99, "hash": HEX}))
    os.replace(forged, path)
    anchors.write("run-1", 2, HEX)
    assert anchors.read("run-1").seq == 2


def test_a_head_edited_in_place_is_overwritten_whole(tmp_path):
    anchors = HeadAnchors(tmp_path)
    anchors.write("run-1", 1, HEX)
    anchors.path("run-1").write_text("garbage")
    anchors.write("run-1", 2, HEX)
    assert anchors.read("run-1").seq == 2


def test_many_runs(tmp_path):
    anchors = HeadAnchors(tmp_path)
    for seq in (1, 2):
        for i in range(40):
            anchors.write(f"run-{i}", seq, HEX)
    assert all(anchors.read(f"run-{i}").seq == 2 for i in range(40))
    assert sorted(anchors.run_ids()) == sorted(f"run-{i}" for i in range(40))


def test_an_unwritable_head_is_store_corrupt(tmp_path):
    anchors = HeadAnchors(tmp_path)
    Path(tmp_path, "run-1").write_text("a file where the run's directory should be")
    with pytest.raises(StoreCorrupt, match="cannot write the head anchor"):
        anchors.write("run-1", 1, HEX)
