"""The OS sandbox's cost per process spawn: median of N runs of /bin/true, bwrap vs none.

    .venv/bin/python bench/sandbox_overhead.py [N]

Prints the two medians and their ratio, both measured in this run through the real
SubprocessRunner (so capture files, group cleanup and scrubbing are included).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

from adapters.processes import SubprocessRunner
from adapters.sandbox import Sandbox, probe


def median_ms(runner: SubprocessRunner, cwd: str, n: int, network: bool) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        res = runner.run(["/bin/true"], cwd=cwd, timeout_s=30, network=network)
        times.append((time.perf_counter() - t0) * 1000)
        assert res.exit_code == 0, res.stderr
    return statistics.median(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    if probe(Sandbox().bwrap) is not None:
        sys.exit("bubblewrap cannot run here")
    with tempfile.TemporaryDirectory() as ws:
        plain = median_ms(SubprocessRunner(leftover_grace_s=0), ws, n, True)
        boxed = median_ms(SubprocessRunner(sandbox=Sandbox("required"), leftover_grace_s=0), ws, n, True)
        boxed_net = median_ms(SubprocessRunner(sandbox=Sandbox("required"), leftover_grace_s=0), ws, n, False)
    print(
        f"n={n} none={plain:.1f}ms bwrap={boxed:.1f}ms bwrap+netns={boxed_net:.1f}ms "
        f"overhead={boxed - plain:.1f}ms (+netns {boxed_net - plain:.1f}ms) ratio={boxed / plain:.2f}"
    )


if __name__ == "__main__":
    main()
