"""Running the installed ``kodr`` script as a user would: stdout and stderr apart, in a pty or not."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import kodr_env

KODR = str(Path(sys.executable).parent / "kodr")

#: The read-only commands that read a run's events (``runs`` reads only the projection):
#: none may create anything, and none may import SQLAlchemy or alembic.
READS_EVENTS = [
    ["show", "last"],
    ["events", "last"],
    ["explain", "last"],
    ["replay", "last"],
    ["audit", "verify"],
    ["audit", "verify", "last"],
]


@dataclass
class Out:
    code: int
    out: str
    err: str


def kodr_script(
    *args: str, cwd: Path, env: dict[str, str] | None = None, tty: bool = False, timeout: float = 300
) -> Out:
    """Run the installed ``kodr``; with ``tty`` its stdout is a pseudo-terminal (stderr stays a pipe)."""
    if not tty:
        p = subprocess.run(
            [KODR, *args],
            cwd=cwd,
            env=kodr_env(env),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Out(p.returncode, p.stdout, p.stderr)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [KODR, *args],
        cwd=cwd,
        env=kodr_env({"COLUMNS": "120", **(env or {})}),
        stdout=slave,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            continue
    os.close(master)
    code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    return Out(code, b"".join(chunks).decode(errors="replace"), err)


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (relative), to prove a command created nothing."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}
