"""Orchestration overhead: a whole ``kodr heal`` process against the same child commands run by a shell script.

    .venv/bin/python bench/orchestration.py [--repeat N] [--delay S] [--sandbox auto|required|off] [--json]

The project is ``bench/node_project`` (see ``bench/_project.py``): four pinned npm
dependencies (94 packages, lockfile committed), six test files, ``calc.js`` broken. The
run is ``kodr heal --install --test "node --test"`` (the venv's ``kodr`` script, as a user
runs it; sandbox: kodr's default, ``auto``, unless ``--sandbox`` says otherwise) against
the scripted model on loopback HTTP, which answers each call after ``--delay`` seconds
(default 1.0): two repairs that still fail, then the fix. So the run is: install (``npm
ci``), the full suite (fails), then three heal turns (model call, writes, install skipped,
the failing file; the full suite after the fix): 41 events.

**kodr's own time** is the process's wall time (spawn to exit, measured by this script)
minus the child processes' durations (the ``durationMs`` kodr recorded in each
``InstallFinished`` and ``TestsFinished``: the runner's clock around each child, bwrap
included when the sandbox is on) minus the model calls' durations (``duration_ms`` of each
``ModelCallCompleted``: kodr's clock around the HTTP call, i.e. the server's delay plus
the loopback HTTP). It is split into:

- **start-up**: spawn to the first event's ``recorded_at`` (imports, CLI, opening and
  migrating the store, the model server's ``GET /models``), a fixed cost per process;
- **in-run**: first to last event's ``recorded_at`` minus children and model (event
  appends, blobs, the fold, decide, repair context, prompts, sandbox set-up, the process
  runner's work around each child, artifact files);
- **shutdown**: last event's ``recorded_at`` to exit (the last append, final artifacts,
  interpreter exit).

Per event and % of wall are given for the whole own time and for in-run alone. Start-up is
also measured as ``bench/startup.py`` does it, beside ``python -c pass`` in the same
repeat: a whole ``kodr heal --help`` process (the CLI's imports only).

**The shell baseline** is a ``/bin/sh`` script written from the kodr run's own events: in
the order kodr ran them, the same install commands (``InstallStarted.commands``, kodr's
recorded plan: ``npm ci --no-audit --no-fund --ignore-scripts``), the same ``node --test``
invocations (``TestsStarted.command`` plus its ``files``), the same model calls and the
same writes. A model call is ``curl`` POSTing the exact request body kodr sent (as the
server received it) to a fresh scripted server with the same delay: curl is the cheapest
client a shell script has (a C binary, ~5–10 ms to start), so the baseline is the fastest
honest way to make those calls; a Python client would add an interpreter start per call.
A write is a ``cp`` of the file the reply carried. Output goes to a log file, as kodr
captures it. The script runs on a fresh copy of the same installed project. It does not
parse the test output, wrap children in bubblewrap or add Node's junit reporter (kodr does
all three), so those costs count against kodr in the ratio.

Repeats interleave kodr, shell, ``kodr heal --help``, ``python -c pass``; every figure is the
median of the repeats. Targets (issue 8): own time <= 2 ms per event and <= 2% of wall; the
kodr process within 1.2x of the shell script.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _project import (  # noqa: E402 - after the sys.path set-up
    KODR,
    REPAIRS,
    ModelServer,
    bench_args,
    check_heal_run,
    envelope,
    fresh_workspace,
    load_events,
    machine,
    machine_line,
    run_kodr,
    run_process,
    template,
    ts,
)

TARGET_MS_PER_EVENT = 2.0
TARGET_SHARE = 0.02
TARGET_RATIO = 1.2


def _bucket(rec: Any) -> str:
    e = rec.event
    return f"StateChanged {e.trigger}" if rec.type == "StateChanged" else rec.type


def kodr_figures(proc: Any, records: list[Any]) -> dict[str, Any]:
    """Split one kodr process's wall time into children, model calls and kodr's own time."""
    children_ms = sum(
        r.event.result.get("durationMs") or 0 for r in records if r.type in ("InstallFinished", "TestsFinished")
    )
    model_ms = sum(r.event.duration_ms for r in records if r.type == "ModelCallCompleted")
    first, last = ts(records[0].recorded_at), ts(records[-1].recorded_at)
    wall_ms = proc.wall_s * 1000
    own_ms = wall_ms - children_ms - model_ms
    startup_ms = (first - proc.spawned_at) * 1000
    shutdown_ms = (proc.exited_at - last) * 1000
    in_run_ms = (last - first) * 1000 - children_ms - model_ms
    # where the in-run own time goes: each gap between two events, minus the child or model call it
    # contains, charged to the event that ends it (the work kodr did to get to that event)
    where: dict[str, float] = defaultdict(float)
    for prev, cur in zip(records, records[1:], strict=False):
        gap = (ts(cur.recorded_at) - ts(prev.recorded_at)) * 1000
        if cur.type in ("InstallFinished", "TestsFinished"):
            gap -= cur.event.result.get("durationMs") or 0
        elif cur.type == "ModelCallCompleted":
            gap -= cur.event.duration_ms
        where[_bucket(cur)] += gap
    n = len(records)
    return {
        "events": n,
        "wall_ms": wall_ms,
        "children_ms": children_ms,
        "model_ms": model_ms,
        "own_ms": own_ms,
        "own_ms_per_event": own_ms / n,
        "own_share": own_ms / wall_ms,
        "startup_ms": startup_ms,
        "in_run_ms": in_run_ms,
        "in_run_ms_per_event": in_run_ms / n,
        "in_run_share": in_run_ms / wall_ms,
        "shutdown_ms": shutdown_ms,
        "where": dict(where),
        "confinement": next((r.event.confinement.get("sandbox") for r in records if r.type == "TestsStarted"), None),
    }


def shell_script(records: list[Any], bodies: list[dict[str, Any]], work: Path) -> str:
    """The child commands, model calls and writes of the kodr run, in its order, as a /bin/sh script."""
    lines = ["#!/bin/sh", 'URL="$1"', f"W={shlex.quote(str(work))}", 'LOG="$W/children.log"', ': >"$W/exits"']
    calls = 0
    for rec in records:
        e = rec.event
        if rec.type == "InstallStarted":
            lines += [f'{shlex.join(cmd)} >>"$LOG" 2>&1 || exit 10' for cmd in e.commands]
        elif rec.type == "ModelCallStarted":
            calls += 1
            (work / f"request_{calls}.json").write_text(json.dumps(bodies[calls - 1]))
            lines.append(
                f'curl -sS --fail -o "$W/reply_{calls}.json" -H "Content-Type: application/json" '
                f'--data-binary @"$W/request_{calls}.json" "$URL/chat/completions" || exit 11'
            )
        elif rec.type == "WritesApplied":
            reply = envelope(REPAIRS[e.turn - 1][1])
            for f in reply["files"]:
                src = work / f"files_{e.turn}" / f["path"]
                src.parent.mkdir(parents=True, exist_ok=True)
                src.write_text(f["content"])
                lines.append(f"cp {shlex.quote(str(src))} {shlex.quote(f['path'])}")
        elif rec.type == "TestsStarted":
            lines.append(f'{shlex.join([*e.command, *e.files])} >>"$LOG" 2>&1; echo $? >>"$W/exits"')
    if calls != len(bodies):
        raise SystemExit(f"the run made {calls} model calls but the server saw {len(bodies)}")
    return "\n".join(lines) + "\n"


def shell_run(tpl: Path, work: Path, script_of: Any, delay_s: float, expect_exits: list[int]) -> dict[str, Any]:
    ws = fresh_workspace(tpl, work / "ws")
    with ModelServer(delay_s) as srv:
        script = work / "baseline.sh"
        script.write_text(script_of(work))
        proc = run_process(["/bin/sh", str(script), srv.base_url], ws)
    exits = [int(x) for x in (work / "exits").read_text().split()]
    if (
        proc.returncode != 0
        or len(srv.arrivals) != len(REPAIRS)
        or [x != 0 for x in exits] != [x != 0 for x in expect_exits]
    ):
        log = (work / "children.log").read_text()[-2000:] if (work / "children.log").exists() else ""
        raise SystemExit(f"the shell baseline failed (exit {proc.returncode}, test exits {exits}):\n{log}")
    return {"wall_ms": proc.wall_s * 1000}


def main(argv: list[str] | None = None) -> int:
    args, say = bench_args(__doc__, argv, repeat_help="interleaved repeats", delay_s=1.0)
    m = machine()
    root = Path(tempfile.mkdtemp(prefix="kodr-bench-orch-"))
    rows: list[dict[str, Any]] = []
    try:
        say("setup: npm ci of bench/node_project into a template (not measured) …")
        tpl = template(root)
        for i in range(args.repeat):
            work = root / f"r{i}"
            work.mkdir()
            ws = fresh_workspace(tpl, work / "kodr")
            with ModelServer(args.delay) as srv:
                proc = run_kodr(ws, srv.base_url, sandbox=args.sandbox)
            records = load_events(ws, proc.result["run_id"])
            check_heal_run(proc, records)
            k = kodr_figures(proc, records)
            exits = [r.event.result.get("exitCode") for r in records if r.type == "TestsFinished"]
            shell_dir = work / "shell"
            shell_dir.mkdir()
            s = shell_run(tpl, shell_dir, lambda w, r=records, b=srv.bodies: shell_script(r, b, w), args.delay, exits)
            help_ms = run_process([str(KODR), "heal", "--help"], work).wall_s * 1000
            bare_ms = run_process([sys.executable, "-c", "pass"], work).wall_s * 1000
            rows.append({**k, "shell_wall_ms": s["wall_ms"], "ratio": k["wall_ms"] / s["wall_ms"],
                         "heal_help_ms": help_ms, "python_pass_ms": bare_ms})  # fmt: skip
            say(
                f"  repeat {i + 1}/{args.repeat}: kodr {k['wall_ms']:.0f} ms (own {k['own_ms']:.0f}, start-up "
                f"{k['startup_ms']:.0f}), shell {s['wall_ms']:.0f} ms, ratio {rows[-1]['ratio']:.2f}"
            )
            shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    m["load_after"] = [round(x, 2) for x in os.getloadavg()]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    keys = [k for k, v in rows[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    medians = {k: med(k) for k in keys}
    where = {b: statistics.median(r["where"].get(b, 0.0) for r in rows) for b in rows[0]["where"]}
    figures = {
        **m,
        "repeat": args.repeat,
        "model_delay_s": args.delay,
        "sandbox_flag": args.sandbox or "default (auto)",
        "confinement": rows[0]["confinement"],
        "medians": medians,
        "in_run_by_event": dict(sorted(where.items(), key=lambda kv: -kv[1])),
        "targets": {
            "own_ms_per_event": [TARGET_MS_PER_EVENT, medians["own_ms_per_event"] <= TARGET_MS_PER_EVENT],
            "own_share": [TARGET_SHARE, medians["own_share"] <= TARGET_SHARE],
            "ratio_to_shell": [TARGET_RATIO, medians["ratio"] <= TARGET_RATIO],
        },
        "runs": [{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items() if k != "where"} for r in rows],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    md = medians
    ok = {True: "yes", False: "NO"}
    print(f"\norchestration of a scripted heal run, medians of {args.repeat} (model delay {args.delay:g} s, "
          f"sandbox {figures['sandbox_flag']} → {figures['confinement']})")  # fmt: skip
    print(machine_line(m))
    print(f"  events                      {md['events']:.0f}")
    print(f"  kodr process wall           {md['wall_ms']:8.0f} ms")
    print(f"    child processes           {md['children_ms']:8.0f} ms  (InstallFinished/TestsFinished durationMs)")
    print(f"    model calls               {md['model_ms']:8.0f} ms  (ModelCallCompleted duration_ms)")
    print(f"    kodr's own time           {md['own_ms']:8.0f} ms  = {md['own_ms_per_event']:.2f} ms/event, "
          f"{md['own_share']:.1%} of wall   targets ≤ {TARGET_MS_PER_EVENT:g} ms/event: "
          f"{ok[md['own_ms_per_event'] <= TARGET_MS_PER_EVENT]}, ≤ {TARGET_SHARE:.0%}: {ok[md['own_share'] <= TARGET_SHARE]}")  # fmt: skip
    print(f"      start-up                {md['startup_ms']:8.0f} ms  (spawn → first event)")
    print(f"      in-run                  {md['in_run_ms']:8.0f} ms  = {md['in_run_ms_per_event']:.2f} ms/event, "
          f"{md['in_run_share']:.1%} of wall")  # fmt: skip
    print(f"      shutdown                {md['shutdown_ms']:8.0f} ms  (last event → exit)")
    print(f"  shell script, same children {md['shell_wall_ms']:8.0f} ms  (kodr's children + model calls: "
          f"{md['children_ms'] + md['model_ms']:.0f} ms)")  # fmt: skip
    print(
        f"  ratio kodr / shell          {md['ratio']:8.2f}x     target ≤ {TARGET_RATIO:g}x: {ok[md['ratio'] <= TARGET_RATIO]}"
    )
    print(
        f"  `kodr heal --help` process  {md['heal_help_ms']:8.0f} ms  (`python -c pass` {md['python_pass_ms']:.0f} ms)"
    )
    top = list(figures["in_run_by_event"].items())[:6]
    print("  in-run own time by the event it leads to: " + ", ".join(f"{b} {v:.0f} ms" for b, v in top))
    print(
        f"  per repeat: kodr {[r['wall_ms'] for r in figures['runs']]} ms, shell {[r['shell_wall_ms'] for r in figures['runs']]} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
