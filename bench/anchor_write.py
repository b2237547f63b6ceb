"""What writing a head anchor costs a commit, by how the file is written.

    .venv/bin/python bench/anchor_write.py [--iterations N] [--repeats K]

A commit's fsync stands in as ``fdatasync`` of a 4 KiB page of another file (a WAL frame);
after each one the anchor is written the way :mod:`store.anchors` could write it. It
explains why the anchor is opened, written and closed on every append instead of being
kept open: keeping it open is only cheaper while nothing stats the file, and any check
that the file is still there (``fstat``/``stat``) makes every later fsync of the other
file slower. On Linux 6.13+ (multigrain timestamps) a stat marks the file's timestamps as
seen, so its next write takes a fine-grained time and dirties the inode, and ext4 commits
its journal on the next fdatasync of any file. Medians of K, µs per iteration.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

HEAD = b'{"hash": "' + b"a" * 64 + b'", "run_id": "r1", "seq": 1}\n'.ljust(512)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kodr-bench-anchor-") as d:
        times = measure(d, args.iterations, args.repeats)
    us = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"anchor write after each commit, {args.iterations} commits, medians of {args.repeats}, "
        f"Linux {platform.release()}, load {os.getloadavg()[0]:.1f}"
    )
    for name, v in us.items():
        print(f"  {name:20s} {v:7.1f} µs/commit   this/commit alone {v / us['commit alone']:.2f}x")


def measure(d: str, iterations: int, repeats: int) -> dict[str, list[float]]:
    wal = os.open(os.path.join(d, "wal"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.pwrite(wal, b"\0" * 4096 * 16, 0)
    os.fsync(wal)
    path = os.path.join(d, "run", "head.json")
    os.makedirs(os.path.dirname(path))
    held = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)

    def open_write_close() -> None:  # what store.anchors does
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.pwrite(fd, HEAD, 0)
        os.close(fd)

    def kept_open() -> None:
        os.pwrite(held, HEAD, 0)

    def kept_open_checked() -> None:  # noticing a deleted or replaced file needs a stat
        if os.fstat(held).st_nlink:
            os.pwrite(held, HEAD, 0)

    ways: dict[str, Callable[[], None] | None] = {
        "commit alone": None,
        "open, write, close": open_write_close,
        "kept open": kept_open,
        "kept open, fstat": kept_open_checked,
    }
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(repeats):  # interleaved, so a busy moment hits every way
        for name, write in ways.items():
            t = time.perf_counter()
            for i in range(iterations):
                os.pwrite(wal, b"w" * 4096, (i % 16) * 4096)
                os.fdatasync(wal)
                if write is not None:
                    write()
            times[name].append((time.perf_counter() - t) / iterations * 1e6)
    for fd in (wal, held):
        os.close(fd)
    return times


if __name__ == "__main__":
    main()
