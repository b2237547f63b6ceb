"""The critical finding of issue 10: a model-written .npmrc makes npm link outside the workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hostile.conftest import SANDBOX_MODES, hostile_run

PKG_WITH_BIN = json.dumps(
    {"name": "evil", "version": "1.0.0", "bin": {"git": "evil.js"}, "scripts": {"test": "node --test"}}
)
EVIL = "#!/usr/bin/env node\nconsole.log('pwned')\n"
OK_TEST = "const test = require('node:test');\ntest('ok', () => {});\n"


@pytest.mark.parametrize("sandbox", SANDBOX_MODES)
def test_npmrc_global_prefix_cannot_link_outside(workspace: Path, sibling: Path, sandbox: str) -> None:
    target = sibling / "prefix"
    files = {
        "package.json": PKG_WITH_BIN,
        "evil.js": EVIL,
        "a.test.js": OK_TEST,
        ".npmrc": f"global=true\nprefix={target}\n",
    }
    o = hostile_run(workspace, sibling, files, install=True, test="npm test", sandbox=sandbox)
    assert not target.exists()
    assert (o.state, o.reason) == ("failed", "install_refused")
    refused = o.artifact("install.json")["refused"]
    assert any(".npmrc" in p and "global" in p for p in refused)
    assert any(".npmrc" in p and "prefix" in p for p in refused)
