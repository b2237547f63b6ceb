"""What SQLite's statements alone cost per transition: raw insert, kodr's write set, and kodr's on WITHOUT ROWID events.

    .venv/bin/python bench/store_statements.py [--transitions N] [--repeats K]

sqlite3 only, rows precomputed (no JSON, hashing, pydantic or anchor file), WAL +
synchronous=FULL, one commit per transition of 1-3 events, medians of K. It answers
whether a table layout could close the gap between kodr's append and the raw insert in
``bench/store.py``: the difference between the first two lines is the ``runs``
compare-and-set and kodr's wider chained rows; the third is kodr's write set with the
events table ``WITHOUT ROWID`` keyed ``(run_id, seq)``, as eventsourcing's table is.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import time

HASH = "a" * 64
BODY = '{"data":{"x":"' + "y" * 300 + '"},"recorded_at":"2026-11-26T05:00:00.000000Z","run_id":"r1"}'
EVENT_COLUMNS = "(run_id, seq, type, schema_version, recorded_at, body, prev_hash, hash, writer, lease_epoch)"
COLUMNS = (
    "run_id TEXT NOT NULL, seq INT NOT NULL, type TEXT, schema_version INT, recorded_at TEXT, body TEXT, "
    "prev_hash TEXT, hash TEXT, writer TEXT, lease_epoch INT"
)
EVENTS = {
    "rowid": f"CREATE TABLE events (id INTEGER PRIMARY KEY, {COLUMNS}, UNIQUE (run_id, seq))",
    "without rowid": f"CREATE TABLE events ({COLUMNS}, PRIMARY KEY (run_id, seq)) WITHOUT ROWID",
}
RUNS = (
    "CREATE TABLE runs (run_id TEXT PRIMARY KEY, state TEXT, heal_turn INT, outcome TEXT, reason TEXT, "
    "last_seq INT, task TEXT, workspace TEXT, mode TEXT, created_at TEXT, updated_at TEXT, last_hash TEXT, "
    "lease_owner TEXT, lease_epoch INT, lease_expires_at REAL)"
)
CAS = (
    "UPDATE runs SET state = ?, heal_turn = ?, outcome = ?, reason = ?, last_seq = ?, updated_at = ?, "
    "last_hash = ? WHERE run_id = ? AND last_seq = ? AND last_hash = ? AND state = ?"
)


def transitions(n: int) -> list[list[int]]:
    rng, out, seq = random.Random(1), [], 0
    for _ in range(n):
        k = rng.randint(1, 3)
        out.append(list(range(seq + 1, seq + k + 1)))
        seq += k
    return out


def connect(path: str, *ddl: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    for statement in ddl:
        db.execute(statement)
    return db


def raw(path: str, trans: list[list[int]]) -> float:
    """The baseline of bench/store.py: one executemany + commit per transition."""
    db = connect(
        path,
        "CREATE TABLE raw_events (id INTEGER PRIMARY KEY, run_id TEXT, seq INT, type TEXT, body TEXT, UNIQUE(run_id, seq))",
    )
    t = time.perf_counter()
    for seqs in trans:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO raw_events (run_id, seq, type, body) VALUES (?, ?, ?, ?)", [("r1", s, "T", BODY) for s in seqs]
        )
        db.execute("COMMIT")
    dt = time.perf_counter() - t
    db.close()
    return dt


def kodr(path: str, trans: list[list[int]], layout: str) -> float:
    """kodr's held-path write set: BEGIN IMMEDIATE, the runs compare-and-set, the chained rows, COMMIT."""
    db = connect(path, EVENTS[layout], RUNS)
    db.execute(
        f"INSERT INTO runs VALUES ('r1', 'verifying', 0, NULL, NULL, 0, 't', '/ws', 'run', 'x', 'x', '{HASH}', NULL, 0, NULL)"
    )
    insert = f"INSERT INTO events {EVENT_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    last = 0
    t = time.perf_counter()
    for seqs in trans:
        db.execute("BEGIN IMMEDIATE")
        cur = db.execute(CAS, ("verifying", 0, None, None, seqs[-1], "2026", HASH, "r1", last, HASH, "verifying"))
        if cur.rowcount != 1:
            raise SystemExit("the compare-and-set missed: the benchmark is broken")
        db.executemany(insert, [("r1", s, "T", 1, "2026", BODY, HASH, HASH, None, None) for s in seqs])
        db.execute("COMMIT")
        last = seqs[-1]
    dt = time.perf_counter() - t
    db.close()
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transitions", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    trans = transitions(args.transitions)
    times: dict[str, list[float]] = {"raw insert": [], "kodr's write set": [], "kodr's, WITHOUT ROWID events": []}
    with tempfile.TemporaryDirectory(prefix="kodr-bench-stmts-") as d:
        for r in range(args.repeats):  # interleaved, so a busy moment hits every variant
            times["raw insert"].append(raw(os.path.join(d, f"raw{r}.db"), trans))
            times["kodr's write set"].append(kodr(os.path.join(d, f"k{r}.db"), trans, "rowid"))
            times["kodr's, WITHOUT ROWID events"].append(kodr(os.path.join(d, f"w{r}.db"), trans, "without rowid"))
    us = {k: statistics.median(v) / len(trans) * 1e6 for k, v in times.items()}
    print(
        f"SQLite statements alone, {len(trans)} transitions of 1-3 events, medians of {args.repeats}, load {os.getloadavg()[0]:.1f}"
    )
    for k, v in us.items():
        print(f"  {k:30s} {v:7.1f} µs/transition   raw/this {us['raw insert'] / v:.2f}x")


if __name__ == "__main__":
    main()
