"""The test command: parsed against an allowlist, detected, and planned for a run.

A test command is split with :mod:`shlex` into an argv (never handed to a shell)
and accepted only if it is one of a few known runner invocations::

    npm test [-- ARGS] | npm run <script> [-- ARGS] | yarn test [ARGS] | yarn run <script> [ARGS]
    pnpm test [-- ARGS] | pnpm run <script> [-- ARGS]
    npx mocha|jest|tape|ava [flags] [files…] | npx vitest run [flags] [files…]
    node --test [node test flags] [files/globs…]
    pytest [args] | python -m pytest [args] | python3 -m pytest [args] | uv run pytest [args]
    python -m unittest [args] | python3 -m unittest [args]

Every argument is refused if it holds a NUL, is an absolute path or has a ``..``
segment (also in ``--opt=value``): the run must stay inside the workspace. Flags
that load code from elsewhere or fight with the reporting kodr sets up are refused:
for pytest ``-p`` (except ``-p no:<plugin>``, which only disables), ``--pyargs``
(imports packages from anywhere on sys.path), ``--junitxml``/``--junit-xml`` and
``--result-log``; for node, anything but the test-runner flags listed in
``NODE_TEST_FLAGS`` (so no ``--require``/``--import``/``--test-reporter``); for the
runners behind ``npx``, anything but the flags of ``NPX_RUNNER_FLAGS`` (no config
files, setup files, reporters or ``--require``: they load code or hide results),
and ``npx`` itself is planned with ``--no`` so it never fetches a package. pytest
also refuses ``-o addopts=…`` / ``--override-ini=addopts=…``. An npm, yarn or pnpm
script is the project's contract: it takes extra arguments only after ``--`` (yarn:
directly), each made of plain characters (letters, digits, ``@%+=:,./-``), since the package
manager hands them to a shell.

Structured results: pytest gets ``--junitxml`` on its argv; Node (directly or via
an npm script) gets two reporters through ``NODE_OPTIONS``: ``spec`` to stdout
(what a human reads, and what the text parser falls back to) and ``junit`` to a
file. Verified on Node 20.20 / npm 11: npm itself runs fine with these options, a
script running ``node --test`` (also with several files, whose subprocesses
report back to the parent) writes one junit file, and a plain ``node -e`` is
unaffected. One conflict is known: a script that passes its own
``--test-reporter`` makes Node see mismatched reporter/destination counts and
crash (ERR_INVALID_ARG_VALUE); :func:`plan_test_run` leaves NODE_OPTIONS alone
when given such a script and results come from the text parsers.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kodr_core.errors import RefusedInput, UsageError

#: The runners an allowed test command belongs to.
TestKind = Literal["npm", "node", "pytest", "npx", "unittest"]

ALLOWED = (
    "npm test [-- args]",
    "npm run <script> [-- args]",
    "yarn test",
    "pnpm test",
    "npx mocha|jest|vitest run|tape|ava [args]",
    "node --test [files/globs…]",
    "pytest [args]",
    "python -m pytest [args]",
    "uv run pytest [args]",
    "python -m unittest [args]",
)
#: Flags accepted after ``npx <runner>``; True when it takes a value. Nothing that loads code
#: (config, setup files, --require, reporters) or changes where results go.
NPX_RUNNER_FLAGS: dict[str, dict[str, bool]] = {
    "mocha": {
        "--recursive": False,
        "--bail": False,
        "-b": False,
        "--exit": False,
        "--timeout": True,
        "-t": True,
        "--grep": True,
        "-g": True,
        "--fgrep": True,
        "--invert": False,
        "--extension": True,
        "--spec": True,
        "--sort": False,
        "--check-leaks": False,
        "--retries": True,
    },
    "jest": {
        "--ci": False,
        "--runInBand": False,
        "-i": False,
        "--bail": False,
        "--testNamePattern": True,
        "-t": True,
        "--testPathPattern": True,
        "--verbose": False,
        "--silent": False,
        "--maxWorkers": True,
        "-w": True,
        "--testTimeout": True,
    },
    "vitest": {
        "--bail": True,
        "--testNamePattern": True,
        "-t": True,
        "--silent": False,
        "--testTimeout": True,
        "--maxWorkers": True,
        "--no-file-parallelism": False,
    },
    "tape": {},
    "ava": {
        "--serial": False,
        "-s": False,
        "--fail-fast": False,
        "--match": True,
        "-m": True,
        "--timeout": True,
        "-T": True,
        "--verbose": False,
        "-v": False,
        "--concurrency": True,
        "-c": True,
    },
}
#: ``python -m unittest`` flags (``discover`` takes -s/-p/-t); True when it takes a value.
UNITTEST_FLAGS = {
    "-v": False,
    "-q": False,
    "-f": False,
    "--failfast": False,
    "-b": False,
    "--buffer": False,
    "-c": False,
    "--catch": False,
    "-k": True,
    "--locals": False,
    "--durations": True,
    "-s": True,
    "--start-directory": True,
    "-p": True,
    "--pattern": True,
    "-t": True,
    "--top-level-directory": True,
}
_SCRIPT_NAME = re.compile(r"[\w][\w:.-]*")
_SCRIPT_ARG = re.compile(r"[\w@%+=:,./-]+")
NPM_DEFAULT_TEST = 'echo "Error: no test specified" && exit 1'

#: node test-runner flags accepted after ``node --test``; True when it takes a value.
NODE_TEST_FLAGS = {
    "--test-name-pattern": True,
    "--test-skip-pattern": True,
    "--test-concurrency": True,
    "--test-timeout": True,
    "--test-shard": True,
    "--test-only": False,
    "--test-force-exit": False,
    "--experimental-test-coverage": False,
}
#: pytest options that take their value as the next argument (so it is not a path).
PYTEST_VALUE_OPTS = frozenset(
    [
        "-k",
        "-m",
        "-o",
        "-c",
        "-W",
        "-r",
        "-n",
        "--deselect",
        "--ignore",
        "--ignore-glob",
        "--rootdir",
        "--maxfail",
        "--tb",
        "--durations",
        "--basetemp",
        "--confcutdir",
        "--import-mode",
        "--log-level",
        "--override-ini",
        "--config-file",
        "--capture",
        "--junit-prefix",
        "--timeout",
        "--color",
        "--log-cli-level",
    ]
)
PYTEST_REFUSED = ("--pyargs", "--junitxml", "--junit-xml", "--result-log")
#: Command kinds that run a project's own script: kodr cannot narrow them to the failing files.
NOT_NARROWABLE = frozenset({"npm", "npx", "unittest"})


@dataclass(frozen=True)
class TestCommand:
    __test__ = False  # not a pytest test class

    argv: list[str]
    kind: TestKind

    def __str__(self) -> str:
        return shlex.join(self.argv)


def _refuse(command: str, why: str) -> UsageError:
    return UsageError(f"test command {command!r} refused: {why}. Allowed: " + "; ".join(ALLOWED))


def check_arg(arg: str) -> str | None:
    """Why an argument is refused (None when fine): NUL, absolute path, ``..``."""
    if "\0" in arg:
        return "an argument contains a NUL byte"
    values = [arg]
    if arg.startswith("-") and "=" in arg:
        values.append(arg.split("=", 1)[1])
    for v in values:
        if v.startswith(("/", "\\")) or re.match(r"^[a-zA-Z]:[\\/]", v):
            return f"{arg!r} is an absolute path"
        if ".." in re.split(r"[\\/]", v):
            return f"{arg!r} leaves the workspace ('..')"
    return None


def parse_test_command(s: str) -> TestCommand:
    """Parse and check a user's ``--test`` string; raises UsageError when refused."""
    if "\0" in s:
        raise _refuse(s.replace("\0", "\\0"), "it contains a NUL byte")
    try:
        argv = shlex.split(s)
    except ValueError as e:
        raise _refuse(s, f"it does not parse ({e})") from None
    if not argv:
        raise _refuse(s, "it is empty")

    if argv[0] in ("npm", "yarn", "pnpm"):
        kind, rest = "npm", _script_args(s, argv)
    elif argv[0] == "npx":
        kind, rest = "npx", _npx_args(s, argv)
    elif argv[0] == "node":
        if argv[1:2] != ["--test"]:
            raise _refuse(s, "node is allowed only as 'node --test [files…]'")
        kind, rest = "node", argv[2:]
    elif argv[0] == "pytest":
        kind, rest = "pytest", argv[1:]
    elif (argv[0] in ("python", "python3") and argv[1:3] == ["-m", "pytest"]) or argv[:3] == ["uv", "run", "pytest"]:
        kind, rest = "pytest", argv[3:]
    elif argv[0] in ("python", "python3") and argv[1:3] == ["-m", "unittest"]:
        kind, rest = "unittest", argv[3:]
    else:
        raise _refuse(s, "not a known test runner invocation")

    for a in rest:
        why = check_arg(a)
        if why:
            raise _refuse(s, why)
    if kind == "node":
        _check_node_args(s, rest)
    elif kind == "pytest":
        _check_pytest_args(s, rest)
    elif kind == "npx":
        runner = argv[1]
        _check_flags(s, rest, NPX_RUNNER_FLAGS[runner], f"{runner} flag")
    elif kind == "unittest":
        _check_flags(s, rest[1:] if rest[:1] == ["discover"] else rest, UNITTEST_FLAGS, "unittest flag")
    return TestCommand(argv, kind)  # type: ignore[arg-type]


def script_name(cmd: TestCommand) -> str | None:
    """The package.json script an npm/yarn/pnpm command runs (``test`` or ``run <name>``), else None."""
    if cmd.kind != "npm":
        return None
    return cmd.argv[2] if cmd.argv[1:2] == ["run"] and len(cmd.argv) > 2 else "test"


def _script_args(s: str, argv: list[str]) -> list[str]:
    """The extra arguments of ``npm|yarn|pnpm test`` / ``… run <script>``, checked; refuses anything else."""
    pm = argv[0]
    if argv[1:2] == ["test"]:
        extra = argv[2:]
    elif argv[1:2] == ["run"] and len(argv) >= 3 and _SCRIPT_NAME.fullmatch(argv[2]):
        extra = argv[3:]
    else:
        raise _refuse(s, f"{pm} is allowed only as '{pm} test' or '{pm} run <script>' (a script name of "
                         "letters, digits and ':._-')")  # fmt: skip
    if extra and pm != "yarn":
        if extra[0] != "--":
            raise _refuse(s, f"arguments to an {pm} script go after '--'")
        extra = extra[1:]
    for a in extra:
        if a.startswith("--watch"):
            raise _refuse(s, f"{a!r} would never end (watch mode)")
        if not _SCRIPT_ARG.fullmatch(a):
            raise _refuse(s, f"script argument {a!r} is not plain (letters, digits and @%+=:,./- only)")
    return extra


def _npx_args(s: str, argv: list[str]) -> list[str]:
    runner = argv[1] if len(argv) > 1 else ""
    if runner not in NPX_RUNNER_FLAGS:
        raise _refuse(s, "npx is allowed only as 'npx mocha|jest|vitest run|tape|ava [args]'")
    if runner == "vitest":
        if argv[2:3] != ["run"]:
            raise _refuse(s, "vitest is allowed only as 'npx vitest run' (watch mode never ends)")
        return argv[3:]
    return argv[2:]


def _check_flags(s: str, args: list[str], flags: Mapping[str, bool], what: str, where: str = "") -> None:
    """Every option in ``args`` is one of ``flags`` (True: it takes a value, skipped when not ``=``-joined)."""
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-"):
            name = a.split("=", 1)[0]
            if name not in flags:
                raise _refuse(s, f"{what} {name!r} is not allowed{where}")
            if flags[name] and "=" not in a:
                i += 1  # its value
        i += 1


def _check_node_args(s: str, args: list[str]) -> None:
    _check_flags(s, args, NODE_TEST_FLAGS, "node flag", " after --test")


def _check_pytest_args(s: str, args: list[str]) -> None:
    _refuse_pytest_overrides(s, args)
    for i, a in enumerate(args):
        name = a.split("=", 1)[0]
        if name in PYTEST_REFUSED:
            raise _refuse(s, f"pytest option {name!r} is not allowed")
        value = (
            a.split("=", 1)[1]
            if name == "--override-ini" and "=" in a
            else (
                args[i + 1]
                if a in ("-o", "--override-ini") and i + 1 < len(args)
                else a[2:]
                if a.startswith("-o")
                else ""
            )
        )
        if value.replace(" ", "").startswith("addopts="):
            raise _refuse(s, "overriding pytest's addopts ('-o addopts=…') is not allowed")
        if a == "-p" or (a.startswith("-p") and not a.startswith("--")):
            value = args[i + 1] if a == "-p" and i + 1 < len(args) else a[2:]
            if not value.startswith("no:"):
                raise _refuse(s, "pytest plugin loading ('-p <plugin>') is not allowed; '-p no:<plugin>' is")


#: Long options that rewrite pytest's configuration or delete directories: refused in
#: any spelling (``--opt=v``, ``--opt v``, an argparse abbreviation).
PYTEST_CONFIG_REFUSED = ("--override-ini", "--config-file", "--basetemp", "--confcutdir", "--inifile")
#: ini keys ``-o key=value`` may set: display only (``addopts`` would smuggle any option in).
PYTEST_INI_ALLOWED = frozenset({"log_cli", "log_cli_level", "console_output_style", "xfail_strict", "junit_family"})
_PYTEST_SHORT_VALUE = "kmocWrn"


def _refuse_pytest_overrides(s: str, args: list[str]) -> None:
    """``-o``/``--override-ini``, ``-c``, ``--basetemp``… and ``-p`` hidden in a short-option cluster."""
    for i, a in enumerate(args):
        if a.startswith("--") and len(a) > 3:
            name = a.split("=", 1)[0]
            hit = next((r for r in PYTEST_CONFIG_REFUSED if r.startswith(name) and len(name) >= 5), None)
            if hit:
                raise _refuse(s, f"pytest option {hit!r} rewrites pytest's configuration or empties a directory")
        elif a.startswith("-") and len(a) > 1 and a != "-":
            for j, c in enumerate(a[1:], 1):
                if c not in _PYTEST_SHORT_VALUE and c != "p":
                    continue
                value = a[j + 1 :].lstrip("=") or (args[i + 1] if i + 1 < len(args) else "")
                if c == "c":
                    raise _refuse(s, "pytest option '-c' (another config file) is not allowed")
                if c == "o" and value.split("=", 1)[0].strip() not in PYTEST_INI_ALLOWED:
                    raise _refuse(
                        s, f"pytest '-o {value}' is not allowed (only {', '.join(sorted(PYTEST_INI_ALLOWED))})"
                    )
                if c == "p" and not value.startswith("no:"):
                    raise _refuse(s, "pytest plugin loading ('-p <plugin>') is not allowed; '-p no:<plugin>' is")
                break


def _pytest_positionals(args: list[str]) -> list[int]:
    """Indexes of positional (path / node id) arguments among pytest args."""
    out, skip = [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
        elif a.startswith("-"):
            skip = a in PYTEST_VALUE_OPTS or a == "-p"
        else:
            out.append(i)
    return out


# -- detection ----------------------------------------------------------------------

NODE_TEST_GLOBS = ("*.test.js", "*.test.mjs", "*.test.cjs", "test/*.js", "test/*.mjs", "test/*.cjs")
PY_TEST_GLOBS = ("test_*.py", "*_test.py")


def detect_test_command(files: set[str], package_json: Mapping[str, Any] | None) -> TestCommand | None:
    """The command a workspace's files imply, or None (the run then cannot verify).

    Order: package.json ``scripts.test`` (unless npm's placeholder) → ``npm test``;
    node test files → ``node --test`` (Node's own discovery finds them); Python
    manifests or test files → ``python -m pytest`` (``python`` resolves to the
    workspace's ``.venv`` first, and ``-m`` puts the workspace on sys.path).
    """
    scripts = (package_json or {}).get("scripts")
    test = scripts.get("test") if isinstance(scripts, dict) else None
    if isinstance(test, str) and test.strip() and "no test specified" not in test:
        return TestCommand(["npm", "test"], "npm")
    names = [
        n for n in (f.replace("\\", "/") for f in files) if not any(d in "/" + n for d in ("/node_modules/", "/.venv/"))
    ]
    base = [n.rsplit("/", 1)[-1] for n in names]
    if any(fnmatch.fnmatch(b, g) for b in base for g in NODE_TEST_GLOBS if "/" not in g) or any(
        "/test/" in "/" + n and n.endswith((".js", ".mjs", ".cjs")) for n in names
    ):
        return TestCommand(["node", "--test"], "node")
    if (
        {"pyproject.toml", "requirements.txt", "setup.py"} & set(names)
        or any(n.startswith("tests/") for n in names)
        or any(fnmatch.fnmatch(b, g) for b in base for g in PY_TEST_GLOBS)
    ):
        return TestCommand(["python", "-m", "pytest"], "pytest")
    return None


# -- planning a run ---------------------------------------------------------------------


def node_options(junit_path: str, inherited: str = "") -> str:
    """NODE_OPTIONS that add a junit file reporter next to the spec reporter on stdout."""
    dest = f"--test-reporter-destination={junit_path}"
    if re.search(r'[\s"\\]', junit_path):
        dest = '"' + dest.replace("\\", "\\\\").replace('"', '\\"') + '"'
    opts = f"--test-reporter=spec --test-reporter-destination=stdout --test-reporter=junit {dest}"
    return f"{inherited} {opts}".strip()


def plan_test_run(
    cmd: TestCommand,
    junit_path: str,
    only_files: list[str] | None = None,
    *,
    script: str | None = None,
    inherited_node_options: str = "",
) -> tuple[list[str], dict[str, str]]:
    """The argv and extra env for one run that also writes junit XML to ``junit_path``.

    ``only_files`` narrows the run to those files (pytest, node --test; an npm script
    cannot be narrowed reliably, so npm runs the full suite). ``script`` is the npm
    script's text, if known: one that sets its own reporters gets no NODE_OPTIONS.
    The caller creates ``junit_path``'s directory (Node's junit reporter does not, and
    exits 7 without it), removes a stale file before running, and passes the parent's
    NODE_OPTIONS as ``inherited_node_options`` so they are kept. An npm script that
    runs the Node runner twice leaves only the second run's junit (the text parser
    sums both summaries, but junit is preferred): a known limit.
    """
    for f in only_files or []:
        why = check_arg(f)
        if why or f.startswith("-"):
            raise RefusedInput(f"test file {f!r} refused: {why or 'looks like an option'}")
    argv = list(cmd.argv)
    env: dict[str, str] = {}
    if cmd.kind == "pytest":
        head = 1 if argv[0] == "pytest" else 3
        args = argv[head:]
        if only_files:
            drop = set(_pytest_positionals(args))
            args = [a for i, a in enumerate(args) if i not in drop] + list(only_files)
        argv = (
            argv[:head]
            + args
            + [
                f"--junitxml={junit_path}",
                "-o",
                "junit_family=xunit1",
                "-p",
                "no:cacheprovider",
            ]
        )
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return argv, env
    if cmd.kind == "unittest":
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return argv, env
    if cmd.kind == "npx":
        return ["npx", "--no", *argv[1:]], env  # never fetch a runner the project does not have
    if cmd.kind == "node" and only_files:
        flags, rest, i = [], argv[2:], 0
        while i < len(rest):
            if rest[i].startswith("-"):
                flags.append(rest[i])
                takes_value = NODE_TEST_FLAGS.get(rest[i].split("=", 1)[0]) and "=" not in rest[i]
                if takes_value and i + 1 < len(rest):
                    flags.append(rest[i + 1])
                    i += 1
            i += 1
        argv = argv[:2] + flags + list(only_files)
    if script is not None and "--test-reporter" in script:
        return argv, env
    env["NODE_OPTIONS"] = node_options(junit_path, inherited_node_options)
    return argv, env
