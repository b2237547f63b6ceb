"""The event store against its baselines, measured in the same run: ``python -m bench.store``.

* append: 10k events in transitions of 1-3 events (a heal turn's shape), hash chain,
  legality check and ``runs`` projection included, one commit per transition, on
  SQLite (WAL, synchronous=FULL) and PostgreSQL; against a raw insert of the same
  rows with one commit per transition at the same durability (sqlite3 / psycopg),
  and against ``eventsourcing``'s SQLite/PostgreSQL aggregate recorders (the bench
  installs nothing: ``uv pip install 'eventsourcing[postgres]'`` first, else those
  rows are skipped);
  beside them, rows that are no target's baseline but say what the gap is made of: on
  SQLite the raw insert doing the chain's work in its loop, and on both the design's
  whole write (chain, ``runs`` compare-and-set, head anchor) done by the driver without
  kodr's code, the floor under any implementation of the design;
* flat: kodr's append cost with 0, 100k and 1M events already in the store (filled by
  a bulk insert);
* fold and replay events/s, and a streamed replay of a 100k-event run in a fresh
  process with its peak RSS, beside a raw streaming reader (sqlite3 + json.loads).

``--quick`` shrinks every size tenfold. Writes nothing; paste the output into
bench/RESULTS.md under ``## Store``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from kodr_core import events as ev
from kodr_core.aggregate import fold
from store.database import open_store, upgrade
from store.event_store import EventStore, utc_iso
from store.hashchain import GENESIS, canonical_bytes, chain_hash
from store.queries import EVENT_COLUMNS

PG_URL = os.environ.get("KODR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RUN_EVENTS = 1000  # each run of the workload: a run this long appends as fast as a short one

Transition = list[ev.Event]


# -- the workload ---------------------------------------------------------------------


def _result(ok: bool) -> dict[str, object]:
    return {
        "ok": ok,
        "exitCode": 0 if ok else 1,
        "passed": 4,
        "failed": 0 if ok else 1,
        "durationMs": 812,
        "command": "npm test",
        "failures": [],
    }


def turn(k: int) -> list[Transition]:
    """One heal turn from ``verifying`` back to ``verifying``: 12 events in 8 transitions."""
    key = f"t{k}"
    sha = f"{k:064x}"[-64:]
    files = [{"path": "src/slug.js", "sha256": sha, "bytes": 120}]
    return [
        [
            ev.StateChanged(
                from_state="verifying",
                to_state="healing",
                trigger="heal",
                heal_turn=k,
                facts={"failed": 1},
            )
        ],
        [
            ev.ModelCallStarted(
                purpose="repair",
                turn=k,
                attempt=1,
                key=f"model:{key}",
                request_blob=sha,
                allowed_paths=["src/slug.js"],
            )
        ],
        [
            ev.ModelCallCompleted(
                purpose="repair",
                turn=k,
                attempt=1,
                key=f"model:{key}",
                response_blob=sha,
                duration_ms=900,
                usage={"prompt_tokens": 900},
            ),
            ev.ProposalAccepted(purpose="repair", turn=k, summary="fix the slug", files=files),
        ],
        [
            ev.WritesStarted(turn=k, attempt=1, key=f"writes:{key}", files=files),
            ev.WritesApplied(turn=k, key=f"writes:{key}", files=files, manifest={"src/slug.js": sha}),
        ],
        [
            ev.StateChanged(from_state="healing", to_state="installing", trigger="install", heal_turn=k),
            ev.InstallStarted(turn=k, attempt=1, key=f"install:{key}", commands=[["npm", "ci"]]),
        ],
        [
            ev.InstallFinished(turn=k, attempt=1, key=f"install:{key}", result=_result(True)),
            ev.StateChanged(from_state="installing", to_state="verifying", trigger="verify", heal_turn=k),
        ],
        [ev.TestsStarted(turn=k, attempt=1, key=f"tests:{key}", command=["npm", "test"])],
        [ev.TestsFinished(turn=k, attempt=1, key=f"tests:{key}", result=_result(False))],
    ]


def run_transitions(n_events: int) -> list[Transition]:
    """A legal run of about ``n_events`` events, as the transitions it is appended in."""
    out: list[Transition] = [
        [ev.RunRequested(task="slugify titles", workspace="/ws", options={"max_turns": 3})],
        [ev.StateChanged(from_state="requested", to_state="applied", trigger="adopt")],
        [ev.StateChanged(from_state="applied", to_state="verifying", trigger="verify")],
    ]
    k, count = 1, 3
    while count < n_events:
        for t in turn(k):
            out.append(t)
            count += len(t)
        k += 1
    return out


def workload(total: int) -> list[tuple[str, int, Transition]]:
    """``total`` events over runs of RUN_EVENTS, as (run_id, expected_seq, events) appends."""
    appends = []
    done = 0
    while done < total:
        rid = uuid.uuid4().hex[:12]
        seq = 0
        for t in run_transitions(min(RUN_EVENTS, total - done)):
            appends.append((rid, seq, t))
            seq += len(t)
        done += seq
    return appends


def _rows(rid: str, seq: int, events: Transition, at: str, prev: str) -> tuple[list[dict], str]:
    rows = []
    for s, e in enumerate(events, start=seq + 1):
        body = canonical_bytes(rid, s, e.TYPE, e.VERSION, at, e.payload())
        prev_hash, prev = prev, chain_hash(prev, body)
        rows.append(
            {
                "run_id": rid,
                "seq": s,
                "type": e.TYPE,
                "schema_version": e.VERSION,
                "recorded_at": at,
                "body": body.decode(),
                "prev_hash": prev_hash,
                "hash": prev,
            }
        )
    return rows, prev


# -- the systems ------------------------------------------------------------------------


def kodr_append(store: EventStore, appends: list[tuple[str, int, Transition]]) -> float:
    t = time.perf_counter()
    for rid, seq, events in appends:
        store.append(rid, seq, events)
    return time.perf_counter() - t


def raw_sqlite_append(path: Path, appends: list[tuple[str, int, Transition]]) -> float:
    """sqlite3, WAL + synchronous=FULL, one executemany + commit per transition."""
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS raw_events (id INTEGER PRIMARY KEY, run_id TEXT, seq INT, "
        "type TEXT, body TEXT, UNIQUE(run_id, seq))"
    )
    payloads = [(rid, seq, [(e.TYPE, json.dumps(e.payload())) for e in events]) for rid, seq, events in appends]
    t = time.perf_counter()
    for rid, seq, events in payloads:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO raw_events (run_id, seq, type, body) VALUES (?, ?, ?, ?)",
            [(rid, seq + i, typ, body) for i, (typ, body) in enumerate(events, start=1)],
        )
        db.execute("COMMIT")
    dt = time.perf_counter() - t
    db.close()
    return dt


def raw_chain_sqlite_append(path: Path, appends: list[tuple[str, int, Transition]]) -> float:
    """The raw insert doing the chain's per-event work inside the timing: payload, canonical JSON,
    sha256, then the same executemany + commit per transition (a hash column more). Not a target's
    baseline: it shows how much of kodr's gap to raw is that work, which raw does outside the timing."""
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS raw_events (id INTEGER PRIMARY KEY, run_id TEXT, seq INT, "
        "type TEXT, body TEXT, hash TEXT, UNIQUE(run_id, seq))"
    )
    heads: dict[str, str] = {}
    t = time.perf_counter()
    for rid, seq, events in appends:
        rows, heads[rid] = _rows(rid, seq, events, utc_iso(datetime.now(UTC)), heads.get(rid, GENESIS))
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO raw_events (run_id, seq, type, body, hash) VALUES (?, ?, ?, ?, ?)",
            [(r["run_id"], r["seq"], r["type"], r["body"], r["hash"]) for r in rows],
        )
        db.execute("COMMIT")
    dt = time.perf_counter() - t
    db.close()
    return dt


@dataclass
class FloorStep:
    """One transition as the design writes it: the chained rows, the run's state before and after."""

    run_id: str
    seq: int  # the seq it follows
    at: str
    rows: list[tuple[object, ...]]  # in the events table's column order (writer, lease epoch: none)
    prev: str  # the hash it follows
    head: str  # the hash it ends at
    before: str
    after: str

    @property
    def last_seq(self) -> int:
        return self.seq + len(self.rows)

    def new_run(self) -> tuple[object, ...]:
        return (self.run_id, self.after, self.last_seq, self.head, self.at, self.at)

    def cas(self) -> tuple[object, ...]:
        """The parameters of kodr's compare-and-set of the ``runs`` row, in its order."""
        return (
            self.after,
            0,
            None,
            None,
            self.last_seq,
            self.at,
            self.head,
            self.run_id,
            self.seq,
            self.prev,
            self.before,
        )


def floor_steps(appends: list[tuple[str, int, Transition]]) -> Iterator[FloorStep]:
    """The appends as the design writes them, chained in the loop (payload, canonical JSON, sha256)."""
    last: dict[str, tuple[str, str]] = {}  # run -> (hash, state)
    for rid, seq, events in appends:
        at = utc_iso(datetime.now(UTC))
        prev, before = last.get(rid, (GENESIS, "requested"))
        rows, head = _rows(rid, seq, events, at, prev)
        after = next((e.to_state for e in reversed(events) if isinstance(e, ev.StateChanged)), before)
        last[rid] = (head, after)
        yield FloorStep(rid, seq, at, [tuple(r.get(c) for c in EVENT_COLUMNS) for r in rows], prev, head, before, after)


_FLOOR_RUN = "INSERT INTO runs (run_id, state, last_seq, last_hash, created_at, updated_at) VALUES ({m}, {m}, {m}, {m}, {m}, {m})"


def floor_sqlite_append(path: Path, anchors: Path, appends: list[tuple[str, int, Transition]]) -> float:
    """The design's whole write per transition, without kodr's code: the floor of any store that
    does what DESIGN.md and the audit ask. sqlite3 on kodr's own schema (built by its migrations):
    the chained rows built in the loop, ``BEGIN IMMEDIATE``, the ``runs`` row inserted or advanced
    by kodr's compare-and-set (seq, hash, state) in the same transaction, the insert, ``COMMIT``,
    then the head anchor file. No transition check, records, remembered heads or error handling.
    Not a target's baseline: kodr/this is what kodr's own code costs."""
    import sqlite3

    from store.anchors import HeadAnchors
    from store.event_store import _hot_sql

    sql = _hot_sql("?")  # kodr's own statements
    with open_store(f"sqlite:///{path}"):
        pass
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    heads = HeadAnchors(anchors)
    t = time.perf_counter()
    for step in floor_steps(appends):
        db.execute("BEGIN IMMEDIATE")
        if step.seq == 0:
            db.execute(_FLOOR_RUN.format(m="?"), step.new_run())
        elif db.execute(sql.cas, step.cas()).rowcount != 1:
            raise SystemExit("the compare-and-set missed: the benchmark is broken")
        db.executemany(sql.insert, step.rows)
        db.execute("COMMIT")
        heads.write(step.run_id, step.last_seq, step.head)
    dt = time.perf_counter() - t
    db.close()
    return dt


def floor_pg_append(url: str, schema: str, anchors: Path, appends: list[tuple[str, int, Transition]]) -> float:
    """The same floor on PostgreSQL (see :func:`floor_sqlite_append`), in a migrated schema of its
    own: one autocommitted statement per transition, the one kodr's held path sends."""
    import psycopg

    from store.anchors import HeadAnchors
    from store.event_store import _hot_sql, _pg_one

    sql = _hot_sql("%s")
    heads = HeadAnchors(anchors)
    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, options=f"-csearch_path={schema}", autocommit=True) as conn:
        statements: dict[int, str] = {}
        t = time.perf_counter()
        for step in floor_steps(appends):
            n = len(step.rows)
            if step.seq == 0:
                with conn.transaction():
                    conn.execute(_FLOOR_RUN.format(m="%s"), step.new_run())
                    conn.cursor().executemany(sql.insert, step.rows)
            elif (
                conn.execute(
                    statements.get(n) or statements.setdefault(n, _pg_one(sql, n, False)),
                    (*step.cas(), *(v for r in step.rows for v in r)),
                ).rowcount
                != n
            ):
                raise SystemExit("the compare-and-set missed: the benchmark is broken")
            heads.write(step.run_id, step.last_seq, step.head)
        return time.perf_counter() - t


def raw_pg_append(url: str, schema: str, appends: list[tuple[str, int, Transition]]) -> float:
    """psycopg 3, one executemany + commit per transition (synchronous_commit on)."""
    import psycopg

    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, options=f"-csearch_path={schema}") as conn:
        conn.execute(
            "CREATE TABLE raw_events (id BIGSERIAL PRIMARY KEY, run_id TEXT, seq INT, "
            "type TEXT, body TEXT, UNIQUE(run_id, seq))"
        )
        conn.commit()
        payloads = [(rid, seq, [(e.TYPE, json.dumps(e.payload())) for e in events]) for rid, seq, events in appends]
        t = time.perf_counter()
        for rid, seq, events in payloads:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO raw_events (run_id, seq, type, body) VALUES (%s, %s, %s, %s)",
                    [(rid, seq + i, typ, body) for i, (typ, body) in enumerate(events, start=1)],
                )
            conn.commit()
        return time.perf_counter() - t


def _stored(appends: list[tuple[str, int, Transition]]) -> list[list[object]]:
    from eventsourcing.persistence import StoredEvent

    ids: dict[str, uuid.UUID] = {}
    out = []
    for rid, seq, events in appends:
        oid = ids.setdefault(rid, uuid.uuid4())
        out.append(
            [
                StoredEvent(
                    originator_id=oid,
                    originator_version=seq + i,
                    topic=e.TYPE,
                    state=json.dumps(e.payload()).encode(),
                )
                for i, e in enumerate(events, start=1)
            ]
        )
    return out


def es_sqlite_append(path: Path, appends: list[tuple[str, int, Transition]]) -> float:
    from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteDatastore

    recorder = SQLiteAggregateRecorder(SQLiteDatastore(str(path)))
    recorder.create_table()
    batches = _stored(appends)
    t = time.perf_counter()
    for batch in batches:
        recorder.insert_events(batch)
    return time.perf_counter() - t


def es_pg_append(url: str, schema: str, appends: list[tuple[str, int, Transition]]) -> float:
    from eventsourcing.postgres import PostgresAggregateRecorder, PostgresDatastore

    u = sa.make_url(url)
    ds = PostgresDatastore(
        dbname=u.database or "",
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username or "",
        password=u.password or "",
        schema=schema,
    )
    recorder = PostgresAggregateRecorder(ds)
    recorder.create_table()
    batches = _stored(appends)
    t = time.perf_counter()
    for batch in batches:
        recorder.insert_events(batch)
    dt = time.perf_counter() - t
    ds.close()
    return dt


# -- places to measure in ------------------------------------------------------------------


class PgSchema:
    """A fresh schema on the test server, dropped afterwards."""

    def __init__(self) -> None:
        self.name = f"kodr_bench_{uuid.uuid4().hex[:8]}"
        self.admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")

    def __enter__(self) -> PgSchema:
        with self.admin.connect() as c:
            c.exec_driver_sql(f'CREATE SCHEMA "{self.name}"')
        return self

    @property
    def url(self) -> str:
        u = sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={self.name}"})
        return u.render_as_string(hide_password=False)

    def __exit__(self, *_: object) -> None:
        with self.admin.connect() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{self.name}" CASCADE')
        self.admin.dispose()


def fill(store: EventStore, n: int) -> None:
    """``n`` events (valid chains, runs of RUN_EVENTS) by bulk insert: the store's prior history."""
    from store.schema import events as events_table
    from store.schema import runs as runs_table

    template = [e for t in run_transitions(RUN_EVENTS) for e in t]
    at = utc_iso(store._clock())
    done = 0
    while done < n:
        batch_rows: list[dict] = []
        run_rows = []
        while len(batch_rows) < 50_000 and done < n:
            rid = uuid.uuid4().hex[:12]
            m = min(len(template), n - done)
            rows, last = _rows(rid, 0, template[:m], at, GENESIS)
            batch_rows += rows
            run_rows.append(
                {
                    "run_id": rid,
                    "state": "verifying",
                    "last_seq": m,
                    "last_hash": last,
                    "created_at": at,
                    "updated_at": at,
                }
            )
            done += m
        with store.transaction(write=True) as conn:
            conn.execute(events_table.insert(), batch_rows)
            conn.execute(runs_table.insert(), run_rows)
    if not n:
        return
    # The fill is set-up: its deferred work (vacuum, the checkpoint of its WAL) is done before
    # measuring, as autovacuum and the checkpointer would have done in a store that grew slowly.
    # Without the checkpoint the first appends after a 1M fill ran at a tenth of the rate.
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if store.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("VACUUM ANALYZE events")
            conn.exec_driver_sql("VACUUM ANALYZE runs")
            conn.exec_driver_sql("CHECKPOINT")
        else:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def backend(name: str, tmp: Path) -> Iterator[tuple[str, str | None]]:
    """(url, pg schema) for a fresh store on ``name``."""
    if name == "sqlite":
        yield f"sqlite:///{tmp / f'kodr-{uuid.uuid4().hex[:6]}.db'}", None
    else:
        with PgSchema() as pg:
            upgrade(pg.url)
            yield pg.url, pg.name


# -- the measurements ---------------------------------------------------------------------


def median_rate(fn: Callable[[], float], events: int, repeats: int) -> float:
    return statistics.median(events / fn() for _ in range(repeats))


def bench_append(name: str, n: int, repeats: int, tmp: Path, have_es: bool) -> dict[str, float]:
    appends = workload(n)
    rates: dict[str, list[float]] = {"kodr": [], "raw": [], "eventsourcing": [], "raw+chain": [], "floor": []}
    for _ in range(repeats):  # interleaved, so a busy moment hits every system
        for url, schema in backend(name, tmp):
            with open_store(url, anchor_dir=tmp / "runs") as s:
                rates["kodr"].append(n / kodr_append(s, appends))
            if name == "sqlite":
                rates["raw"].append(n / raw_sqlite_append(tmp / f"raw-{uuid.uuid4().hex[:6]}.db", appends))
                rates["raw+chain"].append(n / raw_chain_sqlite_append(tmp / f"rc-{uuid.uuid4().hex[:6]}.db", appends))
                rates["floor"].append(
                    n / floor_sqlite_append(tmp / f"fl-{uuid.uuid4().hex[:6]}.db", tmp / "fl-runs", appends)
                )
                if have_es:
                    rates["eventsourcing"].append(n / es_sqlite_append(tmp / f"es-{uuid.uuid4().hex[:6]}.db", appends))
            else:
                assert schema is not None
                rates["raw"].append(n / raw_pg_append(url, schema, appends))
                with PgSchema() as fl:
                    upgrade(fl.url)
                    rates["floor"].append(n / floor_pg_append(fl.url, fl.name, tmp / "fl-runs", appends))
                if have_es:
                    rates["eventsourcing"].append(n / es_pg_append(url, schema, appends))
    return {k: statistics.median(v) for k, v in rates.items() if v}


def bench_flat(name: str, sizes: list[int], n: int, tmp: Path) -> dict[int, float]:
    out = {}
    for url, _ in backend(name, tmp):
        with open_store(url, anchor_dir=tmp / "runs-flat") as s:
            have = 0
            for size in sizes:
                fill(s, size - have)
                have = size
                appends = workload(n)
                out[size] = n / kodr_append(s, appends)
                have += n
    return out


def bench_fold(n: int) -> dict[str, float]:
    recs = []
    rid, seq = "fold", 0
    for t in run_transitions(n):
        for e in t:
            seq += 1
            recs.append(ev.RecordedEvent(rid, seq, e, "2026-11-26T00:00:00.000000Z"))
    t0, c0 = time.perf_counter(), time.process_time()
    fold(rid, recs)
    return {
        "events": len(recs),
        "fold_per_s": len(recs) / (time.perf_counter() - t0),
        "fold_cpu_per_s": len(recs) / (time.process_time() - c0),
    }


_CHILD = r"""
import json, sys, time
mode, url, rid = sys.argv[1:4]
def hwm():  # peak RSS of this process image, in KiB (ru_maxrss would include the forking parent)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
base = hwm()
t, c = time.perf_counter(), time.process_time()
if mode == "kodr":
    from adapters.replay import check
    from store.database import open_store
    s = open_store(url)
    base = hwm()
    t, c = time.perf_counter(), time.process_time()
    report = check(rid, s.iter_events(rid))
    n, ok = report.events, report.ok
elif mode == "kodr-load":
    from adapters.replay import check
    from store.database import open_store
    s = open_store(url)
    base = hwm()
    t, c = time.perf_counter(), time.process_time()
    report = check(rid, s.load(rid))
    n, ok = report.events, report.ok
else:
    import sqlite3
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    n = 0
    for (body,) in db.execute("SELECT body FROM events WHERE run_id=? ORDER BY seq", (rid,)):
        json.loads(body); n += 1
    ok = True
dt, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"events": n, "ok": ok, "s": dt, "cpu_s": cpu,
                  "peak_mib": hwm() / 1024, "growth_mib": (hwm() - base) / 1024}))
"""


def bench_replay(n: int, tmp: Path) -> dict[str, dict[str, float]]:
    """One legal run of ``n`` events (bulk-inserted), replayed in a fresh process per reader."""
    from store.schema import events as events_table
    from store.schema import runs as runs_table

    url = f"sqlite:///{tmp / 'replay.db'}"
    rid = "long-run"
    with open_store(url) as s:
        at, prev, seq = utc_iso(s._clock()), GENESIS, 0
        batch: list[dict] = []
        for t in run_transitions(n):
            rows, prev = _rows(rid, seq, t, at, prev)
            batch += rows
            seq += len(t)
            if len(batch) >= 20_000:
                with s.transaction(write=True) as conn:
                    conn.execute(events_table.insert(), batch)
                batch = []
        with s.transaction(write=True) as conn:
            if batch:
                conn.execute(events_table.insert(), batch)
            conn.execute(
                runs_table.insert().values(
                    run_id=rid,
                    state="verifying",
                    last_seq=seq,
                    last_hash=prev,
                    created_at=at,
                    updated_at=at,
                )
            )
    out = {}
    root = str(Path(__file__).resolve().parent.parent)
    for mode in ("raw-reader", "kodr", "kodr-load"):
        p = subprocess.run(
            [sys.executable, "-c", _CHILD, mode, url, rid],
            capture_output=True,
            text=True,
            cwd=root,
            check=True,
        )
        out[mode] = json.loads(p.stdout)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every size / 10")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--only", choices=["append", "flat", "fold", "replay"], default=None)
    ap.add_argument("--sizes", default="0,100000,1000000", help="events already stored, for the flat test")
    args = ap.parse_args()
    div = 10 if args.quick else 1
    n = 10_000 // div
    sizes = [int(x) // div for x in args.sizes.split(",")]
    try:
        import eventsourcing  # noqa: F401

        have_es = True
    except ImportError:
        have_es = False
        print("eventsourcing is not installed: its rows are skipped (uv pip install 'eventsourcing[postgres]')")
    backends = ["sqlite"] + ([] if args.no_postgres else ["postgres"])
    print(f"# kodr store bench — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cpu, {platform.platform()}, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="kodr-bench-") as d:
        tmp = Path(d)
        for name in backends if args.only in (None, "append") else []:
            r = bench_append(name, n, args.repeats, tmp, have_es)
            line = (
                f"append {name}: {n} events in transitions of 1-3, median of {args.repeats}: kodr {r['kodr']:,.0f} ev/s"
            )
            line += f", raw {r['raw']:,.0f} ev/s (kodr/raw {r['kodr'] / r['raw']:.2f}x)"
            if "eventsourcing" in r:
                line += f", eventsourcing {r['eventsourcing']:,.0f} ev/s (kodr/eventsourcing {r['kodr'] / r['eventsourcing']:.2f}x)"
            if "raw+chain" in r:  # not a target: the share of the gap that is the chain's per-event work
                line += f"; raw doing the chain's work in the loop {r['raw+chain']:,.0f} ev/s (kodr/that {r['kodr'] / r['raw+chain']:.2f}x)"
            if "floor" in r:  # not a target: the design's own write without kodr's code
                line += (
                    f"; the design's whole write without kodr's code {r['floor']:,.0f} ev/s "
                    f"(that/raw {r['floor'] / r['raw']:.2f}x, kodr/that {r['kodr'] / r['floor']:.2f}x)"
                )
            print(line, flush=True)
        for name in backends if args.only in (None, "flat") else []:
            flat = bench_flat(name, sizes, max(n // 5, 200), tmp)
            first = flat[sizes[0]]
            cells = ", ".join(f"{size:,} stored: {rate:,.0f} ev/s ({rate / first:.2f}x)" for size, rate in flat.items())
            print(f"flat {name}: {cells}", flush=True)
        if args.only in (None, "fold"):
            f = bench_fold(100_000 // div)
            print(
                f"fold: {f['events']:,} events in memory, {f['fold_per_s']:,.0f} ev/s wall, "
                f"{f['fold_cpu_per_s']:,.0f} ev/s of CPU"
            )
        replays = bench_replay(100_000 // div, tmp) if args.only in (None, "replay") else {}
        for mode, r in replays.items():
            print(
                f"replay {mode}: {r['events']:,} events, {r['events'] / r['s']:,.0f} ev/s wall "
                f"({r['events'] / r['cpu_s']:,.0f} of CPU), {r['s']:.2f} s, "
                f"peak RSS {r['peak_mib']:.0f} MiB (+{r['growth_mib']:.0f} MiB while replaying)"
            )


if __name__ == "__main__":
    main()
