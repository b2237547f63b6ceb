"""Install and verify through the process runner, turning results into install.json/tests.json.

Test runs write JUnit XML to a private temporary file (pytest's ``--junitxml``, Node's
junit reporter via NODE_OPTIONS), so counts come from the runner's own report, with
the text parsers as the fallback. No report and no counts means no test ran.

``uv`` is kodr's own runtime dependency: its binary is found through the ``uv``
package (:func:`uv.find_uv_bin`) before PATH, so a plain ``pip install kodr`` can
install Python projects. A tool that cannot be found gives a result naming it,
never a bare ``exit None``.

A Python test command runs in the project environment ``<workspace>/.venv`` when
there is one, whatever the user typed: ``pytest`` and ``python``/``python3`` are
that environment's (never a system pytest that cannot import the project; when
the environment lacks pytest the run says so instead of running), ``uv run`` gets
``--no-sync`` (an install already built the environment; a test run must not
change it), and ``VIRTUAL_ENV``/``PATH``/``UV_NO_SYNC`` point there too.

Dependency sources are kodr's (:class:`kodr_core.sources.DependencySources`): npm gets
``--registry`` explicitly, uv runs with ``UV_NO_CONFIG`` and ``UV_DEFAULT_INDEX``, and
tests run with ``UV_NO_SYNC`` so ``uv run`` never installs what ``--install`` would
have refused. Tests run without network in the OS sandbox unless ``test_network``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from adapters.processes import SubprocessRunner, utc_now
from kodr_core.ports import ProcessResult
from kodr_core.results import Confinement, InstallResult, TestResult, build_install_json, build_tests_json
from kodr_core.runners import report_from_outputs
from kodr_core.sources import DEFAULT_SOURCES, DependencySources
from kodr_core.test_command import TestCommand, TestKind, plan_test_run, script_name


def find_uv() -> str | None:
    """The uv binary: the one kodr depends on (the ``uv`` package), else PATH, else None."""
    try:
        import uv

        found = uv.find_uv_bin()
        if found and os.access(found, os.X_OK):
            return str(found)
    except (ImportError, FileNotFoundError, OSError):
        pass
    return shutil.which("uv")


def _missing(argv: Sequence[str], cwd: str, error: str) -> ProcessResult:
    now = utc_now()
    return ProcessResult(argv=list(argv), cwd=cwd, exit_code=None, timed_out=False, duration_ms=0,
                         started_at=now, finished_at=now, stdout="", stderr="", error=error)  # fmt: skip


def with_tools(argv: Sequence[str]) -> tuple[list[str], str | None]:
    """``argv`` with ``uv`` made absolute (kodr's own uv), or an error naming what is missing."""
    out = list(argv)
    if out and out[0] == "uv":
        uv = find_uv()
        if uv is None:
            return out, "uv not found: it is a dependency of kodr (pip install uv), looked in the uv package and PATH"
        out[0] = uv
    return out, None


def in_project_env(argv: Sequence[str], cwd: str, *, needs_pytest: bool = True
                   ) -> tuple[list[str], dict[str, str], str | None]:  # fmt: skip
    """A pytest command rewritten to run in ``<cwd>/.venv``: (argv, env, error when it cannot).

    Without a ``.venv`` the command is left as typed (the runner resolves it on PATH).
    """
    out = list(argv)
    venv = os.path.join(cwd, ".venv")
    vbin = os.path.join(venv, "bin")
    if not out or not os.path.isfile(os.path.join(vbin, "python")):
        return out, {}, None
    env = {"VIRTUAL_ENV": venv, "PATH": vbin + os.pathsep + os.environ.get("PATH", os.defpath), "UV_NO_SYNC": "1"}
    has_pytest = os.path.isfile(os.path.join(vbin, "pytest"))
    if out[0] == "uv" and out[1:2] == ["run"]:
        out = out[:2] + ["--no-sync", "--active"] + out[2:]
    elif out[0] == "pytest":
        out[0] = os.path.join(vbin, "pytest")
    elif out[0] in ("python", "python3"):
        out[0] = os.path.join(vbin, "python")
    if needs_pytest and not has_pytest:
        return out, env, "pytest not installed in the project environment (.venv): run with --install"
    return out, env, None


def source_env(sources: DependencySources) -> dict[str, str]:
    """Every child's view of where packages come from: kodr's configuration, not the project's."""
    return {
        "npm_config_registry": sources.npm_registry,
        "UV_NO_CONFIG": "1",
        "UV_DEFAULT_INDEX": sources.pypi_index,
        "PIP_CONFIG_FILE": os.devnull,
    }


def with_sources(argv: Sequence[str], sources: DependencySources) -> list[str]:
    """npm commands name the registry on the command line, where no config file outranks it."""
    argv = list(argv)
    if argv[:1] == ["npm"]:
        return [*argv, f"--registry={sources.npm_registry}"]
    if argv[:1] == ["uv"]:
        return [argv[0], "--no-config", *argv[1:]]
    return argv


def store_env(base: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, str]:
    """pnpm's content store inside kodr's npm cache (``<npm cache>/pnpm-store``): the sandbox
    binds that cache read-write, while pnpm's default (~/.local/share/pnpm) is read-only there."""
    from adapters.sandbox import package_caches

    return {"npm_config_store_dir": os.path.join(package_caches(base)["npm_config_cache"], "pnpm-store")}


class ProcessToolchain:
    def __init__(
        self,
        runner: SubprocessRunner | None = None,
        *,
        sources: DependencySources = DEFAULT_SOURCES,
        test_network: bool = False,
    ) -> None:
        self.runner = runner or SubprocessRunner()
        self.sources = sources
        self.test_network = test_network

    def confinement(self, step: str) -> dict[str, Any]:
        """What the next ``install``/``tests`` step runs in, for its Started event."""
        from adapters.sandbox import SandboxUnavailable

        try:
            return self.runner.confinement(network=step != "tests" or self.test_network).facts()
        except SandboxUnavailable as e:
            return {"sandbox": "unavailable", "mode": "required", "network": False, "why": str(e)}

    def install(
        self, commands: Sequence[Sequence[str]], *, cwd: str, timeout_s: float, step_key: str
    ) -> tuple[InstallResult, bytes]:
        results: list[ProcessResult] = []
        remaining = timeout_s
        for planned in commands:
            argv, missing = with_tools(with_sources(planned, self.sources))
            if missing:
                results.append(_missing(planned, cwd, missing))
                break
            res = self.runner.run(
                argv,
                cwd=cwd,
                timeout_s=max(remaining, 0.1),
                step_key=step_key,
                env={**store_env(), **source_env(self.sources)},
                network=True,
            )
            res = dataclasses.replace(res, argv=list(planned))  # the recorded command is the planned one
            results.append(res)
            remaining -= res.duration_ms / 1000
            if res.exit_code != 0 or res.timed_out:
                break
        log = b"".join(r.log for r in results)
        confined = Confinement.model_validate(self.confinement("install"))
        return build_install_json(results, [list(c) for c in commands]).model_copy(
            update={"confinement": confined}
        ), log

    def test(
        self,
        argv: Sequence[str],
        kind: str,
        *,
        cwd: str,
        timeout_s: float,
        step_key: str,
        only_files: Sequence[str] = (),
    ) -> tuple[TestResult, bytes]:
        command = TestCommand(list(argv), cast(TestKind, kind))  # the kind the allowlist parsed it as
        tmp = tempfile.mkdtemp(prefix="kodr-junit-")
        try:
            junit = os.path.join(tmp, "junit.xml")
            script = None
            if kind == "npm":
                try:
                    script = (
                        json.loads(Path(cwd, "package.json").read_text()).get("scripts", {}).get(script_name(command))
                    )  # the script this command runs
                except (OSError, ValueError, AttributeError):
                    script = None
            run_argv, env = plan_test_run(
                command,
                junit,
                list(only_files) or None,
                script=script,
                inherited_node_options=os.environ.get("NODE_OPTIONS", ""),
            )
            env = {**source_env(self.sources), "UV_NO_SYNC": "1", **(env or {})}
            problem = None
            if kind in ("pytest", "unittest"):  # `python -m unittest` runs in the project env too
                run_argv, venv_env, problem = in_project_env(run_argv, cwd, needs_pytest=kind == "pytest")
                env = {**env, **venv_env}
            run_argv, missing = with_tools(run_argv)
            problem = problem or missing
            if problem:
                res = _missing(run_argv, cwd, problem)
                return build_tests_json(res, None, list(argv)), problem.encode()
            res = self.runner.run(
                run_argv,
                cwd=cwd,
                timeout_s=timeout_s,
                env=env,
                step_key=step_key,
                network=self.test_network,
                writable=[tmp],
            )
            xml = Path(junit).read_text(errors="replace") if Path(junit).is_file() else None
            report = report_from_outputs(kind, res.stdout, res.stderr, xml, root=cwd)
            confined = Confinement.model_validate(self.confinement("tests"))
            return build_tests_json(res, report, list(argv)).model_copy(update={"confinement": confined}), res.log
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def kill_orphans(self, step_key: str) -> int:
        return self.runner.kill_orphans(step_key)
