"""Benchmark one heal turn: kodr's turn against a naive reinstall-and-rerun-everything turn.

    .venv/bin/python bench/heal_turn.py [--repeat N] [--turn fixing|still-failing]
                                        [--install-cmd install|plan] [--json] [--keep DIR]

The project is a real Node project with one real npm dependency (is-number@7.0.0,
installed from the registry once, before anything is measured) and six test files
of which one fails (``calc.test.js``: ``add`` subtracts). One heal turn is the turn
whose repair fixes ``calc.js``.

kodr's turn runs through kodr's real engine (``Engine`` with ``ProcessToolchain``,
``DiskWorkspace``, an SQLite event store from ``open_store`` and an
``ArtifactWriter``, as the CLI wires it; the model is ``ScriptedModel``, so the
model call costs ~nothing and what is measured is kodr's own work). Each repeat
is a fresh ``heal`` run on the failing workspace with ``install=True`` and
``--test "node --test"``: adopt → install (turn 0) → verify (fails) → **heal →
repair → writes → install skipped (no manifest changed) → the failing test file →
the full suite → passed**. The measured time is the part in bold: wall time from
the moment the ``heal`` StateChanged is appended to the moment the terminal
StateChanged is appended (``time.perf_counter`` in the engine's observer; the
events' own ``recorded_at`` gives a cross-check).

The naive turn does what a loop without kodr's install rule does every turn:
write the same fix, reinstall with ``npm install`` (``--install-cmd plan`` runs
instead the command kodr's own install plan picks for this workspace, ``npm ci
--no-audit --no-fund --ignore-scripts``, since setup wrote a lockfile) and run the
full suite with ``node --test``, each through
``adapters.processes.SubprocessRunner`` (so with the same child environment kodr
uses: ``CI=1``, npm audit/fund/update-notifier off); timed with
``time.perf_counter`` from the write to the suite's exit.

``--turn still-failing`` measures the other kind of turn a loop spends most of
its time in: the repair changes ``calc.js`` and still fails. kodr then runs only
the failing test file, and (with a budget of one turn) the loop stops right
after it (``budget_exhausted``); the naive turn still reinstalls and runs the
whole suite.

Repeats alternate kodr and naive turns, resetting ``calc.js`` to the bug before
each, and the script prints the median of each side, its parts, and the ratio
naive / kodr. Both sides check their turn really passed (and that kodr skipped the
install and ran the failing file first), so a figure is never from a broken turn.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adapters.artifacts import ArtifactWriter  # noqa: E402
from adapters.processes import SubprocessRunner  # noqa: E402
from adapters.scripted_model import ScriptedModel  # noqa: E402
from adapters.toolchain import ProcessToolchain  # noqa: E402
from adapters.workspace import DiskWorkspace  # noqa: E402
from kodr_core import events as ev  # noqa: E402
from kodr_core.engine import Engine  # noqa: E402
from kodr_core.install_plan import plan_install  # noqa: E402
from kodr_core.options import RunOptions  # noqa: E402
from kodr_core.states import TERMINAL, State  # noqa: E402
from store.database import default_url, open_store  # noqa: E402

DEPENDENCY = ("is-number", "7.0.0")
TEST_COMMAND = "node --test"
PROCESS_TIMEOUT_S = 600.0

PACKAGE_JSON = {
    "name": "kodr-bench-heal",
    "version": "1.0.0",
    "private": True,
    "scripts": {"test": TEST_COMMAND},
    "dependencies": {DEPENDENCY[0]: DEPENDENCY[1]},
}


def calc_js(expr: str) -> str:
    return f"""const isNumber = require('is-number');

function add(a, b) {{
  if (!isNumber(a) || !isNumber(b)) throw new TypeError('add takes numbers');
  return {expr};
}}

module.exports = {{ add }};
"""


CALC_BUGGY = calc_js("a - b")
CALC_FIXED = calc_js("a + b")
CALC_STILL_WRONG = calc_js("a * b")  # a repair that changes the file and still fails 'adds two numbers'

CALC_TEST = """const test = require('node:test');
const assert = require('node:assert/strict');
const { add } = require('./calc.js');

test('adds two numbers', () => assert.equal(add(2, 3), 5));
test('adds zero', () => assert.equal(add(4, 0), 4));
test('refuses strings', () => assert.throws(() => add('a', 1), TypeError));
"""

#: Five passing modules with their test files: (module, source, test body).
MODULES = {
    "strings": (
        "function slug(s) { return s.toLowerCase().trim().split(/\\s+/).join('-'); }\n"
        "function title(s) { return s.replace(/\\b\\w/g, (c) => c.toUpperCase()); }\n"
        "module.exports = { slug, title };\n",
        "test('slug', () => assert.equal(m.slug(' Hello World '), 'hello-world'));\n"
        "test('title', () => assert.equal(m.title('a tale of two'), 'A Tale Of Two'));\n"
        "test('slug of one word', () => assert.equal(m.slug('Word'), 'word'));\n",
    ),
    "arrays": (
        "function chunk(xs, n) { const out = []; for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));"
        " return out; }\nfunction uniq(xs) { return [...new Set(xs)]; }\nmodule.exports = { chunk, uniq };\n",
        "test('chunk', () => assert.deepEqual(m.chunk([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]));\n"
        "test('uniq', () => assert.deepEqual(m.uniq([1, 1, 2, 3, 3]), [1, 2, 3]));\n"
        "test('chunk empty', () => assert.deepEqual(m.chunk([], 3), []));\n",
    ),
    "numbers": (
        "const isNumber = require('is-number');\n"
        "function clamp(x, lo, hi) { if (!isNumber(x)) throw new TypeError('x'); return Math.min(hi, Math.max(lo, x)); }\n"
        "function mean(xs) { return xs.reduce((a, b) => a + b, 0) / xs.length; }\n"
        "module.exports = { clamp, mean };\n",
        "test('clamp high', () => assert.equal(m.clamp(12, 0, 10), 10));\n"
        "test('clamp low', () => assert.equal(m.clamp(-3, 0, 10), 0));\n"
        "test('mean', () => assert.equal(m.mean([1, 2, 3, 4]), 2.5));\n"
        "test('clamp refuses text', () => assert.throws(() => m.clamp('x', 0, 1), TypeError));\n",
    ),
    "objects": (
        "function pick(o, keys) { return Object.fromEntries(keys.filter((k) => k in o).map((k) => [k, o[k]])); }\n"
        "function invert(o) { return Object.fromEntries(Object.entries(o).map(([k, v]) => [v, k])); }\n"
        "module.exports = { pick, invert };\n",
        "test('pick', () => assert.deepEqual(m.pick({ a: 1, b: 2, c: 3 }, ['a', 'c', 'z']), { a: 1, c: 3 }));\n"
        "test('invert', () => assert.deepEqual(m.invert({ a: 'x', b: 'y' }), { x: 'a', y: 'b' }));\n",
    ),
    "queue": (
        "class Queue { constructor() { this.items = []; } push(x) { this.items.push(x); return this; }"
        " shift() { return this.items.shift(); } get size() { return this.items.length; } }\n"
        "module.exports = { Queue };\n",
        "test('fifo', () => { const q = new m.Queue().push(1).push(2); assert.equal(q.shift(), 1);"
        " assert.equal(q.size, 1); });\n"
        "test('empty', () => assert.equal(new m.Queue().shift(), undefined));\n",
    ),
}


def make_project(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text(json.dumps(PACKAGE_JSON, indent=2) + "\n")
    (root / "calc.js").write_text(CALC_BUGGY)
    (root / "calc.test.js").write_text(CALC_TEST)
    for name, (source, tests) in MODULES.items():
        (root / f"{name}.js").write_text(source)
        (root / f"{name}.test.js").write_text(
            "const test = require('node:test');\nconst assert = require('node:assert/strict');\n"
            f"const m = require('./{name}.js');\n\n{tests}"
        )


def _check(res: Any, what: str) -> None:
    if res.error or res.timed_out or res.exit_code != 0:
        tail = (res.stderr or res.stdout or res.error or "")[-2000:]
        raise SystemExit(f"{what} failed (exit {res.exit_code}, timed out {res.timed_out}):\n{tail}")


def _ts(recorded_at: str) -> float:
    return datetime.fromisoformat(recorded_at.replace("Z", "+00:00")).timestamp()


# -- kodr's turn ------------------------------------------------------------------------


def kodr_turn(root: Path, store: Any, fixing: bool = True) -> dict[str, Any]:
    """One heal run through the real engine; the figures of its heal turn."""
    (root / "calc.js").write_text(CALC_BUGGY)
    marks: dict[str, float] = {}

    def observe(rec: ev.RecordedEvent) -> None:
        e = rec.event
        if isinstance(e, ev.StateChanged):
            if e.trigger == "heal":
                marks["heal"] = time.perf_counter()
            elif State(e.to_state) in TERMINAL:
                marks["end"] = time.perf_counter()

    repair = CALC_FIXED if fixing else CALC_STILL_WRONG
    model = ScriptedModel([{"summary": "add adds", "notes": None, "files": [{"path": "calc.js", "content": repair}]}])
    engine = Engine(
        store, DiskWorkspace(root), ProcessToolchain(), model, artifacts=ArtifactWriter(root, store), observer=observe
    )
    # a still-failing repair on the last allowed turn ends the run (budget_exhausted) right after its tests
    options = RunOptions(
        provider="scripted", install=True, heal=True, test_command=TEST_COMMAND, max_turns=3 if fixing else 1
    )
    run_id = engine.request("Make the failing tests pass.", options, mode="heal")
    run = engine.drive(run_id)
    records = store.load(run_id)
    expected = (State.PASSED, "verification_passed") if fixing else (State.FAILED, "budget_exhausted")
    if (run.state, run.reason) != expected or run.heal_turn != 1:
        raise SystemExit(f"kodr's run {run_id} ended {run.state.value} ({run.reason}) at turn {run.heal_turn}")
    turn = [r for r in records if getattr(r.event, "turn", getattr(r.event, "heal_turn", None)) == 1]
    started = [r.event for r in turn if isinstance(r.event, ev.TestsStarted)]
    finished = [r.event for r in turn if isinstance(r.event, ev.TestsFinished)]
    skipped = [r.event for r in turn if isinstance(r.event, ev.InstallSkipped)]
    scopes = ["failing", "full"] if fixing else ["failing"]
    if [s.scope for s in started] != scopes or started[0].files != ["calc.test.js"]:
        raise SystemExit(f"kodr's turn did not run the failing file first ({scopes}): {started}")
    if not skipped or any(isinstance(r.event, ev.InstallStarted) for r in turn):
        raise SystemExit("kodr's turn did not skip the install")
    heal = next(r for r in records if isinstance(r.event, ev.StateChanged) and r.event.trigger == "heal")
    end = records[-1]
    model_ms = next(r.event.duration_ms for r in turn if isinstance(r.event, ev.ModelCallCompleted))
    full = next((f.result for f in finished if f.scope == "full"), {"durationMs": 0, "total": None})
    failing = next(f.result for f in finished if f.scope == "failing")
    total_ms = (marks["end"] - marks["heal"]) * 1000
    return {
        "run_id": run_id,
        "turn_ms": total_ms,
        "turn_ms_from_events": (_ts(end.recorded_at) - _ts(heal.recorded_at)) * 1000,
        "model_ms": model_ms,
        "failing_file_ms": failing["durationMs"],
        "full_suite_ms": full["durationMs"],
        "tests_total": next(r.event.result["total"] for r in records if isinstance(r.event, ev.TestsFinished)),
        "overhead_ms": total_ms - model_ms - failing["durationMs"] - full["durationMs"],
    }


# -- the naive turn ----------------------------------------------------------------------


def naive_turn(root: Path, runner: SubprocessRunner, install_argv: list[str], fixing: bool = True) -> dict[str, Any]:
    """Write the repair, reinstall, run the whole suite: what every turn costs without kodr's rules."""
    (root / "calc.js").write_text(CALC_BUGGY)
    t0 = time.perf_counter()
    (root / "calc.js").write_text(CALC_FIXED if fixing else CALC_STILL_WRONG)
    install = runner.run(install_argv, cwd=str(root), timeout_s=PROCESS_TIMEOUT_S)
    _check(install, "the naive turn's install")
    suite = runner.run(TEST_COMMAND.split(), cwd=str(root), timeout_s=PROCESS_TIMEOUT_S)
    if fixing:
        _check(suite, "the naive turn's full suite")
    elif suite.exit_code in (0, None) or suite.timed_out:
        raise SystemExit(f"the naive still-failing turn's suite did not fail (exit {suite.exit_code})")
    total_ms = (time.perf_counter() - t0) * 1000
    return {"turn_ms": total_ms, "install_ms": install.duration_ms, "full_suite_ms": suite.duration_ms}


# -- main ---------------------------------------------------------------------------------


def median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="measured turns per side (default 5)")
    ap.add_argument(
        "--install-cmd",
        choices=["install", "plan"],
        default="install",
        help="naive side's install: plain `npm install` (default), or the command kodr's install "
        "plan picks for the workspace (`npm ci …`, since setup wrote a lockfile)",
    )
    ap.add_argument(
        "--turn",
        choices=["fixing", "still-failing"],
        default="fixing",
        help="the repair fixes the bug (default: failing file, then the full suite), or changes "
        "calc.js and still fails (kodr runs only the failing file, then the loop stops)",
    )
    ap.add_argument("--keep", default=None, help="build the project here and keep it (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    root = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="kodr-bench-heal-"))
    try:
        make_project(root)
        runner = SubprocessRunner()
        say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
        say(f"project: {root}")
        say(f"setup: npm install ({DEPENDENCY[0]}@{DEPENDENCY[1]} from the registry, not measured)…")
        setup = runner.run(["npm", "install", "--no-audit", "--no-fund"], cwd=str(root), timeout_s=PROCESS_TIMEOUT_S)
        _check(setup, "setup npm install")
        if not (root / "node_modules" / DEPENDENCY[0] / "package.json").is_file():
            raise SystemExit(f"setup did not install {DEPENDENCY[0]}")
        plan = plan_install({p.name for p in root.iterdir() if p.is_file()})
        install_argv = plan.commands[0] if args.install_cmd == "plan" else ["npm", "install"]
        store = open_store(default_url(root))
        kodr_rows: list[dict[str, Any]] = []
        naive_rows: list[dict[str, Any]] = []
        for i in range(args.repeat):
            fixing = args.turn == "fixing"
            kodr_rows.append(kodr_turn(root, store, fixing))
            naive_rows.append(naive_turn(root, runner, install_argv, fixing))
            say(
                f"  repeat {i + 1}/{args.repeat}: kodr {kodr_rows[-1]['turn_ms']:.0f} ms, "
                f"naive {naive_rows[-1]['turn_ms']:.0f} ms"
            )
        k, n = median(kodr_rows, "turn_ms"), median(naive_rows, "turn_ms")
        figures = {
            "project": {
                "test_files": 1 + len(MODULES),
                "failing_test_files": 1,
                "tests": kodr_rows[0]["tests_total"],
                "dependency": "@".join(DEPENDENCY),
            },
            "repeat": args.repeat,
            "turn": args.turn,
            "naive_install": " ".join(install_argv),
            "kodr": {key: median(kodr_rows, key) for key in kodr_rows[0] if key not in ("run_id", "tests_total")},
            "naive": {key: median(naive_rows, key) for key in naive_rows[0]},
            "ratio_naive_over_kodr": n / k,
            "runs": {
                "kodr_ms": [round(r["turn_ms"]) for r in kodr_rows],
                "naive_ms": [round(r["turn_ms"]) for r in naive_rows],
            },
        }
        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            kd, nd = figures["kodr"], figures["naive"]
            p = figures["project"]
            print(
                f"\n{args.turn} heal turn, {p['test_files']} test files ({p['tests']} tests, 1 file failing), "
                f"dependency {p['dependency']}, medians of {args.repeat}:"
            )
            suite = f" + full suite {kd['full_suite_ms']:.0f}" if args.turn == "fixing" else " (no full suite)"
            print(
                f"  kodr   {kd['turn_ms']:8.0f} ms  = model {kd['model_ms']:.0f} + failing file "
                f"{kd['failing_file_ms']:.0f}{suite} + engine/store/artifacts "
                f"{kd['overhead_ms']:.0f} (install skipped; {kd['turn_ms_from_events']:.0f} ms by event time)"
            )
            print(
                f"  naive  {nd['turn_ms']:8.0f} ms  = `{figures['naive_install']}` {nd['install_ms']:.0f} "
                f"+ full suite {nd['full_suite_ms']:.0f}"
            )
            print(f"  ratio naive/kodr: {figures['ratio_naive_over_kodr']:.2f}x")
            print(f"  runs (ms): kodr {figures['runs']['kodr_ms']}, naive {figures['runs']['naive_ms']}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
