"""What the service tests share: a small node project whose tests fail, a model that answers by task."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kodr_core.states import TERMINAL

PKG = json.dumps({"name": "calc", "version": "1.0.0", "private": True, "scripts": {"test": "node --test"}}) + "\n"
TEST = """const test = require('node:test');
const assert = require('node:assert/strict');
const { add } = require('./calc.js');
test('adds two numbers', () => assert.equal(add(2, 3), 5));
test('adds zero', () => assert.equal(add(4, 0), 4));
"""


def impl(expr: str) -> str:
    return f"function add(a, b) {{\n  return {expr};\n}}\nmodule.exports = {{ add }};\n"


BUGGY, FIXED = impl("a - b"), impl("a + b")
FILES = {"package.json": PKG, "calc.js": BUGGY, "calc.test.js": TEST}

#: What the model does for a task tagged ``[fix]``, ``[stall]`` or ``[garbage]``, and where the run ends.
OUTCOMES = {
    "fix": ("passed", "verification_passed"),
    "stall": ("stalled", "no_progress"),
    "garbage": ("failed", "invalid_proposal"),
}


def make_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        (root / name).write_text(text)
    return root


def envelope(files: dict[str, str]) -> dict[str, Any]:
    return {"summary": "repair", "notes": None, "files": [{"path": p, "content": c} for p, c in files.items()]}


def responder(delay_s: float = 0.0) -> Callable[[dict[str, Any]], Any]:
    """A deterministic model: its reply depends only on the ``[tag]`` in the task it is asked about."""
    from tests.support.scripted_server import Turn

    def answer(body: dict[str, Any]) -> Any:
        text = json.dumps(body.get("messages", []))
        m = re.search(r"\[(fix|stall|garbage|retry)\]", text)
        tag = m.group(1) if m else "garbage"
        if tag == "retry":  # a model that needs the validation error quoted back once, then fixes
            tag = "fix" if "previous answer was rejected" in text else "garbage"
        content = {
            "fix": json.dumps(envelope({"calc.js": FIXED})),
            "stall": json.dumps(envelope({"calc.js": BUGGY})),
            "garbage": "I will not answer in JSON",
        }[tag]
        return Turn(content=content, delay_s=delay_s)

    return answer


def wait_terminal(get_state: Callable[[], list[str]], timeout: float) -> list[str]:
    """Poll until every state is terminal; returns the states."""
    terminal = {s.value for s in TERMINAL}
    deadline = time.monotonic() + timeout
    states = get_state()
    while time.monotonic() < deadline:
        states = get_state()
        if states and all(s in terminal for s in states):
            return states
        time.sleep(0.2)
    raise AssertionError(f"runs not terminal after {timeout}s: {states}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(home: Path, workers: int = 1, extra_env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """`kodr serve` in a subprocess on a free port; returns (process, base url) once /healthz answers."""
    import subprocess
    import sys

    import httpx

    from tests.e2e.conftest import kodr_env

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.cli",
            "serve",
            "--workspace",
            str(home),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=kodr_env(extra_env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    for _ in range(200):
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("kodr serve did not answer /healthz: " + proc.stderr.read().decode()[-2000:])
