"""The field benchmark: kodr heals published packages, each with one injected bug.

    .venv/bin/python bench/field.py [--only NAME[,NAME]] [--json] [--results bench/RESULTS.md]

Each package is pinned by name, version and integrity hash (npm's ``dist.integrity``
sha512, PyPI's sdist sha256), fetched from the registry at run time into
``~/.cache/kodr-field`` (``KODR_FIELD_CACHE`` overrides) and checked against the
hash before use. The tarball is unpacked into a fresh workspace, one line of the
implementation is broken (a deterministic search/replace that must match exactly
once), and ``kodr heal --install --test "<the project's command>"`` runs on it as a
user would: a subprocess of the CLI, against an **oracle model** on loopback (a
scripted OpenAI-compatible server) that answers with the fix, as an ``edits`` hunk,
only when the prompt contains the broken file's path and the broken line;
otherwise it answers with no change (and the run stalls on ``no_progress``).

What the published tarball does not have is added and said so (``prep``): most npm
packages ship no tests, so a small test file in the runner's own style is added,
with that runner alone as devDependency (pinned) and ``scripts.test``; yarn and
pnpm packages get their lockfile made once (``--ignore-scripts``, cached) so kodr's
install plan picks that package manager. The implementation under test is the
published code, as published. Python sdists ship their tests and are used as they
are, except pluggy, whose ``testing`` extra is moved to a PEP 735
``[dependency-groups]`` table to cover that layout.

yarn and pnpm are npm packages kodr's plan runs by name: the benchmark installs
them once into the cache (``tools/``) and puts their bin directory on PATH.

The table (bench/RESULTS.md, ``## Field``): package, runner, package manager,
layout, whether the model was reached, whether the bug file was in the prompt,
the repair context's bytes, the outcome, and the time split: the install's and
the test runs' own durations (from the events) and kodr's (the rest of the wall
time: the CLI, the store, context building, the model calls).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from store.database import default_url, open_store  # noqa: E402 - after the sys.path set-up
from tests.support.scripted_server import ScriptedServer  # noqa: E402

CACHE = Path(os.environ.get("KODR_FIELD_CACHE", Path.home() / ".cache" / "kodr-field"))
NPM_REGISTRY = "https://registry.npmjs.org"
PYPI_SIMPLE = "https://pypi.org/simple"
TOOLS = {"pnpm": "9.15.9", "yarn": "1.22.22"}
RUNNERS = {"mocha": "10.7.3", "jest": "29.7.0", "vitest": "2.1.9", "tape": "5.9.0", "ava": "6.2.0"}
RUN_TIMEOUT_S = 1500


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    registry: str  # npm | pypi
    integrity: str  # npm: sha512-… ; pypi: sha256 hex of the sdist
    runner: str
    pm: str  # npm | yarn | pnpm | uv
    layout: str
    test: str  # the test command, as a user types it
    bug: tuple[str, str, str]  # (file, good text, broken text): each occurs once
    files: dict[str, str] = field(default_factory=dict)  # added by prep (tests the tarball lacks)
    scripts_test: str | None = None  # npm: scripts.test set by prep
    dev: tuple[str, ...] = ()  # npm: devDependencies set by prep (runner names, pinned from RUNNERS)
    pyproject_edit: tuple[str, str] | None = None  # python: a search/replace prep makes
    prep: str = "as published"


NODE_TEST_MS = """const test = require('node:test');
const assert = require('node:assert/strict');
const ms = require('..');

test('parses hours', () => {
  assert.equal(ms('2h'), 7200000);
});

test('parses minutes', () => {
  assert.equal(ms('1m'), 60000);
});

test('formats an hour long', () => {
  assert.equal(ms(3600000, { long: true }), '1 hour');
});
"""

MOCHA_ESCAPE = """const assert = require('assert');
const escapeHtml = require('../');

describe('escapeHtml', function () {
  it('escapes double quotes', function () {
    assert.strictEqual(escapeHtml('"x"'), '&quot;x&quot;');
  });
  it('escapes ampersands', function () {
    assert.strictEqual(escapeHtml('a&b'), 'a&amp;b');
  });
  it('leaves plain text alone', function () {
    assert.strictEqual(escapeHtml('abc'), 'abc');
  });
});
"""

JEST_DLV = """const dlv = require('..');

test('reads a nested key', () => {
  expect(dlv({ a: { b: 1 } }, 'a.b')).toBe(1);
});

test('returns the default for a missing key', () => {
  expect(dlv({}, 'a.b', 5)).toBe(5);
});
"""

MOCHA_DEEPMERGE = """const assert = require('assert');
const merge = require('../');

describe('deepmerge', function () {
  it('merges nested objects', function () {
    assert.deepStrictEqual(merge({ a: { x: 1 } }, { a: { y: 2 } }), { a: { x: 1, y: 2 } });
  });
  it('concatenates arrays in order', function () {
    assert.deepStrictEqual(merge([1], [2]), [1, 2]);
  });
});
"""

AVA_KLEUR = """const test = require('ava');
const kleur = require('kleur');

test('red wraps text', (t) => {
  kleur.enabled = true;
  t.is(kleur.red('x'), '\\x1b[31mx\\x1b[39m');
});

test('bold wraps text', (t) => {
  kleur.enabled = true;
  t.is(kleur.bold('x'), '\\x1b[1mx\\x1b[22m');
});
"""

TAPE_MRI = """const test = require('tape');
const mri = require('..');

test('parses a boolean flag', (t) => {
  t.deepEqual(mri(['--foo']), { _: [], foo: true });
  t.end();
});

test('parses a value', (t) => {
  t.deepEqual(mri(['--foo', 'bar']), { _: [], foo: 'bar' });
  t.end();
});
"""

JEST_CAMELCASE = """const camelCase = require('..');

test('dashes become camel case', () => {
  expect(camelCase('foo-bar')).toBe('fooBar');
});

test('a single word stays', () => {
  expect(camelCase('foo')).toBe('foo');
});
"""

VITEST_CLSX = """import { test, expect } from 'vitest';
import { clsx } from '..';

test('joins strings with a space', () => {
  expect(clsx('a', 'b')).toBe('a b');
});

test('skips falsy values', () => {
  expect(clsx('a', false, null, 'c')).toBe('a c');
});
"""

NODE_TEST_EQUAL = """const test = require('node:test');
const assert = require('node:assert/strict');
const equal = require('..');

test('arrays of different lengths differ', () => {
  assert.equal(equal([1, 2], [1, 2, 3]), false);
});

test('equal objects are equal', () => {
  assert.equal(equal({ a: [1] }, { a: [1] }), true);
});
"""

VITEST_DSET = """import { test, expect } from 'vitest';
import { dset } from '..';

test('sets a nested key', () => {
  const o = {};
  dset(o, 'a.b', 1);
  expect(o).toEqual({ a: { b: 1 } });
});

test('creates arrays for numeric keys', () => {
  const o = {};
  dset(o, 'a.0', 'x');
  expect(o).toEqual({ a: ['x'] });
});
"""

PACKAGES: list[Package] = [
    Package("ms", "2.1.3", "npm",
            "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==",
            "node:test", "npm", "main ./index, require('..')", "npm test",
            ("index.js", "var h = m * 60;", "var h = m * 61;"),
            files={"test/ms.test.js": NODE_TEST_MS}, scripts_test="node --test", prep="test file added"),
    Package("escape-html", "1.0.3", "npm",
            "sha512-NiSupZ4OeuGwr68lGIeym/ksIZMJodUGOSCZ/FSnTxcrekbvqrgdUxlJOMpijaKZVjAJrWrGs/6Jy8OMuyj9ow==",
            "mocha", "npm", "main index.js, require('../')", "npm test",
            ("index.js", "escape = '&quot;';", "escape = '&#34';"),
            files={"test/index.js": MOCHA_ESCAPE}, scripts_test="mocha", dev=("mocha",), prep="test file added"),
    Package("left-pad", "1.3.0", "npm",
            "sha512-XI5MPzVNApjAyhQzphX8BkmKsKUxD4LdyK24iZeQGinBN9yTQT3bFlCBy/aVx2HrNcqQGsdot8ghrjyrvMCoEA==",
            "tape", "npm", "tests shipped (test.js, require('./'))", "npm test",
            ("index.js", "if (ch === ' ' && len < 10) return cache[len] + str;",
             "if (ch === ' ' && len < 10) return cache[len - 1] + str;")),
    Package("dlv", "1.1.3", "npm",
            "sha512-+HlytyjlPKnIG8XuRG8WvmBP8xs8P71y+SKKS6ZXWoEgLuePxtDoUEiH7WkdePWrQ5JBpE6aoVqfZfJUQkjXwA==",
            "jest", "pnpm", "main dist/dlv.js (minified, source map → index.js)", "pnpm test",
            ("dist/dlv.js", "t=t?t[e[n]]:o", "t=t?t[e[n+1]]:o"),
            files={"test/dlv.test.js": JEST_DLV}, scripts_test="jest", dev=("jest",), prep="test file added"),
    Package("deepmerge", "4.3.1", "npm",
            "sha512-3sUqbMEc77XqpdNO7FRyRog+eW3ph+GYCbj+rK+uYyRMuwsVy0rMiVtPn+QJlKFvWP/1PYpapqYn0Me2knFn+A==",
            "mocha", "yarn", "main dist/cjs.js, require('../')", "yarn test",
            ("dist/cjs.js", "return target.concat(source).map(function(element) {",
             "return source.concat(target).map(function(element) {"),
            files={"test/merge.test.js": MOCHA_DEEPMERGE}, scripts_test="mocha", dev=("mocha",),
            prep="test file added; scripts.test was a build + tape + typescript chain"),
    Package("kleur", "4.1.5", "npm",
            "sha512-o+NO+8WrRiQEE4/7nwRJhN1HWpVmJm511pBHUxPLtp0BUISzlBplORYSmTclCnJvQq2tKu/sgl3xVpkc7ZWuQQ==",
            "ava", "npm", "exports require/import, self-reference require('kleur')", "npm test",
            ("index.js", "red: init(31, 39),", "red: init(32, 39),"),
            files={"test/kleur.test.js": AVA_KLEUR}, scripts_test="ava", dev=("ava",), prep="test file added"),
    Package("mri", "1.2.0", "npm",
            "sha512-tzzskb3bG8LvYGFF/mDTpq3jpI6Q9wc3LEmBaghu+DdCssd1FakN7Bc0hVNmEyGq1bq3RgfkCb3cmQLpNPOroA==",
            "tape", "pnpm", "main lib/index.js, require('..')", "pnpm test",
            ("lib/index.js", "var i=0, j=0, idx=0, len=args.length;", "var i=0, j=0, idx=0, len=args.length - 1;"),
            files={"test/mri.test.js": TAPE_MRI}, scripts_test="tape test/*.test.js", dev=("tape",),
            prep="test file added"),
    Package("camelcase", "6.3.0", "npm",
            "sha512-Gmy6FhYlCY7uOElZUSbxo2UCDH8owEk996gkbrpsgGtrJLM3J7jGxl9Ic7Qwwj4ivOE5AWZWRMecDdF7hqGjFA==",
            "jest", "npm", "main index.js, require('..')", "npm test",
            ("index.js", "(_, identifier) => toUpperCase(identifier))", "(_, identifier) => toLowerCase(identifier))"),
            files={"test/camelcase.test.js": JEST_CAMELCASE}, scripts_test="jest", dev=("jest",),
            prep="test file added"),
    Package("clsx", "2.1.1", "npm",
            "sha512-eYm0QWBtUrBWZWG0d386OGAw16Z995PiOVo2B7bjWSbHedGl5e0ZWaq65kOGgUSNesEIDkB9ISbTg/JK9dhCZA==",
            "vitest", "npm", "exports import → dist/clsx.mjs (minified), import '..'", "npm test",
            ("dist/clsx.mjs", 'n&&(n+=" "),n+=t);return n}', 'n&&(n+=""),n+=t);return n}'),
            files={"test/clsx.test.js": VITEST_CLSX}, scripts_test="vitest run", dev=("vitest",),
            prep="test file added"),
    Package("fast-deep-equal", "3.1.3", "npm",
            "sha512-f3qQ9oQy9j2AhBe/H9VC91wLmKBCCU/gDOnKNAYG5hswO7BLKj09Hc5HYNz9cGI++xlpDCIgDaitVs03ATR84Q==",
            "node:test", "yarn", "main index.js, require('..')", "yarn test",
            ("index.js", "if (length != b.length) return false;", "if (length != b.length) return true;"),
            files={"test/equal.test.js": NODE_TEST_EQUAL}, scripts_test="node --test", prep="test file added"),
    Package("dset", "3.1.4", "npm",
            "sha512-2QF/g9/zTaPDc3BjNcVTGoBbXBgYfMTTceLaYcFJ/W9kggFUkhxD/hMEeuLKbugyef9SqAx8cpgwlIP/jinUTA==",
            "vitest", "yarn", "exports import → dist/index.mjs, import '..'", "yarn test",
            ("dist/index.mjs", "t = t[k] = (i === l) ? val", "t = t[k] = (i === l - 1) ? val"),
            files={"test/dset.test.js": VITEST_DSET}, scripts_test="vitest run", dev=("vitest",),
            prep="test file added"),
    Package("six", "1.16.0", "pypi", "1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926",
            "pytest", "uv", "setup.py only, flat module, tests shipped",
            'python -m pytest test_six.py -k "not dbm"',  # this Python lacks _dbm: one test cannot pass here
            ("six.py", "    byte2int = operator.itemgetter(0)", "    byte2int = operator.itemgetter(1)")),
    Package("more-itertools", "10.1.0", "pypi", "626c369fa0eb37bac0291bce8259b332fd59ac792fa5497b59837309cd5b114a",
            "pytest", "uv", "[project] (flit), flat package, tox.ini; 186 KB test file, 140 KB module",
            "pytest tests/test_more.py",
            ("more_itertools/more.py", "    deque(zip(iterable, counter), maxlen=0)\n    return next(counter)\n",
             "    deque(zip(iterable, counter), maxlen=0)\n    return next(counter) + 1\n")),
    Package("platformdirs", "4.2.2", "pypi", "38b7b51f512eed9e84a22788b4bce1de17c0adb134d6becb09836e37d8654cd3",
            "pytest", "uv", "src/ layout, [project] (hatch), test extra with pytest-cov/covdefaults", "pytest",
            ("src/platformdirs/unix.py", 'path = os.path.expanduser("~/.local/share")  # noqa: PTH111',
             'path = os.path.expanduser("~/.local/shared")  # noqa: PTH111')),
    Package("pluggy", "1.6.0", "pypi", "7dcc130b76258d33b90f61b658791dede3486c3e6bfb003ee5c9bfb396dd22f3",
            "pytest", "uv", "src/ layout, PEP 735 [dependency-groups]", "uv run pytest testing",
            # not the hook-calling core: pytest itself runs on the pluggy under test
            ("src/pluggy/_tracing.py", 'lines = ["{}{} [{}]\\n".format(indent, content, ":".join(tags))]',
             'lines = ["{}{} [{}]\\n".format(indent, content, "/".join(tags))]'),
            pyproject_edit=("[project.optional-dependencies]\ndev = [\"pre-commit\", \"tox\"]\ntesting = [\"pytest\", \"pytest-benchmark\", \"coverage\"]",
                            "[dependency-groups]\ntesting = [\"pytest\", \"pytest-benchmark\", \"coverage\"]\n\n[project.optional-dependencies]\ndev = [\"pre-commit\", \"tox\"]"),
            prep="testing extra moved to [dependency-groups]"),
    Package("pastel", "0.2.1", "pypi", "e6581ac04e973cac858828c6202c1e1e81fee1dc7de7683f3e1ffe0bfd8a573d",
            "pytest", "uv", "Poetry (poetry-core), dev-dependencies, tests shipped", "python -m pytest tests",
            ("pastel/style.py", '        "red": 31,', '        "red": 32,')),
    Package("cachetools", "5.3.3", "pypi", "ba29e2dfa0b8b556606f097407ed1aa62080ee108ab0dc5ec9d6a723a007d105",
            "pytest", "uv", "setup.cfg + setup.py, pyproject.toml without [project], tox.ini deps", "pytest tests",
            ("src/cachetools/__init__.py", "            while self.__currsize + size > maxsize:",
             "            while self.__currsize + size >= maxsize:")),
]  # fmt: skip


# -- fetching ------------------------------------------------------------------------------


def _npm_tarball(pkg: Package) -> bytes:
    dest = CACHE / "npm" / f"{pkg.name}-{pkg.version}.tgz"
    if not dest.is_file():
        meta = httpx.get(f"{NPM_REGISTRY}/{pkg.name}/{pkg.version}", timeout=60).json()
        data = httpx.get(meta["dist"]["tarball"], timeout=120, follow_redirects=True).content
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    data = dest.read_bytes()
    algo, digest = pkg.integrity.split("-", 1)
    if base64.b64encode(hashlib.new(algo, data).digest()).decode() != digest:
        raise SystemExit(f"{pkg.name}@{pkg.version}: the tarball does not match its pinned integrity")
    return data


def _pypi_sdist(pkg: Package) -> bytes:
    dest = CACHE / "pypi" / f"{pkg.name}-{pkg.version}.tar.gz"
    if not dest.is_file():
        index = httpx.get(f"{PYPI_SIMPLE}/{pkg.name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                          timeout=60).json()  # fmt: skip
        entry = next(f for f in index["files"] if f["hashes"].get("sha256") == pkg.integrity)
        data = httpx.get(entry["url"], timeout=120, follow_redirects=True).content
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    data = dest.read_bytes()
    if hashlib.sha256(data).hexdigest() != pkg.integrity:
        raise SystemExit(f"{pkg.name}=={pkg.version}: the sdist does not match its pinned sha256")
    return data


def _unpack(data: bytes, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t.getmembers():
            if not (m.isfile() or m.isdir()) or "/" not in m.name.strip("/"):
                continue
            rel = m.name.split("/", 1)[1]
            if rel.startswith("/") or ".." in rel.split("/"):
                continue
            target = dest / rel
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = t.extractfile(m)
            target.write_bytes(src.read() if src else b"")


def tools_path() -> str:
    """The bin directory holding pinned pnpm and yarn (installed once into the cache)."""
    tools = CACHE / "tools"
    bin_dir = tools / "node_modules" / ".bin"
    if not all((bin_dir / t).exists() for t in TOOLS):
        tools.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(tools), "--no-audit", "--no-fund", "--ignore-scripts",
                        *(f"{t}@{v}" for t, v in TOOLS.items())], check=True, capture_output=True)  # fmt: skip
    return str(bin_dir)


# -- one package ---------------------------------------------------------------------------


def prepare(pkg: Package, ws: Path, env: dict[str, str]) -> None:
    """Unpack, add what the tarball lacks, make the lockfile a yarn/pnpm project needs, break one line."""
    _unpack(_npm_tarball(pkg) if pkg.registry == "npm" else _pypi_sdist(pkg), ws)
    for rel, text in pkg.files.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(text)
    if pkg.registry == "npm":
        manifest = json.loads((ws / "package.json").read_text())
        if pkg.scripts_test is not None:
            manifest["scripts"] = {"test": pkg.scripts_test}
            manifest["devDependencies"] = {d: RUNNERS[d] for d in pkg.dev}
        (ws / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if pkg.pm in ("yarn", "pnpm"):
            lock = "yarn.lock" if pkg.pm == "yarn" else "pnpm-lock.yaml"
            cached = CACHE / "locks" / f"{pkg.name}-{pkg.version}.{lock}"
            if not cached.is_file():
                argv = ([pkg.pm, "install", "--lockfile-only", "--ignore-scripts"] if pkg.pm == "pnpm"
                        else [pkg.pm, "install", "--ignore-scripts", "--non-interactive"])  # fmt: skip
                subprocess.run(argv, cwd=ws, env=env, check=True, capture_output=True, timeout=600)
                cached.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ws / lock, cached)
                shutil.rmtree(ws / "node_modules", ignore_errors=True)
            shutil.copy(cached, ws / lock)
    if pkg.pyproject_edit:
        text = (ws / "pyproject.toml").read_text()
        old, new = pkg.pyproject_edit
        if text.count(old) != 1:
            raise SystemExit(f"{pkg.name}: the pyproject prep edit does not match once")
        (ws / "pyproject.toml").write_text(text.replace(old, new))
    path, good, bad = pkg.bug
    text = (ws / path).read_text()
    if text.count(good) != 1 or bad in text:
        raise SystemExit(f"{pkg.name}: the bug's text must occur exactly once in {path}")
    (ws / path).write_text(text.replace(good, bad))


def oracle(pkg: Package, seen: list[dict[str, Any]]):
    """The model: the fix as an edit when the prompt shows the broken file and line, else nothing."""
    path, good, bad = pkg.bug
    line = max(bad.splitlines(), key=len).strip()  # the broken line itself

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        prompt = "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])
        hit = f"`{path}`" in prompt and line in prompt
        seen.append({"bug_in_context": hit, "prompt_bytes": len(prompt.encode())})
        if not hit:
            return {"summary": "the broken code is not in the prompt", "files": [], "edits": [], "notes": None}
        return {"summary": "fix", "files": [], "edits": [{"path": path, "search": bad, "replace": good}], "notes": None}

    return respond


def run_one(pkg: Package, keep: Path | None = None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"kodr-field-{pkg.name}-"))
    ws = tmp / "ws"
    ws.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "KODR_DATABASE_URL"}
    env["PATH"] = tools_path() + os.pathsep + env.get("PATH", "")
    env["COREPACK_ENABLE_STRICT"] = "0"
    row: dict[str, Any] = {"package": f"{pkg.name}@{pkg.version}", "runner": pkg.runner, "pm": pkg.pm,
                           "layout": pkg.layout, "prep": pkg.prep, "test": pkg.test}  # fmt: skip
    try:
        prepare(pkg, ws, env)
        seen: list[dict[str, Any]] = []
        with ScriptedServer(responder=oracle(pkg, seen)) as srv:
            argv = [sys.executable, "-m", "adapters.cli", "heal", "-w", str(ws), "--install", "--test", pkg.test,
                    "--base-url", srv.base_url, "--model", "oracle", "--max-turns", "2", "--json", "-q",
                    "--install-timeout", "900", "--test-timeout", "600"]  # fmt: skip
            t0 = time.perf_counter()
            proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                                  check=False)  # fmt: skip
            wall = time.perf_counter() - t0
        try:
            out = json.loads(proc.stdout)
        except ValueError:
            out = {"state": "crashed", "reason": proc.stderr.strip()[-300:]}
        row.update(_from_events(ws, out.get("run_id")))
        row.update(outcome=f"{out.get('state')} ({out.get('reason')})", wall_s=round(wall, 1),
                   reached_model=bool(seen), bug_in_context=any(s["bug_in_context"] for s in seen))  # fmt: skip
        row["kodr_s"] = round(wall - row.get("install_s", 0) - row.get("tests_s", 0), 1)
        if out.get("state") != "passed":
            row["why"] = (out.get("facts") or {}).get("why") or (out.get("facts") or {}).get("error") or ""
    except (subprocess.SubprocessError, OSError, SystemExit, httpx.HTTPError) as exc:
        row.update(outcome=f"bench error: {exc}"[:200], reached_model=False, bug_in_context=False)
    finally:
        if keep is not None:
            shutil.copytree(ws, keep / pkg.name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("node_modules"))
        shutil.rmtree(tmp, ignore_errors=True)
    return row


def _from_events(ws: Path, run_id: str | None) -> dict[str, Any]:
    if not run_id:
        return {}
    store = open_store(default_url(ws))
    records = store.load(run_id)
    install = sum((r.event.result.get("durationMs") or 0) for r in records if r.type == "InstallFinished")
    tests = sum((r.event.result.get("durationMs") or 0) for r in records if r.type == "TestsFinished")
    context_bytes = None
    for r in records:
        if r.type == "ModelCallStarted" and r.event.context_blob:
            context_bytes = json.loads(store.get_blob(r.event.context_blob)).get("used_bytes")
            break
    written = [w["path"] for r in records if r.type == "InstallFinished" for w in r.event.result.get("written") or []]
    return {"install_s": round(install / 1000, 1), "tests_s": round(tests / 1000, 1), "context_bytes": context_bytes,
            "install_wrote": [w for w in written if "egg-info" not in w][:3]}  # fmt: skip


# -- the table -------------------------------------------------------------------------------

COLUMNS = ("package", "runner", "pm", "layout", "reached_model", "bug_in_context", "context_bytes", "outcome",
           "install_s", "tests_s", "kodr_s")  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, bool):
            return "yes" if v else "**no**"
        return "" if v is None else str(v).replace("|", "\\|")

    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(cell(r.get(c)) for c in COLUMNS) + " |\n" for r in rows)
    passed = sum(1 for r in rows if str(r.get("outcome", "")).startswith("passed"))
    reached = sum(1 for r in rows if r.get("reached_model") and r.get("bug_in_context"))
    foot = f"\n{passed}/{len(rows)} passed; {reached}/{len(rows)} reached the model with the bug file in context.\n"
    notes = "".join(f"- {r['package']}: {r['why']}\n" for r in rows if r.get("why"))
    return head + body + foot + (("\nWhy the others stopped:\n" + notes) if notes else "")


def write_results(path: Path, text: str) -> None:
    old = path.read_text() if path.is_file() else "# Benchmark results\n"
    start = old.find("## Field")
    if start >= 0:
        nxt = old.find("\n## ", start + 1)
        old = old[:start] + (old[nxt + 1 :] if nxt >= 0 else "")
    path.write_text(old.rstrip() + "\n\n" + text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated package names")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--results", default=None, help="write the table under '## Field' in this Markdown file")
    ap.add_argument("--keep", default=None, help="copy each final workspace (without node_modules) here")
    args = ap.parse_args()
    chosen = [p for p in PACKAGES if not args.only or p.name in args.only.split(",")]
    keep = Path(args.keep) if args.keep else None
    rows = []
    for pkg in chosen:
        print(f"{pkg.name}@{pkg.version} ({pkg.runner}, {pkg.pm}) …", file=sys.stderr, flush=True)
        row = run_one(pkg, keep)
        print(f"  {row.get('outcome')} in {row.get('wall_s')} s", file=sys.stderr, flush=True)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    text = table(rows)
    if args.results:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=False).stdout  # fmt: skip
        write_results(Path(args.results), "## Field\n\n`bench/field.py` at " + commit.strip()
                      + f", {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n" + text)  # fmt: skip
    if not args.json:
        print(text)


if __name__ == "__main__":
    main()
