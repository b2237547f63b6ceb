"""Start-up of kodr's commands against bare Python, measured in the same run.

    .venv/bin/python bench/startup.py [--repeat N] [--json]

Each command is a whole process (``kodr`` from this interpreter's venv), timed
from spawn to exit with ``time.perf_counter``; the baseline is ``python -c pass``
with the same interpreter, interleaved with the commands so a busy machine
slows both alike. Read-only commands run against a store with one demo run in
it (made once, before anything is measured, in a temporary directory). Prints
each command's median wall time and CPU time (user + system of the child, which a
busy machine distorts least) and their ratios to the baseline; the target is a
median under 0.2 s for ``kodr --help`` and every read-only command.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TARGET_S = 0.2


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _time(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole process; CPU time is what a busy machine distorts least."""
    c0, t0 = _cpu(), time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0, _cpu() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--kodr", default=str(BIN / "kodr"), help="the kodr script to measure (e.g. another checkout's)")
    args = ap.parse_args()
    kodr = args.kodr
    # Bytecode is written and used, as on a user's install (pip and `uv tool install --compile-bytecode`
    # compile it; without .pyc files every start re-compiles sqlalchemy & co. from source, ~10x slower).
    env = {k: v for k, v in os.environ.items() if k not in ("KODR_DATABASE_URL", "PYTHONDONTWRITEBYTECODE")}
    work = Path(tempfile.mkdtemp(prefix="kodr-bench-startup-"))
    try:
        ws, empty = work / "demo", work / "empty"
        empty.mkdir()
        subprocess.run([kodr, "demo", "--keep", str(ws), "--json"], env=env, check=True, capture_output=True)
        cases = {
            "python -c pass": ([sys.executable, "-c", "pass"], empty),
            "kodr --help": ([kodr, "--help"], empty),
            "kodr runs (no store)": ([kodr, "runs"], empty),
            "kodr runs": ([kodr, "runs"], ws),
            "kodr show last": ([kodr, "show", "last"], ws),
            "kodr events last": ([kodr, "events", "last"], ws),
            "kodr explain last": ([kodr, "explain", "last"], ws),
            "kodr replay last": ([kodr, "replay", "last"], ws),
            "kodr audit verify": ([kodr, "audit", "verify"], ws),
        }
        for argv, cwd in cases.values():  # warm-up, untimed: writes the .pyc files
            _time(argv, cwd, env)
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeat):
            for name, (argv, cwd) in cases.items():
                wall, used = _time(argv, cwd, env)
                times[name].append(wall)
                cpu[name].append(used)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(times["python -c pass"])
    base_cpu = statistics.median(cpu["python -c pass"]) or 1e-3
    rows = [
        {
            "command": name,
            "median_s": round(statistics.median(ts), 4),
            "min_s": round(min(ts), 4),
            "ratio": round(statistics.median(ts) / base, 1),
            "cpu_s": round(statistics.median(cpu[name]), 4),
            "cpu_ratio": round(statistics.median(cpu[name]) / base_cpu, 1),
            "under_target": statistics.median(ts) < TARGET_S,
        }
        for name, ts in times.items()
    ]
    if args.json:
        print(json.dumps({"repeat": args.repeat, "baseline_s": round(base, 4), "rows": rows}, indent=2))
        return
    load = os.getloadavg()[0]
    print(
        f"start-up, median of {args.repeat} (python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {load:.1f})"
    )
    print(f"{'command':<24} {'wall':>8} {'min':>8} {'× python':>9} {'cpu':>8} {'× python':>9}  wall < {TARGET_S}s")
    for r in rows:
        print(
            f"{r['command']:<24} {r['median_s']:>7.3f}s {r['min_s']:>7.3f}s {r['ratio']:>8.1f}× "
            f"{r['cpu_s']:>7.3f}s {r['cpu_ratio']:>8.1f}×  {'yes' if r['under_target'] else 'NO'}"
        )


if __name__ == "__main__":
    main()
