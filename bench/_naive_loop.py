"""The naive heal loop ``bench/heal_turn.py`` measures kodr against: reinstall and run everything, every turn.

    python bench/_naive_loop.py --url URL --install "npm ci ..." --test "node --test" --max-turns N

Run in the project directory, as its own process (standard library only, so it starts as
fast as Python can). Turn 0 installs and runs the whole suite; while the suite fails and
turns remain, each turn asks the model (one chat completion on ``URL``, not streamed: the
failing output and every source file in the prompt), writes the files of its reply (kodr's
envelope: ``{"files": [{"path", "content"}]}``), reinstalls with the given command and runs
the whole suite again. Prints one JSON object: per turn the install's and the suite's exit
codes and durations.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def run(argv: list[str]) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr, (time.perf_counter() - t0) * 1000


def ask(url: str, output: str) -> dict:
    sources = {p.name: p.read_text() for p in sorted(Path(".").glob("*.js"))}
    prompt = "The tests fail:\n" + output[-6000:] + "\n\nFiles:\n"
    prompt += "\n".join(f"--- {name}\n{text}" for name, text in sources.items())
    prompt += '\n\nAnswer JSON only: {"summary": str, "files": [{"path": str, "content": str}]}'
    body = {"model": "scripted", "messages": [{"role": "user", "content": prompt}], "stream": False}
    req = urllib.request.Request(
        url.rstrip("/") + "/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        reply = json.loads(resp.read())
    return json.loads(reply["choices"][0]["message"]["content"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--install", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--max-turns", type=int, default=3)
    args = ap.parse_args()
    turns = []
    for turn in range(args.max_turns + 1):
        row: dict = {"turn": turn}
        if turn:
            envelope = ask(args.url, output)  # noqa: F821 - set by the previous turn's suite
            for f in envelope.get("files") or []:
                Path(f["path"]).write_text(f["content"])
            row["wrote"] = [f["path"] for f in envelope.get("files") or []]
        row["install_exit"], log, row["install_ms"] = run(shlex.split(args.install))
        if row["install_exit"] != 0:
            row["install_log"] = log[-2000:]
            turns.append(row)
            break
        row["suite_exit"], output, row["suite_ms"] = run(shlex.split(args.test))
        turns.append(row)
        if row["suite_exit"] == 0:
            break
    print(json.dumps({"turns": turns}))
    return 0 if turns[-1].get("suite_exit") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
