"""The run pipeline end to end: the real CLI, a scripted model over HTTP, real npm/uv/node/pytest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import chain, envelope, events_of, kodr, snapshot, tagged_processes
from tests.support.scripted_server import ScriptedServer

NODE_PKG = json.dumps(
    {
        "name": "calc",
        "version": "1.0.0",
        "private": True,
        "scripts": {"test": "node --test"},
        "dependencies": {"is-number": "7.0.0"},
    },
    indent=2,
)
NODE_IMPL = """const isNumber = require('is-number');
function add(a, b) {
  if (!isNumber(a) || !isNumber(b)) throw new TypeError('add takes numbers');
  return a + b;
}
module.exports = { add };
"""
NODE_TEST = """const test = require('node:test');
const assert = require('node:assert/strict');
const { add } = require('./calc.js');
test('adds', () => assert.equal(add(2, 3), 5));
test('refuses strings', () => assert.throws(() => add('a', 1), TypeError));
"""

PY_IMPL = "def add(a, b):\n    return a + b\n"
PY_TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_add_neg():\n    assert add(-1, 1) == 0\n"

GOLDEN_CHAIN = [
    "RunRequested",
    "StateChanged:propose",
    "ModelCallStarted",
    "ModelCallCompleted",
    "ProposalAccepted",
    "WritesStarted",
    "WritesApplied",
    "StateChanged:apply",
    "StateChanged:install",
    "InstallStarted",
    "InstallFinished",
    "StateChanged:verify",
    "TestsStarted",
    "TestsFinished",
    "StateChanged:succeed",
]


def _artifact(ws: Path, run_id: str, name: str) -> dict:
    return json.loads((ws / ".kodr" / "runs" / run_id / name).read_text())


REQUIRED_KEYS = {
    "command",
    "exitCode",
    "ok",
    "timedOut",
    "durationMs",
    "startedAt",
    "finishedAt",
    "stdoutTail",
    "stderrTail",
}


@pytest.mark.slow
def test_golden_path_node(workspace: Path) -> None:
    env = envelope({"package.json": NODE_PKG, "calc.js": NODE_IMPL, "calc.test.js": NODE_TEST})
    with ScriptedServer([env]) as srv:
        r = kodr(
            "run",
            "-p",
            "write an add function",
            "--base-url",
            srv.base_url,
            "--install",
            "--test",
            "npm test",
            "--json",
            cwd=workspace,
        )
    assert r.code == 0, r.err
    out = r.json()
    assert (out["state"], out["reason"]) == ("passed", "verification_passed")
    assert chain(events_of(workspace, out["run_id"])) == GOLDEN_CHAIN
    install = _artifact(workspace, out["run_id"], "install.json")
    assert REQUIRED_KEYS <= set(install)
    assert install["command"].startswith("npm install") and install["exitCode"] == 0 and install["ok"]
    assert install["durationMs"] > 0
    assert (workspace / "node_modules" / "is-number" / "package.json").is_file()
    tests = _artifact(workspace, out["run_id"], "tests.json")
    assert REQUIRED_KEYS <= set(tests)
    assert (tests["passed"], tests["failed"], tests["skipped"], tests["total"]) == (2, 0, 0, 2)
    assert tests["ok"] and tests["exitCode"] == 0 and tests["command"] == "npm test"


@pytest.mark.slow
def test_golden_path_python(workspace: Path) -> None:
    env = envelope(
        {"requirements.txt": "pytest\n", "calc.py": PY_IMPL, "tests/test_calc.py": PY_TEST, "conftest.py": ""}
    )
    with ScriptedServer([env]) as srv:
        r = kodr(
            "run",
            "-p",
            "write add",
            "--base-url",
            srv.base_url,
            "--install",
            "--test",
            "pytest",
            "--json",
            cwd=workspace,
        )
    assert r.code == 0, r.err
    out = r.json()
    assert out["state"] == "passed"
    assert chain(events_of(workspace, out["run_id"])) == GOLDEN_CHAIN
    install = _artifact(workspace, out["run_id"], "install.json")
    assert install["ok"] and "uv pip install" in install["command"]
    assert (workspace / ".venv" / "bin" / "pytest").exists()
    tests = _artifact(workspace, out["run_id"], "tests.json")
    assert (tests["passed"], tests["failed"], tests["total"]) == (2, 0, 2)


@pytest.mark.slow
def test_install_failure_keeps_files_and_skips_verification(workspace: Path) -> None:
    pkg = json.dumps(
        {
            "name": "x",
            "version": "1.0.0",
            "scripts": {"test": "node --test"},
            "dependencies": {"kodr-no-such-package-zz9-plural-z-alpha": "1.0.0"},
        }
    )
    env = envelope({"package.json": pkg, "a.test.js": NODE_TEST})
    with ScriptedServer([env]) as srv:
        r = kodr("run", "-p", "x", "--base-url", srv.base_url, "--install", "--json", cwd=workspace)
    out = r.json()
    assert r.code == 10
    assert (out["state"], out["reason"]) == ("failed", "install_failed")
    types = chain(events_of(workspace, out["run_id"]))
    assert "TestsStarted" not in types and "StateChanged:verify" not in types
    assert (workspace / "package.json").read_text() == pkg
    assert (workspace / "a.test.js").is_file()
    install = _artifact(workspace, out["run_id"], "install.json")
    assert install["exitCode"] != 0 and not install["ok"]
    assert not (workspace / ".kodr" / "runs" / out["run_id"] / "tests.json").exists()


def test_no_test_executed_fails_even_on_exit_zero(workspace: Path) -> None:
    pkg = json.dumps({"name": "x", "version": "1.0.0", "scripts": {"test": "echo all good"}})
    with ScriptedServer([envelope({"package.json": pkg})]) as srv:
        r = kodr("run", "-p", "x", "--base-url", srv.base_url, "--test", "npm test", "--json", cwd=workspace)
    out = r.json()
    assert r.code == 10
    assert (out["state"], out["reason"]) == ("failed", "no_verification")
    tests = _artifact(workspace, out["run_id"], "tests.json")
    assert tests["exitCode"] == 0 and tests["total"] == 0 and tests["ok"] is False


def test_hung_test_times_out_and_leaves_no_process(workspace: Path) -> None:
    hang = """const test = require('node:test');
const { spawn } = require('node:child_process');
test('hangs', async () => {
  spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await new Promise(() => setInterval(() => {}, 1000));
});
"""
    pkg = json.dumps({"name": "x", "version": "1.0.0", "scripts": {"test": "node --test"}})
    with ScriptedServer([envelope({"package.json": pkg, "hang.test.js": hang})]) as srv:
        r = kodr(
            "run",
            "-p",
            "x",
            "--base-url",
            srv.base_url,
            "--test",
            "npm test",
            "--test-timeout",
            "3",
            "--json",
            cwd=workspace,
        )
    out = r.json()
    assert r.code == 12
    assert (out["state"], out["reason"]) == ("timed_out", "test_timeout")
    assert tagged_processes(out["run_id"]) == []
    tests = _artifact(workspace, out["run_id"], "tests.json")
    assert tests["timedOut"] is True


def test_test_command_outside_allowlist_is_refused_before_any_model_call(workspace: Path) -> None:
    with ScriptedServer([envelope({"a.txt": "x"})]) as srv:
        r = kodr("run", "-p", "x", "--base-url", srv.base_url, "--test", "rm -rf /", "--json", cwd=workspace)
        assert srv.requests == []
    # refused as bad usage before the run is recorded: exit 2, the allowed commands named, nothing written
    assert r.code == 2 and r.out == ""
    assert "rm -rf /" in r.err and "Allowed: npm test" in r.err
    assert not (workspace / ".kodr").exists()


@pytest.mark.parametrize(
    "bad_path", ["../escaped.txt", "/tmp/kodr-escape-abs.txt", ".git/hooks/pre-commit", "link/evil.txt"]
)
def test_writes_escaping_the_workspace_are_refused(workspace: Path, tmp_path: Path, bad_path: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace / "link").symlink_to(outside, target_is_directory=True)
    before_outside = sorted(p.name for p in tmp_path.iterdir())
    env = envelope({"ok.txt": "fine", bad_path: "pwned"})
    with ScriptedServer([env]) as srv:
        r = kodr("run", "-p", "x", "--base-url", srv.base_url, "--json", cwd=workspace)
    out = r.json()
    assert (out["state"], out["reason"]) == ("failed", "unsafe_write"), r.err
    records = events_of(workspace, out["run_id"])
    refused = [rec.event for rec in records if rec.type == "WritesRefused"]
    assert refused and refused[0].path == bad_path and refused[0].why
    assert "WritesStarted" not in chain(records)
    assert not (workspace / "ok.txt").exists()  # nothing of a refused proposal is written
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before_outside
    assert not Path("/tmp/kodr-escape-abs.txt").exists()


def test_malformed_envelope_retries_once_then_fails(workspace: Path) -> None:
    with ScriptedServer(["I think you should write a file.", '{"summary": 3}']) as srv:
        r = kodr("run", "-p", "x", "--base-url", srv.base_url, "--json", cwd=workspace)
        second = srv.requests[1]["body"]["messages"][-1]["content"]
    out = r.json()
    assert (out["state"], out["reason"]) == ("failed", "invalid_proposal")
    assert "rejected" in second and "no JSON object" in second
    rejected = [rec.event.error for rec in events_of(workspace, out["run_id"]) if rec.type == "ProposalRejected"]
    assert len(rejected) == 2
    assert sorted(p.name for p in workspace.iterdir()) == [".kodr"]


def test_dry_run_prints_the_patch_and_writes_nothing(workspace: Path) -> None:
    (workspace / "calc.js").write_text("module.exports = {};\n")
    before = snapshot(workspace)
    with ScriptedServer([envelope({"calc.js": NODE_IMPL, "calc.test.js": NODE_TEST})]) as srv:
        r = kodr("run", "-p", "x", "--base-url", srv.base_url, "--dry-run", cwd=workspace)
    assert r.code == 0, r.err
    assert "--- a/calc.js" in r.out and "+++ b/calc.js" in r.out and "+const isNumber" in r.out
    assert "--- /dev/null" in r.out and "+++ b/calc.test.js" in r.out
    assert snapshot(workspace) == before
    runs = kodr("runs", "--json", cwd=workspace).json()
    assert runs[0]["state"] == "proposed" and runs[0]["reason"] == "dry_run"


def test_store_commands_read_the_run(workspace: Path) -> None:
    pkg = json.dumps({"name": "x", "version": "1.0.0", "scripts": {"test": "node --test"}})
    with ScriptedServer(
        [
            envelope(
                {
                    "package.json": pkg,
                    "calc.js": "module.exports={add:(a,b)=>a+b}\n",
                    "calc.test.js": "const t=require('node:test');const a=require('node:assert');"
                    "const {add}=require('./calc.js');t('adds',()=>a.equal(add(1,2),3));\n",
                }
            )
        ]
    ) as srv:
        r = kodr("run", "-p", "x", "--base-url", srv.base_url, "--json", cwd=workspace)
    run_id = r.json()["run_id"]
    assert r.json()["state"] == "passed"
    rows = kodr("runs", "--json", cwd=workspace).json()
    assert [row["run_id"] for row in rows] == [run_id]
    shown = kodr("show", run_id[:6], "--json", cwd=workspace).json()
    assert shown["state"] == "passed" and shown["options"]["base_url"] == srv.base_url
    evs = kodr("events", run_id, "--json", cwd=workspace).json()
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    assert evs[-1]["data"]["to_state"] == "passed" and evs[-1]["data"]["reason"] == "verification_passed"
    text = kodr("events", run_id, cwd=workspace).out
    assert "verifying → passed via succeed" in text
    other = workspace.parent / "elsewhere"
    other.mkdir()
    assert kodr("--workspace", str(workspace), "runs", "--json", cwd=other).json()[0]["run_id"] == run_id
    art = workspace / ".kodr" / "runs" / run_id
    # the store's run-head anchor lives beside the artifacts but is not one of them: it is evidence
    # kept outside the database, so `kodr artifacts` leaves it alone and never writes one from the db
    anchor = art / "head.json"
    assert anchor.is_file()
    before = {p.name: p.read_bytes() for p in art.iterdir()}
    for p in art.iterdir():
        if p != anchor:
            p.unlink()
    rewritten = kodr("artifacts", run_id, cwd=workspace)
    assert rewritten.code == 0 and rewritten.out.strip() == str(art)
    assert {p.name: p.read_bytes() for p in art.iterdir()} == before
    anchor.unlink()
    assert kodr("artifacts", run_id, cwd=workspace).code == 0
    assert not anchor.exists()
    assert {p.name: p.read_bytes() for p in art.iterdir()} == {k: v for k, v in before.items() if k != "head.json"}
    missing = kodr("show", "nope", cwd=workspace)
    assert missing.code == 6 and "nope" in missing.err


def test_demo_runs_without_a_model_server(tmp_path: Path) -> None:
    r = kodr("demo", "--keep", str(tmp_path / "demo"), "--json", cwd=tmp_path)
    assert r.code == 0, r.err
    out = r.json()
    assert out["state"] == "passed"
    x = out["explain"]
    assert [t["turn"] for t in x["turns"]] == [0, 1]
    assert x["turns"][1]["failing_before"] and x["turns"][1]["failing_after"] == []
    assert (Path(out["artifacts"]) / "tests.json").is_file()
    text = kodr("demo", "--keep", str(tmp_path / "demo2"), cwd=tmp_path)
    assert text.code == 0 and "verifying → passed" in text.out and "artifacts:" in text.out


@pytest.mark.parametrize(
    "files, refused",
    [
        (
            {
                "package.json": json.dumps(
                    {
                        "name": "x",
                        "version": "1.0.0",
                        "scripts": {"test": "node --test"},
                        "dependencies": {"evil": "git+https://example.invalid/evil.git"},
                    }
                )
            },
            "dependencies.evil",
        ),
        (
            {
                "package.json": json.dumps(
                    {"name": "x", "version": "1.0.0", "dependencies": {"up": "file:../../outside"}}
                )
            },
            "points outside the workspace",
        ),
        ({"requirements.txt": "--index-url http://example.invalid/simple\npytest\n"}, "option '--index-url'"),
    ],
)
def test_hostile_manifest_is_refused_before_anything_runs(workspace: Path, files: dict, refused: str) -> None:
    with ScriptedServer([envelope(files)]) as srv:
        r = kodr("run", "-p", "x", "--base-url", srv.base_url, "--install", "--json", cwd=workspace)
    out = r.json()
    assert r.code == 10
    assert (out["state"], out["reason"]) == ("failed", "install_refused")
    assert any(refused in p for p in out["facts"]["refused"])
    types = chain(events_of(workspace, out["run_id"]))
    assert "InstallStarted" not in types and "TestsStarted" not in types  # nothing was run
    assert not (workspace / "node_modules").exists() and not (workspace / ".venv").exists()
    for name, text in files.items():
        assert (workspace / name).read_text() == text  # the files stay for a repair
    install = _artifact(workspace, out["run_id"], "install.json")
    assert install["ok"] is False and install["refused"]
