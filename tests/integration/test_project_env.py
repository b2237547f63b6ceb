"""The toolchain runs pytest commands in the workspace's .venv and finds kodr's own uv."""

import subprocess

from adapters.toolchain import ProcessToolchain, find_uv, in_project_env, with_tools


def test_uv_is_found_through_the_uv_package_without_path(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    uv = find_uv()
    assert uv is not None and uv.endswith("/uv")
    argv, missing = with_tools(["uv", "venv"])
    assert missing is None and argv[0] == uv


def test_a_missing_uv_names_itself(monkeypatch):
    import uv as uv_pkg

    def gone():
        raise FileNotFoundError("no uv")

    monkeypatch.setattr(uv_pkg, "find_uv_bin", gone)
    monkeypatch.setenv("PATH", "/nonexistent")
    result, _ = ProcessToolchain().install([["uv", "sync"]], cwd="/tmp", timeout_s=5, step_key="k")
    assert not result.ok
    assert "uv not found" in result.error


def test_pytest_runs_in_the_project_venv_or_says_it_is_missing(tmp_path):
    (tmp_path / "test_a.py").write_text("def test_a():\n    assert True\n")
    # No .venv: the command is left as typed.
    assert in_project_env(["pytest"], str(tmp_path)) == (["pytest"], {}, None)
    subprocess.run([find_uv(), "venv", "-q", str(tmp_path / ".venv")], check=True)
    argv, env, problem = in_project_env(["uv", "run", "pytest", "-q"], str(tmp_path))
    assert argv[:4] == ["uv", "run", "--no-sync", "--active"] and env["UV_NO_SYNC"] == "1"
    assert problem == "pytest not installed in the project environment (.venv): run with --install"
    result, _ = ProcessToolchain().test(
        ["python", "-m", "pytest"], "pytest", cwd=str(tmp_path), timeout_s=30, step_key="t"
    )
    assert result.error.startswith("pytest not installed in the project environment")
    assert not result.total
    argv, _, _ = in_project_env(["pytest", "-x"], str(tmp_path))
    assert argv == [str(tmp_path / ".venv" / "bin" / "pytest"), "-x"]


def test_python_m_unittest_runs_with_the_project_venv_python(tmp_path):
    subprocess.run([find_uv(), "venv", "-q", str(tmp_path / ".venv")], check=True)
    argv, env, problem = in_project_env(["python", "-m", "unittest"], str(tmp_path), needs_pytest=False)
    assert argv[0] == str(tmp_path / ".venv" / "bin" / "python") and problem is None
    assert env["VIRTUAL_ENV"] == str(tmp_path / ".venv")
