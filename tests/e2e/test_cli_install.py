"""Issue 12 item 5: kodr installs like any tool (`uv tool install` from the checkout) and its demo's
hints work as printed from that install."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_uv_tool_install_puts_a_working_kodr_on_path(tmp_path: Path) -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is a test dependency"
    checkout = tmp_path / "checkout"  # a clean copy: what a fresh clone holds, no venv, no egg-info
    shutil.copytree(
        ROOT,
        checkout,
        ignore=shutil.ignore_patterns(
            ".venv", "*.egg-info", "__pycache__", ".git", ".kodr", "node_modules", "build", "dist"
        ),
    )
    tools, bin_dir = tmp_path / "tools", tmp_path / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "KODR_"))}
    env.update(
        {
            "UV_TOOL_DIR": str(tools),
            "UV_TOOL_BIN_DIR": str(bin_dir),
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    env.setdefault("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv"))
    installed = subprocess.run(
        [uv, "tool", "install", "--python", sys.executable, str(checkout)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stderr
    kodr = bin_dir / "kodr"
    assert kodr.is_file() and shutil.which("kodr", path=env["PATH"]) == str(kodr)
    work = tmp_path / "work"
    work.mkdir()
    helped = subprocess.run(
        ["kodr", "--help"], cwd=work, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert helped.returncode == 0 and "Commands:" in helped.stdout, helped.stderr
    demo = subprocess.run(
        ["kodr", "demo", "--keep", str(work / "demo")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    hints = re.findall(r"^try: +(.+)$", demo.stdout, re.MULTILINE)
    assert hints and all(h.startswith("kodr ") for h in hints), "on PATH, the hints say a bare `kodr`"
    for hint in hints:
        shown = subprocess.run(hint.split(), cwd=work, env=env, capture_output=True, text=True, check=False, timeout=60)
        assert shown.returncode == 0, (hint, shown.stderr)
