"""The base snapshot Engine.request records, and DiskWorkspace's path checks, on a real directory.

The snapshot is what a resume restores from and what diffs are taken against, so
it must hold what the user's project is (not its installed dependencies, kodr's
own files or what .gitignore hides), and never read through a symlink.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters.workspace import DiskWorkspace
from kodr_core import events as ev
from kodr_core.aggregate import Run
from kodr_core.engine import SNAPSHOT_FILE_CAP, Engine
from kodr_core.errors import RefusedInput
from kodr_core.options import RunOptions
from kodr_core.states import State
from tests.unit.fakes import FakeClock, FakeModel, FakeToolchain, MemoryLog, envelope, passing, sha


def put(root: Path, rel: str, data: bytes | str = "x\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def snapshot_of(root: Path) -> tuple[ev.RunRequested, MemoryLog]:
    log = MemoryLog()
    engine = Engine(log, DiskWorkspace(root), FakeToolchain(), None)
    run_id = engine.request("task", RunOptions(), run_id="r")
    (requested,) = log.events(run_id)
    assert isinstance(requested, ev.RunRequested)
    return requested, log


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


# -- what is in it ---------------------------------------------------------------------


def test_the_snapshot_maps_every_visible_file_to_its_stored_blob(root):
    put(root, "package.json", "{}\n")
    put(root, "src/a.js", "a\n")
    put(root, "src/deep/b.js", "b\n")

    requested, log = snapshot_of(root)

    assert requested.base_snapshot == {"package.json": sha("{}\n"), "src/a.js": sha("a\n"),
                                       "src/deep/b.js": sha("b\n")}  # fmt: skip
    assert {k: log.get_blob(v) for k, v in requested.base_snapshot.items()} == {
        "package.json": b"{}\n", "src/a.js": b"a\n", "src/deep/b.js": b"b\n"}  # fmt: skip
    assert requested.workspace == str(root.resolve()) and requested.snapshot_skipped == []


def test_gitignore_rules_are_respected(root):
    put(root, ".gitignore", "*.log\nbuild/\n/secret.env\n!keep.log\n")
    put(root, "app.js")
    put(root, "debug.log")
    put(root, "keep.log")
    put(root, "build/out.js")
    put(root, "src/build/gen.js")  # build/ matches at any depth
    put(root, "secret.env")
    put(root, "src/secret.env")  # /secret.env is anchored to the root

    requested, _ = snapshot_of(root)

    assert sorted(requested.base_snapshot) == [".gitignore", "app.js", "keep.log", "src/secret.env"]


@pytest.mark.parametrize("folder", ["node_modules", ".venv", ".git", ".kodr", "sub/node_modules", "sub/.venv"])
def test_dependency_vcs_and_kodr_folders_are_never_included(root, folder):
    put(root, "app.js")
    put(root, f"{folder}/inner/file.js", "hidden\n")

    requested, log = snapshot_of(root)

    assert list(requested.base_snapshot) == ["app.js"]
    assert b"hidden\n" not in log.blobs.values()


@pytest.mark.parametrize("folder", ["node_modules", ".venv", ".git", ".kodr"])
def test_a_gitignore_cannot_bring_those_folders_back(root, folder):
    put(root, ".gitignore", f"!{folder}/\n!{folder}/**\n")
    put(root, f"{folder}/inner/file.js", "hidden\n")

    requested, _ = snapshot_of(root)

    assert sorted(requested.base_snapshot) == [".gitignore"]


def test_a_file_over_the_cap_is_recorded_as_skipped_not_stored(root):
    big = b"x" * (SNAPSHOT_FILE_CAP + 1)
    put(root, "big.bin", big)
    put(root, "exact.bin", b"y" * SNAPSHOT_FILE_CAP)
    put(root, "small.txt", "small\n")

    requested, log = snapshot_of(root)

    assert requested.snapshot_skipped == [
        {"path": "big.bin", "bytes": SNAPSHOT_FILE_CAP + 1, "why": "over the snapshot size cap"}
    ]
    assert sorted(requested.base_snapshot) == ["exact.bin", "small.txt"]
    assert sha(big) not in log.blobs


def test_files_past_the_total_cap_are_skipped(root, monkeypatch):
    monkeypatch.setattr("kodr_core.engine.SNAPSHOT_TOTAL_CAP", 10)
    put(root, "a.txt", "123456")
    put(root, "b.txt", "789012")  # 12 bytes in all: over
    put(root, "c.txt", "34")  # still fits after b was skipped

    requested, _ = snapshot_of(root)

    assert sorted(requested.base_snapshot) == ["a.txt", "c.txt"]
    assert requested.snapshot_skipped == [{"path": "b.txt", "bytes": 6, "why": "over the snapshot size cap"}]


def test_identical_contents_are_stored_once(root):
    for name in ("a.js", "b.js", "src/c.js"):
        put(root, name, "module.exports = 1;\n")
    put(root, "d.js", "other\n")

    requested, log = snapshot_of(root)

    assert len(set(requested.base_snapshot.values())) == 2
    assert set(log.blobs) == {sha("module.exports = 1;\n"), sha("other\n")}


def test_symlinks_are_not_followed(root, tmp_path):
    outside = tmp_path / "outside"
    put(outside, "secret.txt", "outside secret\n")
    put(outside, "lib/x.js", "outside lib\n")
    put(root, "real.js", "real\n")
    os.symlink(outside / "secret.txt", root / "secret-link.txt")
    os.symlink(root / "real.js", root / "alias.js")
    os.symlink(outside / "lib", root / "lib")

    requested, log = snapshot_of(root)

    assert list(requested.base_snapshot) == ["real.js"]
    assert set(log.blobs.values()) == {b"real\n"}


# -- DiskWorkspace.check_path ---------------------------------------------------------


def test_check_path_normalises_a_safe_path(root):
    put(root, "src/a.js")
    assert DiskWorkspace(root).check_path("./src//a.js") == "src/a.js"
    assert DiskWorkspace(root).check_path("src/new/b.js") == "src/new/b.js"


@pytest.mark.parametrize(
    "path, why",
    [
        ("../x.js", "escapes the workspace"),
        ("/etc/passwd", "absolute"),
        (".git/config", ".git/ is off limits"),
        ("out/evil.js", "a symlink leads outside the workspace"),
        ("out/deeper/evil.js", "a symlink leads outside the workspace"),
        ("link.js", "is a symlink"),
        ("src", "exists and is not a regular file"),
    ],
)
def test_check_path_refuses(root, tmp_path, path, why):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, root / "out")
    put(root, "real.js", "real\n")
    os.symlink(root / "real.js", root / "link.js")
    put(root, "src/a.js")

    with pytest.raises(RefusedInput, match=why):
        DiskWorkspace(root).check_path(path)
    with pytest.raises(RefusedInput):
        DiskWorkspace(root).write(path, b"pwned\n")
    assert (root / "real.js").read_text() == "real\n"
    assert list(elsewhere.iterdir()) == []


def test_check_path_refuses_a_path_through_an_existing_file(root):
    put(root, "calc.js", "real\n")

    with pytest.raises(RefusedInput):
        DiskWorkspace(root).check_path("calc.js/x.js")


def drive_on_disk(root: Path, files: dict[str, str]) -> tuple[MemoryLog, Run]:
    clock = FakeClock()
    log = MemoryLog(clock)
    engine = Engine(log, DiskWorkspace(root), FakeToolchain(tests=[passing()]), FakeModel(envelope(files)),
                    clock=clock)  # fmt: skip
    return log, engine.drive(engine.request("task", RunOptions(test_command="node --test"), run_id="r"))


def test_the_engine_refuses_a_write_through_a_symlink_on_disk(root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, root / "out")
    put(root, "calc.test.js", "test\n")

    log, run = drive_on_disk(root, {"calc.js": "ok\n", "out/evil.js": "pwned\n"})

    assert (run.state, run.reason) == (State.FAILED, "unsafe_write")
    (refused,) = log.of_type("r", ev.WritesRefused)
    assert refused.path == "out/evil.js" and "symlink" in refused.why
    assert list(elsewhere.iterdir()) == [] and not (root / "calc.js").exists()


def test_the_engine_refuses_a_write_under_an_existing_file_instead_of_crashing(root):
    put(root, "calc.test.js", "test\n")

    log, run = drive_on_disk(root, {"calc.js": "ok\n", "calc.test.js/x.js": "nested\n"})

    assert (run.state, run.reason) == (State.FAILED, "unsafe_write")
    assert log.types("r")[-2:] == ["WritesRefused", "StateChanged"]
    assert not (root / "calc.js").exists()
