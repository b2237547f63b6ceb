"""Where dependencies may come from: the configured registry and index, and nothing a project says.

A model writes the workspace, so every manifest, lockfile and package-manager
configuration file in it is hostile. Before any install, :func:`check_manifests`
names each problem; one problem refuses the install (``install_refused``). The rules:

* **Sources are kodr's, never the project's.** The npm registry and the Python
  package index come from :class:`DependencySources` (kodr's own configuration:
  ``KODR_NPM_REGISTRY``, ``KODR_PYPI_INDEX``; defaults the public npm registry and
  PyPI). Installs pass them explicitly (``npm --registry``, ``UV_DEFAULT_INDEX``) and
  uv runs with ``--no-config``.
* **Project configuration is an allowlist.** ``.npmrc`` keys beyond a few harmless
  ones (``global``, ``prefix``, ``registry``, ``cache``, auth lines, ``script-shell``…
  are all refused), any ``.yarnrc``/``.yarnrc.yml``/``pnpm-workspace.yaml`` setting
  beyond a tiny allowlist, a package.json ``pnpm`` section, ``.pnpmfile.cjs``,
  ``uv.toml``, ``pip.conf``/``pip.ini``, and ``[tool.uv]`` keys beyond the
  dependency-list ones.
* **Every lockfile entry resolves to the configured registry or index with an
  integrity hash** (package-lock.json / npm-shrinkwrap.json ``resolved`` +
  ``integrity``, yarn.lock, pnpm-lock.yaml, uv.lock ``source`` + ``hash``).
* **No URL or out-of-workspace path dependency anywhere**: package.json specs,
  requirements, ``[project]``, dependency groups, ``[tool.uv]`` lists and sources,
  ``[build-system] requires``.

Pure: it reads file bytes through the ``read`` function it is given.
"""

from __future__ import annotations

import json
import posixpath
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

NPM_REGISTRY = "https://registry.npmjs.org/"
PYPI_INDEX = "https://pypi.org/simple/"
#: Hosts that serve PyPI's files: uv.lock wheel/sdist URLs point there, not at pypi.org.
PYPI_FILE_HOSTS = ("files.pythonhosted.org",)
#: yarn v1 writes this mirror of the npm registry into yarn.lock.
YARN_MIRROR = "https://registry.yarnpkg.com/"


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


@dataclass(frozen=True)
class DependencySources:
    """The one npm registry and one Python index an install may use."""

    npm_registry: str = NPM_REGISTRY
    pypi_index: str = PYPI_INDEX

    @classmethod
    def of(cls, env: Mapping[str, str]) -> DependencySources:
        """From kodr's configuration (``KODR_NPM_REGISTRY``, ``KODR_PYPI_INDEX``), else the defaults."""
        npm = (env.get("KODR_NPM_REGISTRY") or "").strip() or NPM_REGISTRY
        pypi = (env.get("KODR_PYPI_INDEX") or "").strip() or PYPI_INDEX
        return cls(npm_registry=_slash(npm), pypi_index=_slash(pypi))

    def npm_prefixes(self) -> tuple[str, ...]:
        if self.npm_registry == NPM_REGISTRY:
            return (NPM_REGISTRY, YARN_MIRROR)
        return (self.npm_registry,)

    def pypi_file_hosts(self) -> tuple[str, ...]:
        host = urlsplit(self.pypi_index).hostname or ""
        return (host, *PYPI_FILE_HOSTS) if self.pypi_index == PYPI_INDEX else (host,)


DEFAULT_SOURCES = DependencySources()


# -- paths and specs ----------------------------------------------------------------

DEPENDENCY_FIELDS = (
    "dependencies",
    "devDependencies",
    "optionalDependencies",
    "peerDependencies",
)
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|[\w.-]+@[\w.-]+:)", re.IGNORECASE)
_GITHUB_SHORTHAND = re.compile(r"^[\w.-]+/[\w.-]+(?:#.*)?$")
_LOCAL_PREFIXES = ("file:", "link:")


def path_leaves(path: str) -> bool:
    """True when a relative path from the workspace root leaves it (absolute, ``~``, ``..``)."""
    if path.startswith(("/", "~", "\\")) or re.match(r"^[a-zA-Z]:[\\/]", path):
        return True
    norm = posixpath.normpath(path.replace("\\", "/"))
    return norm == ".." or norm.startswith("../")


def _spec_problem(spec: str) -> str | None:
    local = None
    for prefix in _LOCAL_PREFIXES:
        if spec.startswith(prefix):
            local = spec[len(prefix) :]
    if local is None and spec.startswith(("./", "../", "/", "~")):
        local = spec
    if local is not None:
        return "points outside the workspace" if path_leaves(local) else None
    if spec.startswith("npm:"):  # an alias of a registry package
        return None
    if _REMOTE.match(spec):
        return "fetches code from outside the npm registry (URL or git)"
    if _GITHUB_SHORTHAND.match(spec):
        return "is a GitHub shorthand (fetches code from outside the npm registry)"
    return None


# -- package.json -------------------------------------------------------------------


def check_package_json(text: str) -> list[str]:
    """Problems that make kodr refuse to install this package.json ([] when fine).

    Refused: text that is not a JSON object; dependency maps that are not objects of
    strings; specs that fetch code from outside the registry (``http(s):``, ``git…:``,
    ``github:``-style and ``user/repo`` shorthands), since they bypass the registry
    kodr is meant to use and can point anywhere; and ``file:``/``link:``/path specs
    that leave the workspace (absolute, ``~``, or climbing with ``..``). Registry
    versions, ranges, tags and ``npm:`` aliases are allowed; ``overrides`` are
    checked the same way, and ``workspaces`` folders must stay inside. A ``pnpm``
    section is configuration, refused like ``.npmrc`` keys. Lifecycle scripts are
    not checked here: the install runs with ``--ignore-scripts``.
    """
    try:
        data = json.loads(text)
    except ValueError as e:
        return [f"package.json is not valid JSON: {e}"]
    if not isinstance(data, dict):
        return ["package.json must be a JSON object"]
    problems: list[str] = []
    for field in DEPENDENCY_FIELDS:
        deps = data.get(field)
        if deps is None:
            continue
        if not isinstance(deps, dict):
            problems.append(f"{field} must be an object")
            continue
        for name, spec in deps.items():
            if not isinstance(spec, str):
                problems.append(f"{field}.{name}: spec must be a string")
                continue
            why = _spec_problem(spec.strip())
            if why:
                problems.append(f"{field}.{name}: {spec!r} {why}")
    problems += _check_overrides(data.get("overrides"), "overrides")
    problems += _check_overrides(data.get("resolutions"), "resolutions")
    if "pnpm" in data:
        problems.append("package.json: the 'pnpm' section is package-manager configuration and is refused")
    workspaces = data.get("workspaces")
    if isinstance(workspaces, dict):
        workspaces = workspaces.get("packages")
    for w in workspaces if isinstance(workspaces, list) else []:
        if isinstance(w, str) and _spec_problem("file:" + w):
            problems.append(f"workspaces: {w!r} points outside the workspace")
    return problems


def _check_overrides(node: object, where: str) -> list[str]:
    """npm ``overrides`` nest objects of specs; a spec there fetches code too."""
    if isinstance(node, str):
        why = _spec_problem(node.strip()) if not node.startswith("$") else None
        return [f"{where}: {node!r} {why}"] if why else []
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _check_overrides(v, f"{where}.{k}")]
    return []


# -- package-manager configuration ----------------------------------------------------

#: ``.npmrc`` keys a project may set: output and save style, never where code comes
#: from, where it goes, or what runs it.
NPMRC_ALLOWED = frozenset(
    {
        "save-exact",
        "save-prefix",
        "engine-strict",
        "legacy-peer-deps",
        "strict-peer-deps",
        "fund",
        "audit",
        "loglevel",
        "progress",
        "update-notifier",
        "package-lock",
        "lockfile-version",
        "color",
        "unicode",
    }
)
YARNRC_YML_ALLOWED = frozenset({"nodeLinker", "enableTelemetry", "enableProgressBars"})
PNPM_WORKSPACE_ALLOWED = frozenset({"packages"})
#: Config files refused whatever they say: kodr never runs the tool that reads them,
#: or the tool reads them from places kodr does not control.
REFUSED_CONFIG_FILES = {
    "uv.toml": "uv configuration is kodr's, not the project's (uv runs with --no-config)",
    "pip.conf": "pip configuration is kodr's, not the project's",
    "pip.ini": "pip configuration is kodr's, not the project's",
    ".pnpmfile.cjs": "a pnpm hook file runs code at install time",
    ".yarnrc": "yarn v1 configuration is refused (kodr installs with npm)",
}
_NPMRC_LINE = re.compile(r"^\s*([^=\s][^=]*?)\s*(?:=\s*(.*?))?\s*$")


def check_npmrc(text: str, name: str = ".npmrc") -> list[str]:
    """Every ``.npmrc`` key outside :data:`NPMRC_ALLOWED`, and any ``${VAR}`` interpolation."""
    problems = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = _NPMRC_LINE.match(line)
        key = (m.group(1) if m else line).strip().strip("'\"")
        value = (m.group(2) or "") if m else ""
        if key.lower() not in NPMRC_ALLOWED:
            what = "an auth or scoped-registry line" if (key.startswith("//") or ":" in key) else f"key {key!r}"
            problems.append(f"{name} line {n}: {what} is refused (only {', '.join(sorted(NPMRC_ALLOWED))})")
        elif "${" in value:
            problems.append(f"{name} line {n}: environment interpolation in {key!r} is refused")
    return problems


def _yaml_top_keys(text: str) -> list[tuple[int, str]]:
    """Top-level ``key:`` names of a simple YAML mapping (enough to refuse config keys)."""
    keys = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw or raw[0] in " \t#-" or raw.startswith("---"):
            continue
        key = raw.split(":", 1)[0].strip().strip("'\"")
        keys.append((n, key))
    return keys


def check_yarnrc_yml(text: str, name: str = ".yarnrc.yml") -> list[str]:
    return [
        f"{name} line {n}: setting {k!r} is refused (only {', '.join(sorted(YARNRC_YML_ALLOWED))})"
        for n, k in _yaml_top_keys(text)
        if k not in YARNRC_YML_ALLOWED
    ]


def check_pnpm_workspace(text: str, name: str = "pnpm-workspace.yaml") -> list[str]:
    problems = [
        f"{name} line {n}: setting {k!r} is refused (only 'packages')"
        for n, k in _yaml_top_keys(text)
        if k not in PNPM_WORKSPACE_ALLOWED
    ]
    for n, raw in enumerate(text.splitlines(), 1):
        item = raw.strip()
        if item.startswith("- ") and path_leaves(item[2:].strip().strip("'\"").lstrip("!")):
            problems.append(f"{name} line {n}: {item[2:]!r} points outside the workspace")
    return problems


# -- lockfiles ----------------------------------------------------------------------


def check_package_lock(
    text: str, sources: DependencySources = DEFAULT_SOURCES, name: str = "package-lock.json"
) -> list[str]:
    """Every entry resolves under the configured registry with an ``integrity`` hash."""
    try:
        data = json.loads(text)
    except ValueError as e:
        return [f"{name} is not valid JSON: {e}"]
    if not isinstance(data, dict):
        return [f"{name} must be a JSON object"]
    problems: list[str] = []
    prefixes = sources.npm_prefixes()

    def entry(where: str, e: object) -> None:
        if not isinstance(e, dict):
            problems.append(f"{name} {where}: entry must be an object")
            return
        if e.get("link") or e.get("bundled") or e.get("inBundle"):
            resolved = e.get("resolved")
            if isinstance(resolved, str) and path_leaves(resolved):
                problems.append(f"{name} {where}: link {resolved!r} points outside the workspace")
            return
        resolved, integrity = e.get("resolved"), e.get("integrity")
        if resolved is not None and (not isinstance(resolved, str) or not resolved.startswith(prefixes)):
            problems.append(
                f"{name} {where}: resolved {resolved!r} is not on the configured registry {sources.npm_registry}"
            )
        if not isinstance(integrity, str) or not integrity.strip():
            problems.append(f"{name} {where}: no integrity hash")

    packages = data.get("packages")
    if isinstance(packages, dict):
        for key, item in packages.items():
            if key == "":
                continue
            if isinstance(item, dict) and not key.startswith("node_modules/") and "/node_modules/" not in key:
                if path_leaves(str(key)):  # a workspace folder
                    problems.append(f"{name} {key!r}: points outside the workspace")
                continue
            entry(repr(key), item)

    def legacy(deps: object, trail: str) -> None:
        if not isinstance(deps, dict):
            return
        for dep, item in deps.items():
            where = f"{trail}{dep}"
            entry(repr(where), item)
            if isinstance(item, dict):
                legacy(item.get("dependencies"), where + " > ")

    if not isinstance(packages, dict):
        legacy(data.get("dependencies"), "")
    return problems


_YARN_RESOLVED = re.compile(r'^\s+resolved\s+"?([^"\s]+)"?', re.MULTILINE)


def check_yarn_lock(text: str, sources: DependencySources = DEFAULT_SOURCES, name: str = "yarn.lock") -> list[str]:
    """yarn v1: each entry's ``resolved`` under the registry, each with ``integrity``; berry refused."""
    if "__metadata:" in text:
        return [f"{name}: a yarn berry lockfile is refused (kodr installs with npm from {sources.npm_registry})"]
    problems = []
    prefixes = sources.npm_prefixes()
    for block in re.split(r"\n(?=\S)", text):
        head = block.split("\n", 1)[0].strip()
        if not head or head.startswith("#"):
            continue
        m = _YARN_RESOLVED.search(block)
        if m is None:
            problems.append(f"{name} {head[:80]!r}: no resolved URL")
            continue
        if not m.group(1).startswith(prefixes):
            problems.append(f"{name} {head[:80]!r}: resolved {m.group(1)[:120]!r} is not on the configured registry")
        if not re.search(r"^\s+integrity\s+\S", block, re.MULTILINE):
            problems.append(f"{name} {head[:80]!r}: no integrity hash")
    return problems


def check_pnpm_lock(text: str, sources: DependencySources = DEFAULT_SOURCES, name: str = "pnpm-lock.yaml") -> list[str]:
    """Every ``resolution`` carries an integrity hash; tarballs only from the registry; no git."""
    problems = []
    prefixes = sources.npm_prefixes()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line.startswith("resolution:"):
            continue
        if "integrity:" not in line:
            problems.append(f"{name} line {n}: resolution without an integrity hash")
        for url in re.findall(r"tarball:\s*['\"]?([^,'\"}\s]+)", line):
            if not url.startswith(prefixes):
                problems.append(f"{name} line {n}: tarball {url[:120]!r} is not on the configured registry")
        if re.search(r"\b(repo|commit|directory|path):", line):
            problems.append(f"{name} line {n}: a git or local resolution is refused")
    return problems


def check_uv_lock(text: str, sources: DependencySources = DEFAULT_SOURCES, name: str = "uv.lock") -> list[str]:
    """Each package from the configured index (sdists and wheels hashed, on its hosts) or the workspace."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return [f"{name} is not valid TOML: {e}"]
    problems: list[str] = []
    index = sources.pypi_index
    hosts = sources.pypi_file_hosts()
    for pkg in data.get("package") or []:
        if not isinstance(pkg, dict):
            problems.append(f"{name}: a [[package]] entry is not a table")
            continue
        who = f"{name} {pkg.get('name')!s}"
        src = pkg.get("source")
        if not isinstance(src, dict) or len(src) != 1:
            problems.append(f"{who}: source {src!r} is not one registry or workspace path")
            continue
        ((kind, where),) = src.items()
        if kind in ("editable", "virtual", "directory", "path"):
            if not isinstance(where, str) or path_leaves(where):
                problems.append(f"{who}: {kind} {where!r} points outside the workspace")
            continue
        if kind != "registry":
            problems.append(f"{who}: a {kind} source is refused (only {index})")
            continue
        if not isinstance(where, str) or _slash(where) != index:
            problems.append(f"{who}: registry {where!r} is not the configured index {index}")
            continue
        files = [pkg["sdist"]] if isinstance(pkg.get("sdist"), dict) else []
        files += [w for w in pkg.get("wheels") or [] if isinstance(w, dict)]
        for f in files:
            url = f.get("url")
            if not isinstance(url, str) or urlsplit(url).scheme != "https" or urlsplit(url).hostname not in hosts:
                problems.append(f"{who}: file {str(url)[:120]!r} is not on the index's hosts ({', '.join(hosts)})")
            if not isinstance(f.get("hash"), str) or not f["hash"].startswith("sha256:"):
                problems.append(f"{who}: file {str(url)[:120]!r} has no sha256 hash")
    return problems


# -- Python manifests ---------------------------------------------------------------

#: pip/uv options that change where code comes from, or read more files.
_REQ_REFUSED_OPTIONS = (
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--trusted-host",
    "-e",
    "--editable",
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "--no-index",
)
_REQ_REMOTE = re.compile(r"(^|@\s*|\s)(git\+|hg\+|svn\+|bzr\+|https?://|ftp://|file:)", re.IGNORECASE)
#: ``name[extras] @ target``: a PEP 508 direct reference.
_DIRECT_REF = re.compile(r"^\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@\s*(\S+)")


def requirement_problem(req: str) -> str | None:
    """Why one PEP 508 requirement is refused: a URL/VCS reference or a path outside the workspace."""
    req = req.strip()
    if _REQ_REMOTE.search(req):
        return "fetches code from outside the package index"
    m = _DIRECT_REF.match(req)
    if m:
        target = m.group(2).split(";", 1)[0]
        return (
            "is a direct reference to a path outside the workspace"
            if path_leaves(target)
            else (
                "is a direct reference (only index packages and workspace paths are installed)"
                if "://" in target or ":" in target
                else None
            )
        )
    if req.startswith((".", "/", "~")) or re.match(r"^[a-zA-Z]:[\\/]", req):
        return "is a local path" + (" outside the workspace" if path_leaves(req) else "")
    return None


def check_requirements_txt(text: str, name: str = "requirements.txt") -> list[str]:
    """Problems that make kodr refuse a requirements.txt ([] when fine).

    Only registry requirements are installed: options that add indexes, find-links
    or other files, editable installs, URL/VCS requirements and paths (``pkg @
    ../../outside`` included) are refused, for the same reason as package.json's
    remote specs.
    """
    problems = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        head = line.split()[0].split("=", 1)[0]
        if head.startswith("-"):
            if head in _REQ_REFUSED_OPTIONS or any(head.startswith(o) for o in ("-i", "-f", "-e", "-r", "-c")):
                problems.append(f"{name} line {n}: option {head!r} is refused")
            continue
        why = requirement_problem(line)
        if why:
            problems.append(f"{name} line {n}: {line!r} {why}")
    return problems


#: ``[tool.uv]`` keys a project may set: dependency lists (each entry checked) and
#: workspace layout; never indexes, caches, build settings or where Python comes from.
TOOL_UV_ALLOWED = frozenset(
    {
        "package",
        "dev-dependencies",
        "override-dependencies",
        "constraint-dependencies",
        "sources",
        "workspace",
        "default-groups",
        "managed",
        "conflicts",
    }
)


def _table(value: object) -> dict[str, Any]:
    """A TOML table, or an empty one when the model wrote something else there."""
    return value if isinstance(value, dict) else {}


def check_pyproject_toml(text: str) -> list[str]:
    """Problems that make kodr refuse a pyproject.toml for ``uv sync`` ([] when fine).

    Refused: invalid TOML; ``[tool.uv]`` keys outside :data:`TOOL_UV_ALLOWED` (indexes,
    find-links, caches, build settings…); ``[tool.uv.sources]`` entries that are
    git/URL/index sources or paths leaving the workspace; URL or outside-path
    references in ``[project]`` dependencies, dependency groups, ``[tool.uv]``
    dependency lists and ``[build-system] requires``; a ``backend-path`` outside.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return [f"pyproject.toml is not valid TOML: {e}"]
    problems: list[str] = []
    tool = _table(data.get("tool"))
    uv = _table(tool.get("uv"))
    for key in sorted(set(uv) - TOOL_UV_ALLOWED):
        problems.append(f"[tool.uv] {key} is refused: sources and settings are kodr's, not the project's")
    for name, source in _table(uv.get("sources")).items():
        for s in source if isinstance(source, list) else [source]:
            if not isinstance(s, dict):
                continue
            if set(s) & {"git", "url", "index"}:
                problems.append(f"[tool.uv.sources] {name}: git/URL sources (and named indexes) are refused")
            if "path" in s and path_leaves(str(s["path"])):
                problems.append(f"[tool.uv.sources] {name}: path {s['path']!r} points outside the workspace")
    members = _table(uv.get("workspace")).get("members")
    for m in members if isinstance(members, list) else []:
        if isinstance(m, str) and path_leaves(m):
            problems.append(f"[tool.uv.workspace] member {m!r} points outside the workspace")

    lists: list[tuple[str, object]] = []
    project = _table(data.get("project"))
    lists.append(("[project] dependencies", project.get("dependencies")))
    for extra, deps in _table(project.get("optional-dependencies")).items():
        lists.append((f"[project.optional-dependencies] {extra}", deps))
    for group, deps in _table(data.get("dependency-groups")).items():
        lists.append((f"[dependency-groups] {group}", deps))
    for key in ("dev-dependencies", "override-dependencies", "constraint-dependencies"):
        lists.append((f"[tool.uv] {key}", uv.get(key)))
    build = _table(data.get("build-system"))
    lists.append(("[build-system] requires", build.get("requires")))
    for where, deps in lists:
        for dep in deps if isinstance(deps, list) else []:
            why = requirement_problem(dep) if isinstance(dep, str) else None
            if why:
                problems.append(f"{where}: {dep!r} {why}")
    backend_path = build.get("backend-path")
    for p in backend_path if isinstance(backend_path, list) else []:
        if isinstance(p, str) and path_leaves(p):
            problems.append(f"[build-system] backend-path {p!r} points outside the workspace")
    return problems


# -- the whole workspace --------------------------------------------------------------

#: The manifest checks kodr runs before an install, by top-level file name.
MANIFEST_CHECKS: dict[str, Callable[[str], list[str]]] = {
    "package.json": check_package_json,
    "requirements.txt": check_requirements_txt,
    "pyproject.toml": check_pyproject_toml,
}
#: Checks that need the configured sources, by top-level file name.
LOCK_CHECKS: dict[str, Callable[[str, DependencySources, str], list[str]]] = {
    "package-lock.json": check_package_lock,
    "npm-shrinkwrap.json": check_package_lock,
    "yarn.lock": check_yarn_lock,
    "pnpm-lock.yaml": check_pnpm_lock,
    "uv.lock": check_uv_lock,
}
#: Configuration checks, by base name, wherever the file is in the workspace.
CONFIG_CHECKS: dict[str, Callable[[str, str], list[str]]] = {
    ".npmrc": check_npmrc,
    ".yarnrc.yml": check_yarnrc_yml,
    "pnpm-workspace.yaml": check_pnpm_workspace,
}


def check_manifests(
    read: Callable[[str], bytes | None],
    files: Iterable[str] = (),
    sources: DependencySources = DEFAULT_SOURCES,
) -> list[str]:
    """Every problem in the workspace's manifests, lockfiles and package-manager configuration.

    ``read`` gives a file's bytes (None when absent); ``files`` lists the workspace's
    files, so configuration files in subfolders are checked too (top-level ones are
    always looked for).
    """
    problems: list[str] = []
    for name, check in MANIFEST_CHECKS.items():
        data = read(name)
        if data is not None:
            problems += check(data.decode("utf-8", "replace"))
    for name, lock in LOCK_CHECKS.items():
        data = read(name)
        if data is not None:
            problems += lock(data.decode("utf-8", "replace"), sources, name)
    paths = sorted(set(files) | set(CONFIG_CHECKS) | set(REFUSED_CONFIG_FILES))
    for path in paths:
        base = path.rsplit("/", 1)[-1]
        if base in REFUSED_CONFIG_FILES and read(path) is not None:
            problems.append(f"{path}: {REFUSED_CONFIG_FILES[base]}")
        elif base in CONFIG_CHECKS:
            data = read(path)
            if data is not None:
                problems += CONFIG_CHECKS[base](data.decode("utf-8", "replace"), path)
    return problems
