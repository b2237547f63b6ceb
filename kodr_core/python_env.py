"""What a Python project's test environment must hold, read from its own manifests.

``uv sync`` alone gives a project without its test tools: no pytest, no test
extras, no plugins its pytest config asks for. kodr builds one environment,
``<workspace>/.venv``, with everything the tests need, from what the project
declares:

* the project itself, **editable** (``-e .``) so a repair to ``src/`` is what the
  tests import: ``[project]``, Poetry (``[tool.poetry]`` with a build system),
  ``setup.py`` or ``setup.cfg``;
* its test extras (``[project.optional-dependencies]`` or setup.cfg
  ``extras_require`` or a literal ``extras_require`` in setup.py, named
  test/tests/testing/dev), PEP 735 ``[dependency-groups]`` of those names, Poetry
  groups of those names (and the old ``dev-dependencies``), requirements files
  for tests (``requirements-test.txt``, ``requirements-dev.txt``,
  ``test-requirements.txt``, ``requirements/test.txt``…), and tox.ini
  ``[testenv] deps``;
* pytest, and the plugins its config needs (``--cov`` in ``addopts`` →
  pytest-cov, ``-n`` → pytest-xdist, ``asyncio_mode`` → pytest-asyncio,
  ``required_plugins``…).

Pure: texts in, a :class:`PythonEnv` out. Every requirement taken from a
manifest other than those :func:`kodr_core.install_plan.check_manifests` checks
must match :data:`_REQUIREMENT` (a name, extras, version specifiers, a marker):
URLs, paths and options are dropped and the drop is recorded in ``dropped``.
Poetry constraints (``^1.2``, ``~1.2``) are translated to ``>=``; anything else
Poetry-specific keeps the name only.
"""

from __future__ import annotations

import ast
import configparser
import posixpath
import re
import shlex
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kodr_core.errors import RefusedInput

#: Extras, dependency groups and Poetry groups that hold test dependencies; ``dev`` is
#: taken only when none of the others exists (it often means linters and release tools).
TEST_NAMES = ("test", "tests", "testing", "dev")
#: Requirements files for tests, besides requirements.txt itself.
TEST_REQUIREMENTS = (
    "requirements-test.txt", "requirements-tests.txt", "requirements-dev.txt", "requirements_test.txt",
    "requirements_dev.txt", "test-requirements.txt", "dev-requirements.txt", "requirements/test.txt",
    "requirements/tests.txt", "requirements/dev.txt", "requirements/testing.txt",
)  # fmt: skip
#: The manifest files this module reads (top level, plus requirements/).
SOURCES = ("pyproject.toml", "setup.py", "setup.cfg", "tox.ini", "pytest.ini", "requirements.txt", *TEST_REQUIREMENTS)

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
#: A registry requirement: name, optional extras, optional specifiers, optional marker. No URL, no path.
_REQUIREMENT = re.compile(
    rf"^{_NAME}(?:\s*\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?"
    r"(?:\s*\(?\s*(?:===|==|!=|<=|>=|~=|<|>)\s*[\w.*+!-]+(?:\s*,\s*(?:===|==|!=|<=|>=|~=|<|>)\s*[\w.*+!-]+)*\s*\)?)?"
    r"(?:\s*;\s*[^@]*)?$"
)
_NAME_ONLY = re.compile(rf"^{_NAME}$")

#: addopts flag prefix -> the plugin that provides it.
PLUGIN_FLAGS = {
    "--cov": "pytest-cov", "--no-cov": "pytest-cov", "-n": "pytest-xdist", "--numprocesses": "pytest-xdist",
    "--dist": "pytest-xdist", "--timeout": "pytest-timeout", "--benchmark": "pytest-benchmark",
    "--mypy": "pytest-mypy", "--randomly": "pytest-randomly", "-p randomly": "pytest-randomly",
    "--reruns": "pytest-rerunfailures", "--asyncio-mode": "pytest-asyncio", "--snapshot": "syrupy",
    "--hypothesis": "hypothesis", "--mpl": "pytest-mpl", "--flake8": "pytest-flake8",
    "--doctest-plus": "pytest-doctestplus", "--html": "pytest-html", "--forked": "pytest-forked",
}  # fmt: skip
#: ``-p module`` -> plugin package.
PLUGIN_MODULES = {
    "pytest_cov": "pytest-cov", "xdist": "pytest-xdist", "pytest_timeout": "pytest-timeout",
    "pytest_asyncio": "pytest-asyncio", "pytest_mock": "pytest-mock", "randomly": "pytest-randomly",
    "pytest_benchmark": "pytest-benchmark", "anyio": "anyio", "hypothesis": "hypothesis",
    "pytest_subtests": "pytest-subtests", "subtests": "pytest-subtests",
}  # fmt: skip
#: ini keys -> plugin package.
PLUGIN_KEYS = {"asyncio_mode": "pytest-asyncio", "asyncio_default_fixture_loop_scope": "pytest-asyncio",
               "timeout": "pytest-timeout", "mock_use_standalone_module": "pytest-mock",
               "env": "pytest-env", "django_settings_module": "pytest-django"}  # fmt: skip

Read = Callable[[str], bytes | None]


@dataclass(frozen=True)
class PythonEnv:
    """Everything the project's test environment needs, with where each part came from."""

    project: str | None  # "pyproject" | "poetry" | "setup.py" | "setup.cfg" | None (nothing to install as a package)
    extras: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()  # PEP 735 dependency groups
    requirement_files: tuple[str, ...] = ()  # -r files (requirements.txt and the test ones)
    packages: tuple[str, ...] = ()  # extra requirements: Poetry groups, tox deps, pytest, plugins
    uv_lock: bool = False
    dropped: tuple[str, ...] = ()  # requirements refused, with why
    why: tuple[str, ...] = field(default=())

    def commands(self) -> list[list[str]]:
        """uv argv lists that build ``.venv`` with all of it (uv only, never a shell)."""
        into = ["--python", ".venv/bin/python"]
        out: list[list[str]] = []
        if self.uv_lock and self.project == "pyproject":
            sync = ["uv", "sync", "--frozen"]
            for e in self.extras:
                sync += ["--extra", e]
            for g in self.groups:
                sync += ["--group", g]
            out.append(sync)
            rest: list[str] = []
        else:
            out.append(["uv", "venv", "--allow-existing", ".venv"])
            rest = []
            if self.project is not None:
                rest += ["-e", "." + (f"[{','.join(self.extras)}]" if self.extras else "")]
            for g in self.groups:
                rest += ["--group", g]
        for f in self.requirement_files:
            rest += ["-r", f]
        rest += list(self.packages)
        if rest:
            out.append(["uv", "pip", "install", *into, *rest])
        return out


def _text(read: Read, name: str) -> str | None:
    data = read(name)
    return data.decode("utf-8", "replace") if data is not None else None


def _ini(text: str | None) -> configparser.ConfigParser | None:
    if text is None:
        return None
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cp.read_string(text)
    except configparser.Error:
        return None
    return cp


def _keep(reqs: Iterable[Any], source: str, kept: list[str], dropped: list[str]) -> None:
    for r in reqs:
        if not isinstance(r, str):
            continue
        r = r.split(" #", 1)[0].strip()
        if not r or r.startswith("#"):
            continue
        if _REQUIREMENT.match(r):
            kept.append(r)
        else:
            dropped.append(f"{source}: {r[:80]!r} is not a plain registry requirement")


def _poetry_requirement(name: str, spec: Any) -> str:
    """``^1.2``/``~1.2`` become ``>=1.2``; an exact or PEP 440 spec stays; anything else: the name."""
    version = spec.get("version") if isinstance(spec, dict) else spec
    if isinstance(spec, dict) and ("git" in spec or "url" in spec or "path" in spec):
        return "\0"  # refused below
    if not isinstance(version, str) or version.strip() in ("*", ""):
        return name
    v = version.strip()
    if v[0] in "^~" and v[1:2] != "=":
        return f"{name}>={v[1:].strip()}"
    if re.match(r"^\d", v):
        return f"{name}=={v}"
    return f"{name}{v}"


def _pyproject(data: dict[str, Any], packages: list[str], dropped: list[str], why: list[str]
               ) -> tuple[str | None, list[str], list[str]]:  # fmt: skip
    project = data.get("project")
    extras: list[str] = []
    groups: list[str] = []
    kind: str | None = None
    if isinstance(project, dict):
        kind = "pyproject"
        optional = project.get("optional-dependencies") or {}
        extras = [n for n in TEST_NAMES if isinstance(optional, dict) and n in optional]
        why.append("[project]" + (f" with extras {extras}" if extras else ""))
    poetry = ((data.get("tool") or {}).get("poetry")) or {}
    if kind is None and isinstance(poetry, dict) and poetry:
        kind = "poetry"
        why.append("[tool.poetry]")
    if isinstance(poetry, dict):
        specs: dict[str, Any] = {}
        for name in TEST_NAMES:
            grp = ((poetry.get("group") or {}).get(name) or {}).get("dependencies") or {}
            specs.update(grp if isinstance(grp, dict) else {})
        old = poetry.get("dev-dependencies") or {}
        specs.update(old if isinstance(old, dict) else {})
        reqs = [_poetry_requirement(n, s) for n, s in specs.items() if isinstance(n, str) and n != "python"]
        if specs:
            why.append(f"Poetry test/dev dependencies ({len(reqs)})")
        _keep(reqs, "[tool.poetry] test/dev group", packages, dropped)
    dep_groups = data.get("dependency-groups") or {}
    if isinstance(dep_groups, dict):
        groups = [n for n in TEST_NAMES if n in dep_groups]
        if groups:
            why.append(f"[dependency-groups] {groups}")
    return kind, extras, groups


def _setup_cfg_extras(cp: configparser.ConfigParser | None) -> list[str]:
    if cp is None or not cp.has_section("options.extras_require"):
        return []
    return [n for n in TEST_NAMES if cp.has_option("options.extras_require", n)]


def _setup_py_extras(text: str | None) -> list[str]:
    """The test extras a setup.py declares as a literal ``extras_require={...}`` (never executed)."""
    if not text:
        return []
    keys: set[str] = set()
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        tree = None
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "extras_require" and isinstance(node.value, ast.Dict):
                keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
            if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value in TEST_NAMES
                                                  for k in node.keys):  # fmt: skip
                keys |= {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return [n for n in TEST_NAMES if n in keys]


def _tox_deps(cp: configparser.ConfigParser | None, files: set[str], req_files: list[str], extras: list[str],
              packages: list[str], dropped: list[str]) -> None:  # fmt: skip
    if cp is None or not cp.has_section("testenv"):
        return
    if cp.has_option("testenv", "extras"):
        for e in re.split(r"[\s,]+", cp.get("testenv", "extras")):
            if e in TEST_NAMES and e not in extras:
                extras.append(e)
    if not cp.has_option("testenv", "deps"):
        return
    reqs = []
    for line in cp.get("testenv", "deps").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r"):
            ref = line[2:].strip().removeprefix("{toxinidir}/")
            if ref in files and ref not in req_files:
                req_files.append(ref)
            else:
                dropped.append(f"tox.ini deps: {line[:80]!r} names no requirements file kodr reads")
            continue
        line = re.sub(r"^[\w,{}-]+:\s*", "", line)  # factor-conditional deps: take them all
        if "{" in line:
            dropped.append(f"tox.ini deps: {line[:80]!r} uses a substitution")
            continue
        reqs.append(line)
    _keep(reqs, "tox.ini deps", packages, dropped)


def requirements_file_problem(name: str, text: str, files: set[str]) -> str | None:
    """Why a test requirements file is not used (None when every line is a registry requirement,
    ``-e .``/``.``, or ``-r``/``-c`` naming another workspace file)."""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or _REQUIREMENT.match(line) or line in (".", "-e .", "-e.", "--editable ."):
            continue
        m = re.match(r"^(?:-r|-c|--requirement|--constraint)\s*=?\s*(\S+)$", line)
        if m:
            ref = posixpath.normpath(posixpath.join(posixpath.dirname(name), m[1]))
            if ref in files and not ref.startswith(".."):
                continue
        return f"{name} line {n}: {line[:80]!r} is not a registry requirement; the file is not installed"
    return None


def pytest_plugins(read: Read) -> list[str]:
    """Plugin packages the project's pytest configuration needs to start at all."""
    sources: list[tuple[str, dict[str, Any]]] = []
    for name, section in (("pytest.ini", "pytest"), ("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        cp = _ini(_text(read, name))
        if cp is not None and cp.has_section(section):
            sources.append((name, dict(cp.items(section))))
    pyproject = _text(read, "pyproject.toml")
    if pyproject:
        try:
            tool = tomllib.loads(pyproject).get("tool") or {}
        except tomllib.TOMLDecodeError:
            tool = {}
        pt = tool.get("pytest") or {}
        if isinstance(pt, dict):
            ini = pt.get("ini_options")
            sources.append(("pyproject.toml", ini if isinstance(ini, dict) else {k: v for k, v in pt.items()}))
    found: list[str] = []
    for _name, cfg in sources:
        addopts = cfg.get("addopts") or ""
        if isinstance(addopts, list):
            opts = [str(a) for a in addopts]
        else:
            try:
                opts = shlex.split(str(addopts))
            except ValueError:
                opts = str(addopts).split()
        for i, opt in enumerate(opts):
            for flag, plugin in PLUGIN_FLAGS.items():
                if opt == flag or opt.startswith(flag + "=") or (flag.startswith("--") and opt.startswith(flag + "-")):
                    found.append(plugin)
            if opt == "-p" and i + 1 < len(opts) or opt.startswith("-p") and len(opt) > 2:
                mod = opts[i + 1] if opt == "-p" else opt[2:]
                if mod in PLUGIN_MODULES:
                    found.append(PLUGIN_MODULES[mod])
        for key, plugin in PLUGIN_KEYS.items():
            if key in cfg:
                found.append(plugin)
        required = cfg.get("required_plugins") or []
        for r in required if isinstance(required, list) else str(required).split():
            name = re.split(r"[<>=!~]", str(r), maxsplit=1)[0]
            if _NAME_ONLY.match(name):
                found.append(name)
    return list(dict.fromkeys(found))


def python_env(files: set[str], read: Read) -> PythonEnv:
    """The environment a Python workspace's tests need, or RefusedInput saying why there is none.

    ``files`` is the workspace's file list (top-level names decide the kind);
    ``read`` gives a manifest's bytes.
    """
    top = {f for f in files if "/" not in f}
    packages: list[str] = []
    dropped: list[str] = []
    why: list[str] = []
    kind: str | None = None
    extras: list[str] = []
    groups: list[str] = []
    pyproject = _text(read, "pyproject.toml") if "pyproject.toml" in top else None
    if pyproject is not None:
        try:
            data = tomllib.loads(pyproject)
        except tomllib.TOMLDecodeError as e:
            raise RefusedInput(f"pyproject.toml is not valid TOML: {e}") from None
        kind, extras, groups = _pyproject(data, packages, dropped, why)
        if kind == "poetry" and "build-system" not in data:
            kind = None  # a Poetry application without a build system: not installable as a package
            why.append("no [build-system]: the project is not installed, only its dependencies")
    setup_cfg = _ini(_text(read, "setup.cfg")) if "setup.cfg" in top else None
    if kind is None and "setup.py" in top:
        kind = "setup.py"
        extras = _setup_py_extras(_text(read, "setup.py")) or _setup_cfg_extras(setup_cfg)
        why.append("setup.py" + (f" with extras {extras}" if extras else ""))
    elif kind is None and setup_cfg is not None and setup_cfg.has_section("metadata"):
        kind = "setup.cfg"
        extras = _setup_cfg_extras(setup_cfg)
        why.append("setup.cfg" + (f" with extras {extras}" if extras else ""))
    req_files = [f for f in ("requirements.txt", *TEST_REQUIREMENTS) if f in files]
    for f in [f for f in req_files if f != "requirements.txt"]:  # requirements.txt: check_manifests
        problem = requirements_file_problem(f, _text(read, f) or "", files)
        if problem:
            req_files.remove(f)
            dropped.append(problem)
    if req_files:
        why.append("requirements " + ", ".join(req_files))
    _tox_deps(_ini(_text(read, "tox.ini")) if "tox.ini" in top else None, files, req_files, extras, packages, dropped)
    if kind is None and not req_files and not packages:
        if pyproject is not None:
            raise RefusedInput(
                "pyproject.toml has no [project] table (nor an installable [tool.poetry], setup.py, setup.cfg "
                "or requirements file): kodr cannot tell what to install, and `uv sync` would install nothing"
            )
        raise RefusedInput("no Python manifest kodr can install from")
    plugins = pytest_plugins(read)
    packages += ["pytest", *plugins]
    why.append("pytest" + (f" and plugins {plugins} (from the pytest config)" if plugins else ""))
    if any(n != "dev" for n in (*extras, *groups)):
        extras = [e for e in extras if e != "dev"]
        groups = [g for g in groups if g != "dev"]
    return PythonEnv(
        project=kind, extras=tuple(dict.fromkeys(extras)), groups=tuple(groups),
        requirement_files=tuple(req_files), packages=tuple(dict.fromkeys(packages)),
        uv_lock="uv.lock" in top and kind == "pyproject", dropped=tuple(dropped), why=tuple(why),
    )  # fmt: skip
