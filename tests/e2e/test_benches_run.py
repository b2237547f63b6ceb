"""The store and start-up benchmarks still run, each as its one command, at their smallest sizes.

Nothing here judges a figure (targets live in bench/, never in timed tests): it checks that
each command exits 0 and prints every line a reader of bench/RESULTS.md looks for, with the
ratios against the baselines it measured in the same run, so a benchmark cannot rot unseen.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
RATIO = r"\d+\.\d\dx"


def bench(*argv: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_store_append_prints_kodr_against_raw(backend, request):
    env = dict(os.environ)
    args = ["-m", "bench.store", "--quick", "--repeats", "1", "--only", "append"]
    if backend == "postgres":
        env["KODR_TEST_POSTGRES_URL"] = request.getfixturevalue("postgres_admin_url")
    else:
        args.append("--no-postgres")
    out = bench(*args, env=env)
    line = next(ln for ln in out.splitlines() if ln.startswith(f"append {backend}:"))
    assert re.search(rf"kodr [\d,]+ ev/s, raw [\d,]+ ev/s \(kodr/raw {RATIO}\)", line), line
    floor = rf"the design's whole write without kodr's code [\d,]+ ev/s \(that/raw {RATIO}, kodr/that {RATIO}\)"
    assert re.search(floor, line), line
    if backend == "sqlite":
        assert re.search(rf"raw doing the chain's work in the loop [\d,]+ ev/s \(kodr/that {RATIO}\)", line), line


def test_store_fold_prints_its_rate():
    out = bench("-m", "bench.store", "--quick", "--repeats", "1", "--only", "fold", "--no-postgres")
    assert re.search(r"^fold: [\d,]+ events in memory, [\d,]+ ev/s wall, [\d,]+ ev/s of CPU$", out, re.M), out


def test_statements_prints_each_layout_against_raw():
    out = bench("bench/store_statements.py", "--transitions", "200", "--repeats", "1")
    for name in ("raw insert", "kodr's write set", "kodr's, WITHOUT ROWID events"):
        assert re.search(rf"{re.escape(name)}\s+[\d.]+ µs/transition\s+raw/this {RATIO}", out), out


def test_anchor_write_prints_each_way_against_the_commit_alone():
    out = bench("bench/anchor_write.py", "--iterations", "50", "--repeats", "1")
    for name in ("commit alone", "open, write, close", "kept open", "kept open, fstat"):
        assert re.search(rf"^  {re.escape(name)}\s+[\d.]+ µs/commit\s+this/commit alone {RATIO}$", out, re.M), out


def test_startup_prints_every_command_against_python():
    out = bench("bench/startup.py", "--repeat", "1")
    for command in ("python -c pass", "kodr --help", "kodr show last", "kodr audit verify"):
        assert re.search(rf"^{re.escape(command)}\s+[\d.]+s", out, re.M), out


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_floor_writes_what_kodr_writes(backend, tmp_path, request):
    """The floor rows do the design's whole write: kodr's audit passes on what they wrote (chain and
    head anchors), and each run's projection row ends where kodr's own append would leave it."""
    from bench.store import floor_pg_append, floor_sqlite_append, workload
    from store import open_store, upgrade
    from store.anchors import HeadAnchors

    appends = workload(600)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'floor.db'}"
        floor_sqlite_append(tmp_path / "floor.db", tmp_path / "runs", appends)
    else:
        url = request.getfixturevalue("postgres_schema_url")
        upgrade(url)
        schema = sa.make_url(url).query["options"].split("=", 1)[1]  # -csearch_path=<schema>
        floor_pg_append(url, schema, tmp_path / "runs", appends)
    with open_store(url, anchor_dir=tmp_path / "runs") as s:
        audit = s.audit()
        assert audit.runs and all(r.ok for r in audit.runs.values()), audit
        for rid, report in audit.runs.items():
            row = s.get_run(rid)
            assert (row["last_seq"], row["state"]) == (report.checked, s.rebuild_projection(rid)["state"])
            head = HeadAnchors(tmp_path / "runs").read(rid)  # PostgreSQL's audit does not require one
            assert head is not None and (head.seq, head.hash) == (report.checked, report.last_hash)
