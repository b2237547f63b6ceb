"""``kodr demo``: a whole run, with heal, on a sample Node project and a scripted model.

The first proposal has a bug on purpose, so the demo shows a failing verification,
one repair turn, and a pass; everything runs locally (npm installs nothing).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from adapters.artifacts import run_dir
from adapters.bootstrap import build_engine
from adapters.scripted_model import ScriptedModel
from adapters.workspace import DiskWorkspace
from kodr_core.engine import Observer
from kodr_core.explain import explain, render_text
from kodr_core.options import RunOptions
from kodr_core.states import State
from store.database import default_url, open_store

TASK = "Add slugify(text) in slugify.js: lowercase, words joined by '-', punctuation dropped. Test it."

PACKAGE_JSON = {
    "name": "kodr-demo",
    "version": "1.0.0",
    "private": True,
    "type": "commonjs",
    "scripts": {"test": "node --test"},
}

TEST_JS = """const test = require('node:test');
const assert = require('node:assert/strict');
const { slugify } = require('./slugify.js');

test('joins words with dashes', () => {
  assert.equal(slugify('Hello World'), 'hello-world');
});

test('drops punctuation', () => {
  assert.equal(slugify('Ready, set... go!'), 'ready-set-go');
});
"""

BUGGY = """function slugify(text) {
  return text.trim().split(/\\s+/).join('-');
}

module.exports = { slugify };
"""

FIXED = """function slugify(text) {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9\\s-]/g, '')
    .trim()
    .split(/[\\s-]+/)
    .filter(Boolean)
    .join('-');
}

module.exports = { slugify };
"""

SCRIPT: list[str | dict[str, Any]] = [
    {
        "summary": "add slugify with tests",
        "notes": None,
        "files": [
            {"path": "slugify.js", "content": BUGGY},
            {"path": "slugify.test.js", "content": TEST_JS},
        ],
    },
    "<think>The tests expect lowercase and no punctuation.</think>\n```json\n"
    + json.dumps(
        {
            "summary": "lowercase and drop punctuation",
            "notes": None,
            "files": [{"path": "slugify.js", "content": FIXED}],
        }
    )
    + "\n```",
]


def make_sample(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text(json.dumps(PACKAGE_JSON, indent=2) + "\n")
    (root / "README.md").write_text("# kodr demo\n\nA tiny Node project for kodr's demo run.\n")


def run_demo(keep: str | None, as_json: bool, observer: Observer | None = None) -> int:
    """Run the demo; its result goes to stdout (JSON with ``--json``): the explanation, the audit, the paths."""
    from adapters.cli.outcome import kodr_command, one_line

    root = Path(keep).resolve() if keep else Path(tempfile.mkdtemp(prefix="kodr-demo-"))
    make_sample(root)
    store = open_store(default_url(root))
    options = RunOptions(provider="scripted", install=True, heal=True, test_command="npm test", max_turns=2)
    # wired as every run is (sandbox, dependency sources, secret scrubbing): the demo shows the real thing
    engine = build_engine(store, DiskWorkspace(root), ScriptedModel(SCRIPT), options, store=store, observer=observer)
    if not as_json:
        print(f"kodr demo: sample project in {root}", flush=True)
    run_id = engine.request(TASK, options)
    run = engine.drive(run_id)
    x = explain(run)
    chain = store.verify(run_id)
    audit = {
        "ok": chain.ok,
        "events": chain.checked,
        "first_broken_seq": chain.first_broken_seq,
        "problem": chain.problem,
    }
    hints = [
        kodr_command("explain", run_id, workspace=str(root)),
        kodr_command("events", run_id, workspace=str(root)),
        kodr_command("audit", "verify", run_id, workspace=str(root)),
    ]
    if as_json:
        print(
            json.dumps(
                {
                    "run_id": run_id,
                    "workspace": str(root),
                    "state": run.state.value,
                    "reason": run.reason,
                    "artifacts": str(run_dir(root, run_id)),
                    "explain": x,
                    "audit": audit,
                    "next": hints,
                },
                indent=2,
            )
        )
    else:
        print()
        print(render_text(x))
        print()
        print(one_line(run))
        verdict = (
            f"ok, {chain.checked} events in an unbroken hash chain"
            if chain.ok
            else (f"BROKEN at seq {chain.first_broken_seq}: {chain.problem}")
        )
        print(f"audit:     {verdict}")
        print(f"artifacts: {run_dir(root, run_id)}")
        print(f"store:     {default_url(root)}")
        for hint in hints:
            print(f"try:       {hint}")
    return 0 if run.state is State.PASSED else 1
