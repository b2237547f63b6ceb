"""Heal turns as whole processes: ``kodr heal`` against a naive loop that reinstalls and runs everything every turn.

    .venv/bin/python bench/heal_turn.py [--repeat N] [--delay S] [--sandbox auto|required|off] [--json]

Both sides are whole processes on a fresh copy of the same installed project,
``bench/node_project`` (see ``bench/_project.py``: four pinned npm dependencies, 94
packages from the committed lockfile, whose ``npm ci`` takes several seconds from a warm
cache; six test files, 18 tests; ``calc.js`` broken), and both call the same scripted
model over loopback HTTP, which answers every call after ``--delay`` seconds (default 2):
two repairs that change ``calc.js`` and still fail, then the fix. So each side runs turn 0
(install, the whole suite: fails) and three heal turns.

- **kodr**: the venv's ``kodr heal --install --test "node --test"`` (sandbox: kodr's
  default, ``auto``, unless ``--sandbox`` says otherwise). On a heal turn it skips the
  install (no dependency manifest changed) and runs the failing test file first; the whole
  suite only once that file passes. Checked from its events on every repeat.
- **naive**: ``bench/_naive_loop.py``, a separate Python process (standard library only):
  turn 0 installs and runs the suite; each heal turn calls the same server (not streamed),
  writes the reply's files, reinstalls with the command kodr's own install plan picks for
  the project (``npm ci --no-audit --no-fund --ignore-scripts``: there is a lockfile) and
  runs the whole suite (``node --test``). Unconfined. Checked: every install exits 0, the
  suite fails on turns 0–2 and passes on turn 3.

Turn boundaries are taken the same way on both sides, from the model server's clock: turn
0 is spawn to the first model request's arrival (start-up, install, suite, the first
prompt); heal turn k is the arrival of request k to the arrival of request k+1 (the
model's delay, writes, install or not, tests, the next prompt); the last heal turn ends
at the process's exit. **Time per heal turn** is the mean of the three heal turns of one
process; its median over the repeats is the figure, with the ratio kodr / naive (target
<= 0.5, issue 8). Whole-process wall times and turn 0 are printed beside it, so start-up
is in the comparison (on both sides: both are cold processes).

Repeats alternate kodr and naive processes. Medians of ``--repeat`` (default 5).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _project import (  # noqa: E402 - after the sys.path set-up
    REPAIRS,
    TEST_COMMAND,
    ModelServer,
    bench_args,
    check_heal_run,
    fresh_workspace,
    install_argv,
    load_events,
    machine,
    machine_line,
    run_kodr,
    run_process,
    template,
    ts,
)

NAIVE = Path(__file__).resolve().parent / "_naive_loop.py"
TARGET_RATIO = 0.5
TURNS = len(REPAIRS)


def turn_times(spawned_at: float, exited_at: float, arrivals: list[float]) -> list[float]:
    """[turn 0, heal turn 1, …] in ms, cut at the model requests' arrivals."""
    if len(arrivals) != TURNS:
        raise SystemExit(f"expected {TURNS} model calls, the server saw {len(arrivals)}")
    cuts = [spawned_at, *arrivals, exited_at]
    return [(b - a) * 1000 for a, b in zip(cuts, cuts[1:], strict=False)]


def kodr_side(tpl: Path, work: Path, delay_s: float, sandbox: str | None) -> dict[str, Any]:
    ws = fresh_workspace(tpl, work / "kodr")
    with ModelServer(delay_s) as srv:
        proc = run_kodr(ws, srv.base_url, sandbox=sandbox)
    records = load_events(ws, proc.result["run_id"])
    check_heal_run(proc, records)
    turns = turn_times(proc.spawned_at, proc.exited_at, srv.arrivals)
    parts = []
    for k in range(1, TURNS + 1):
        mine = [r for r in records if getattr(r.event, "turn", None) == k]
        tests = {r.event.scope: r.event.result.get("durationMs") or 0 for r in mine if r.type == "TestsFinished"}
        model = sum(r.event.duration_ms for r in mine if r.type == "ModelCallCompleted")
        part = {"model_ms": model, "failing_file_ms": tests.get("failing", 0), "full_suite_ms": tests.get("full", 0)}
        # writes, prompts, events, process handling (and the exit, on the last turn)
        part["rest_ms"] = turns[k] - sum(part.values())
        parts.append(part)
    confined = next((r.event.confinement.get("sandbox") for r in records if r.type == "TestsStarted"), None)
    return {
        "wall_ms": proc.wall_s * 1000,
        "turns_ms": turns,
        "heal_turn_ms": statistics.mean(turns[1:]),
        "startup_ms": (ts(records[0].recorded_at) - proc.spawned_at) * 1000,
        "parts": parts,
        "confinement": confined,
    }


def naive_side(tpl: Path, work: Path, delay_s: float, install: list[str]) -> dict[str, Any]:
    ws = fresh_workspace(tpl, work / "naive")
    with ModelServer(delay_s) as srv:
        argv = [sys.executable, str(NAIVE), "--url", srv.base_url, "--install", shlex.join(install),
                "--test", TEST_COMMAND, "--max-turns", str(TURNS)]  # fmt: skip
        proc = run_process(argv, ws)
    try:
        rows = json.loads(proc.stdout)["turns"]
    except (ValueError, KeyError):
        raise SystemExit(f"the naive loop printed no result (exit {proc.returncode}):\n{proc.stderr[-2000:]}") from None
    exits = [(r["install_exit"], r.get("suite_exit")) for r in rows]
    expected = [(0, "fail")] * TURNS + [(0, 0)]
    if len(rows) != TURNS + 1 or [(i, s if s == 0 else "fail") for i, s in exits] != expected:
        raise SystemExit(f"the naive loop's turns did not go as scripted (install, suite exits): {exits}")
    turns = turn_times(proc.spawned_at, proc.exited_at, srv.arrivals)
    parts = [{"install_ms": r["install_ms"], "suite_ms": r["suite_ms"]} for r in rows[1:]]
    for k, part in enumerate(parts, start=1):
        part["model_and_rest_ms"] = turns[k] - part["install_ms"] - part["suite_ms"]
    return {
        "wall_ms": proc.wall_s * 1000,
        "turns_ms": turns,
        "heal_turn_ms": statistics.mean(turns[1:]),
        "parts": parts,
    }


def main(argv: list[str] | None = None) -> int:
    args, say = bench_args(__doc__, argv, repeat_help="processes per side, interleaved", delay_s=2.0)
    m = machine()
    root = Path(tempfile.mkdtemp(prefix="kodr-bench-heal-"))
    kodr_rows: list[dict[str, Any]] = []
    naive_rows: list[dict[str, Any]] = []
    try:
        say("setup: npm ci of bench/node_project into a template (not measured) …")
        tpl = template(root)
        install = install_argv(tpl)
        for i in range(args.repeat):
            work = root / f"r{i}"
            work.mkdir()
            kodr_rows.append(kodr_side(tpl, work, args.delay, args.sandbox))
            naive_rows.append(naive_side(tpl, work, args.delay, install))
            k, n = kodr_rows[-1], naive_rows[-1]
            say(
                f"  repeat {i + 1}/{args.repeat}: per heal turn kodr {k['heal_turn_ms']:.0f} ms, naive "
                f"{n['heal_turn_ms']:.0f} ms; whole process kodr {k['wall_ms']:.0f} ms, naive {n['wall_ms']:.0f} ms"
            )
            shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    m["load_after"] = [round(x, 2) for x in os.getloadavg()]

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    def med_turns(rows: list[dict[str, Any]]) -> list[float]:
        return [statistics.median(r["turns_ms"][t] for r in rows) for t in range(TURNS + 1)]

    def med_parts(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
        return [
            {key: statistics.median(r["parts"][t][key] for r in rows) for key in rows[0]["parts"][t]}
            for t in range(TURNS)
        ]

    k_turn, n_turn = med(kodr_rows, "heal_turn_ms"), med(naive_rows, "heal_turn_ms")
    ratios = [k["heal_turn_ms"] / n["heal_turn_ms"] for k, n in zip(kodr_rows, naive_rows, strict=True)]
    figures = {
        **m,
        "repeat": args.repeat,
        "model_delay_s": args.delay,
        "naive_install": shlex.join(install),
        "sandbox_flag": args.sandbox or "default (auto)",
        "confinement": kodr_rows[0]["confinement"],
        "kodr": {
            "heal_turn_ms": k_turn,
            "turns_ms": med_turns(kodr_rows),
            "wall_ms": med(kodr_rows, "wall_ms"),
            "startup_ms": med(kodr_rows, "startup_ms"),
            "parts": med_parts(kodr_rows),
        },
        "naive": {
            "heal_turn_ms": n_turn,
            "turns_ms": med_turns(naive_rows),
            "wall_ms": med(naive_rows, "wall_ms"),
            "parts": med_parts(naive_rows),
        },
        "ratio_heal_turn": k_turn / n_turn,
        "ratio_heal_turn_paired_median": statistics.median(ratios),
        "ratio_wall": med(kodr_rows, "wall_ms") / med(naive_rows, "wall_ms"),
        "target": [TARGET_RATIO, k_turn / n_turn <= TARGET_RATIO],
        "runs": {
            "kodr_heal_turn_ms": [round(r["heal_turn_ms"]) for r in kodr_rows],
            "naive_heal_turn_ms": [round(r["heal_turn_ms"]) for r in naive_rows],
            "kodr_wall_ms": [round(r["wall_ms"]) for r in kodr_rows],
            "naive_wall_ms": [round(r["wall_ms"]) for r in naive_rows],
        },
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    k, n = figures["kodr"], figures["naive"]
    print(f"\nheal turns as whole processes, medians of {args.repeat} (model delay {args.delay:g} s both sides; "
          f"kodr sandbox {figures['sandbox_flag']} → {figures['confinement']}, naive unconfined)")  # fmt: skip
    print(machine_line(m))
    print(f"  {'':34} {'kodr':>10} {'naive':>10}")
    labels = ["turn 0 (start, install, suite)"] + [f"heal turn {t} ({REPAIRS[t - 1][0]})" for t in range(1, TURNS + 1)]
    for t, label in enumerate(labels):
        print(f"  {label:<34} {k['turns_ms'][t]:7.0f} ms {n['turns_ms'][t]:7.0f} ms")
    print(f"  {'per heal turn (mean of 3)':<34} {k_turn:7.0f} ms {n_turn:7.0f} ms   ratio kodr/naive "
          f"{figures['ratio_heal_turn']:.2f}x (paired {figures['ratio_heal_turn_paired_median']:.2f}x), "
          f"target ≤ {TARGET_RATIO:g}x: {'yes' if figures['target'][1] else 'NO'}")  # fmt: skip
    print(f"  {'whole process':<34} {k['wall_ms']:7.0f} ms {n['wall_ms']:7.0f} ms   ratio {figures['ratio_wall']:.2f}x")
    print(f"  kodr start-up (spawn → first event) {k['startup_ms']:.0f} ms")
    for t in range(TURNS):
        kp, np_ = k["parts"][t], n["parts"][t]
        print(f"  heal turn {t + 1}: kodr = model {kp['model_ms']:.0f} + failing file {kp['failing_file_ms']:.0f}"
              f" + full suite {kp['full_suite_ms']:.0f} + the rest {kp['rest_ms']:.0f} (install skipped); naive = "
              f"`npm ci` {np_['install_ms']:.0f} + suite {np_['suite_ms']:.0f} + model and the rest "
              f"{np_['model_and_rest_ms']:.0f}")  # fmt: skip
    print(
        f"  per repeat, per heal turn: kodr {figures['runs']['kodr_heal_turn_ms']} ms, naive {figures['runs']['naive_heal_turn_ms']} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
