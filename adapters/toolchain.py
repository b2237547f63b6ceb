"""Install and verify through the process runner, turning results into install.json/tests.json.

Test runs write JUnit XML to a private temporary file (pytest's ``--junitxml``, Node's
junit reporter via NODE_OPTIONS), so counts come from the runner's own report, with
the text parsers as the fallback. No report and no counts means no test ran.

Dependency sources are kodr's (:class:`kodr_core.sources.DependencySources`): npm gets
``--registry`` explicitly, uv runs with ``UV_NO_CONFIG`` and ``UV_DEFAULT_INDEX``, and
tests run with ``UV_NO_SYNC`` so ``uv run`` never installs what ``--install`` would
have refused. Tests run without network in the OS sandbox unless ``test_network``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from adapters.processes import SubprocessRunner
from kodr_core.ports import ProcessResult
from kodr_core.sources import DEFAULT_SOURCES, DependencySources
from kodr_core.test_command import TestCommand, plan_test_run
from kodr_core.test_report import build_install_json, build_tests_json, report_from_outputs


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
    ) -> tuple[dict[str, Any], bytes]:
        results: list[ProcessResult] = []
        remaining = timeout_s
        for argv in commands:
            res = self.runner.run(
                with_sources(argv, self.sources), cwd=cwd, timeout_s=max(remaining, 0.1), step_key=step_key,
                env=source_env(self.sources), network=True,
            )
            results.append(res)
            remaining -= res.duration_ms / 1000
            if res.exit_code != 0 or res.timed_out:
                break
        log = b"".join(r.log for r in results)
        return build_install_json(results, [list(c) for c in commands]) | {"confinement": self.confinement("install")}, log

    def test(
        self,
        argv: Sequence[str],
        kind: str,
        *,
        cwd: str,
        timeout_s: float,
        step_key: str,
        only_files: Sequence[str] = (),
    ) -> tuple[dict[str, Any], bytes]:
        tmp = tempfile.mkdtemp(prefix="kodr-junit-")
        try:
            junit = os.path.join(tmp, "junit.xml")
            script = None
            if kind == "npm":
                try:
                    script = json.loads(Path(cwd, "package.json").read_text()).get("scripts", {}).get("test")
                except (OSError, ValueError, AttributeError):
                    script = None
            run_argv, env = plan_test_run(
                TestCommand(list(argv), kind), junit, list(only_files) or None,
                script=script, inherited_node_options=os.environ.get("NODE_OPTIONS", ""),
            )
            env = {**source_env(self.sources), "UV_NO_SYNC": "1", **(env or {})}
            res = self.runner.run(
                run_argv, cwd=cwd, timeout_s=timeout_s, env=env, step_key=step_key,
                network=self.test_network, writable=[tmp],
            )
            xml = Path(junit).read_text(errors="replace") if Path(junit).is_file() else None
            report = report_from_outputs(kind, res.stdout, res.stderr, xml, root=cwd)
            return build_tests_json(res, report, list(argv)) | {"confinement": self.confinement("tests")}, res.log
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def kill_orphans(self, step_key: str) -> int:
        return self.runner.kill_orphans(step_key)
