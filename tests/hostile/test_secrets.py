"""Secrets stay out of every stored byte and every prompt (the harness scans .kodr and the requests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import envelope
from tests.hostile.conftest import SECRETS, hostile_run
from tests.support.scripted_server import Turn

DUMP_PROC = """const test = require('node:test');
const fs = require('fs');
test('dump', () => {
  let seen = 0;
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\\d+$/.test(d))) {
    try { console.log(fs.readFileSync(`/proc/${pid}/environ`, 'latin1').replace(/\\0/g, '\\n')); seen++; } catch (e) {}
  }
  for (const k of Object.keys(process.env)) console.log(k + '=' + process.env[k]);
  console.log('seen', seen);
});
"""


@pytest.mark.parametrize("sandbox", ["required", "off"])
def test_a_test_that_dumps_every_environment_stores_no_secret(workspace: Path, sibling: Path, sandbox: str) -> None:
    o = hostile_run(
        workspace,
        sibling,
        {"package.json": '{"name":"a","version":"1.0.0"}', "dump.test.js": DUMP_PROC},
        test="node --test",
        sandbox=sandbox,
    )
    assert o.state == "passed", o.result.err
    log = o.artifact("tests.json")
    assert log["passed"] == 1
    if sandbox == "off":  # no namespace: the parent's environ is readable, and the scrubber is what holds
        stored = o.stored_bytes()
        assert b"[secret:KODR_API_KEY]" in stored


def test_env_file_is_left_out_of_snapshot_and_prompt_and_scrubbed_from_output(workspace: Path, sibling: Path) -> None:
    env_file = f"KODR_API_KEY={SECRETS['KODR_API_KEY']}\nMARKER=env-file-marker-4411\n"
    reader = (
        "const test = require('node:test');\nconst fs = require('fs');\n"
        "test('reads .env', () => { console.log(fs.readFileSync('.env', 'utf8')); });\n"
    )
    o = hostile_run(
        workspace, sibling, {"r.test.js": reader}, pre={".env": env_file, "app.js": "// app\n"}, test="node --test"
    )
    assert o.state == "passed", o.result.err
    requested = o.events()[0].event
    assert ".env" not in requested.base_snapshot and "app.js" in requested.base_snapshot
    assert b"env-file-marker-4411" in o.stored_bytes()  # the test's own output is kept, the key is not
    assert (workspace / ".env").read_text() == env_file  # the file itself is untouched


def test_a_file_holding_a_secret_value_is_not_snapshotted(workspace: Path, sibling: Path) -> None:
    config = f"module.exports = {{ token: '{SECRETS['DEPLOY_TOKEN']}' }};\n"
    o = hostile_run(workspace, sibling, {"a.txt": "x"}, pre={"config.js": config})
    requested = o.events()[0].event
    assert "config.js" not in requested.base_snapshot
    assert any(s["path"] == "config.js" and "secret" in s["why"] for s in requested.snapshot_skipped)
    assert (workspace / "config.js").read_text() == config


@pytest.mark.parametrize("allow", [False, True])
def test_key_files_reach_the_model_only_when_allowed(workspace: Path, sibling: Path, allow: bool) -> None:
    pre = {
        "id_rsa": "PRIVATE-KEY-MATERIAL-7731\n",
        "certs/server.pem": "PEM-MATERIAL-7732\n",
        ".npmrc": "//registry.npmjs.org/:_authToken=NPM-AUTH-7733\n",
        "main.py": "print(1)\n",
    }
    from tests.support.scripted_server import ScriptedServer  # noqa: F401 - the harness drives it

    o = hostile_run(
        workspace, sibling, {"main.py": "print(2)\n"}, pre=pre, flags=("--allow-secret-files",) if allow else ()
    )
    stored = o.stored_bytes()
    for marker in (b"PRIVATE-KEY-MATERIAL-7731", b"PEM-MATERIAL-7732", b"NPM-AUTH-7733"):
        assert (marker in stored) == allow
    snap = o.events()[0].event.base_snapshot
    assert ("id_rsa" in snap) == allow and "main.py" in snap


def test_a_model_server_echoing_the_key_is_scrubbed(workspace: Path, sibling: Path) -> None:
    echo = Turn(status=401, error=f"Incorrect API key provided: {SECRETS['KODR_API_KEY']}")
    o = hostile_run(workspace, sibling, {}, script=[echo, echo, echo, echo])
    assert o.state == "failed", o.result.err
    assert o.reason and "model" in o.reason  # the user gets the model failure; the harness checks the key is nowhere


def test_a_model_proposing_the_key_into_a_file_stores_it_scrubbed(workspace: Path, sibling: Path) -> None:
    o = hostile_run(workspace, sibling, {}, script=[envelope({"leak.txt": f"k={SECRETS['STRIPE_SECRET']}\n"})])
    assert o.state == "passed" or o.state == "failed"
    assert (workspace / "leak.txt").read_text() == "k=[secret:STRIPE_SECRET]\n"
    assert json.dumps(o.json).find(SECRETS["STRIPE_SECRET"]) == -1
