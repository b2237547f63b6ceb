import pytest

from kodr_core.errors import RefusedInput, UsageError
from kodr_core.test_command import (
    TestCommand,
    detect_test_command,
    node_options,
    parse_test_command,
    plan_test_run,
)

# -- parse -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, argv, kind",
    [
        ("npm test", ["npm", "test"], "npm"),
        ("npm run test", ["npm", "run", "test"], "npm"),
        ("npm run test:unit", ["npm", "run", "test:unit"], "npm"),
        ("node --test", ["node", "--test"], "node"),
        (
            "node --test test/a.test.js 'src/**/*.test.mjs'",
            ["node", "--test", "test/a.test.js", "src/**/*.test.mjs"],
            "node",
        ),
        (
            "node --test --test-name-pattern=add math.test.js",
            ["node", "--test", "--test-name-pattern=add", "math.test.js"],
            "node",
        ),
        ("pytest", ["pytest"], "pytest"),
        ("pytest -q tests/test_x.py -k 'not slow'", ["pytest", "-q", "tests/test_x.py", "-k", "not slow"], "pytest"),
        ("python -m pytest -x", ["python", "-m", "pytest", "-x"], "pytest"),
        ("python3 -m pytest", ["python3", "-m", "pytest"], "pytest"),
        ("uv run pytest tests", ["uv", "run", "pytest", "tests"], "pytest"),
        ("pytest -p no:randomly", ["pytest", "-p", "no:randomly"], "pytest"),
        ("npm run build", ["npm", "run", "build"], "npm"),
        ("npm run test:unit:ci", ["npm", "run", "test:unit:ci"], "npm"),
        ("npm test -- --grep add test/a.js", ["npm", "test", "--", "--grep", "add", "test/a.js"], "npm"),
        ("npm run spec -- --bail", ["npm", "run", "spec", "--", "--bail"], "npm"),
        ("yarn test", ["yarn", "test"], "npm"),
        ("yarn test --ci", ["yarn", "test", "--ci"], "npm"),
        ("yarn run test:unit", ["yarn", "run", "test:unit"], "npm"),
        ("pnpm test", ["pnpm", "test"], "npm"),
        ("pnpm test -- -t add", ["pnpm", "test", "--", "-t", "add"], "npm"),
        ("npx mocha", ["npx", "mocha"], "npx"),
        ("npx mocha --recursive test/ -g add", ["npx", "mocha", "--recursive", "test/", "-g", "add"], "npx"),
        ("npx jest --ci -t 'adds two'", ["npx", "jest", "--ci", "-t", "adds two"], "npx"),
        ("npx vitest run", ["npx", "vitest", "run"], "npx"),
        ("npx vitest run test/a.test.ts", ["npx", "vitest", "run", "test/a.test.ts"], "npx"),
        ("npx tape 'test/*.js'", ["npx", "tape", "test/*.js"], "npx"),
        ("npx ava --serial", ["npx", "ava", "--serial"], "npx"),
        ("python -m unittest", ["python", "-m", "unittest"], "unittest"),
        ("python3 -m unittest -v tests.test_calc", ["python3", "-m", "unittest", "-v", "tests.test_calc"], "unittest"),
        (
            "python -m unittest discover -s tests -p 'test_*.py'",
            ["python", "-m", "unittest", "discover", "-s", "tests", "-p", "test_*.py"],
            "unittest",
        ),
    ],
)
def test_allowed(text, argv, kind):
    cmd = parse_test_command(text)
    assert cmd == TestCommand(argv, kind)


@pytest.mark.parametrize(
    "text, why",
    [
        ("rm -rf /", "not a known test runner"),
        ("npm test && curl evil", "go after '--'"),
        ("npm test -- '&&' curl evil", "is not plain"),
        ("npm test -- '$(id)'", "is not plain"),
        ("npm test -- 'a;b'", "is not plain"),
        ("npm test -- /etc/passwd", "absolute path"),
        ("npm test -- ../x", "leaves the workspace"),
        ("npm install", "npm is allowed only"),
        ("npm test -- --watch", "watch mode"),
        ("yarn test --watchAll", "watch mode"),
        ("npm exec evil", "npm is allowed only"),
        ("npm run test:$(id)", "npm is allowed only"),
        ("npm run -- test", "npm is allowed only"),
        ("yarn add evil", "yarn is allowed only"),
        ("yarn test '`id`'", "is not plain"),
        ("pnpm dlx evil", "pnpm is allowed only"),
        ("npx evil-package", "npx is allowed only"),
        ("npx -y mocha", "npx is allowed only"),
        ("npx mocha --require ./evil.js", "mocha flag '--require' is not allowed"),
        ("npx mocha -r ./evil.js", "mocha flag '-r' is not allowed"),
        ("npx mocha --reporter ./evil.js", "mocha flag '--reporter' is not allowed"),
        ("npx jest --config evil.js", "jest flag '--config' is not allowed"),
        ("npx jest --setupFiles=./evil.js", "jest flag '--setupFiles' is not allowed"),
        ("npx vitest", "only as 'npx vitest run'"),
        ("npx vitest run --config evil.ts", "vitest flag '--config' is not allowed"),
        ("npx tape -r ./evil.js test.js", "tape flag '-r' is not allowed"),
        ("npx ava --config evil.js", "ava flag '--config' is not allowed"),
        ("npx mocha /etc", "absolute path"),
        ("python -m unittest --evil", "unittest flag '--evil' is not allowed"),
        ("python -m unittest ../x", "leaves the workspace"),
        ("python -c 'import os'", "not a known test runner"),
        ("pytest -o addopts=--cov", "addopts"),
        ("pytest -o 'addopts=-p evil'", "addopts"),
        ("pytest --override-ini=addopts=-pevil", "addopts"),
        ("pytest -oaddopts=-pevil", "addopts"),
        ("sh -c 'npm test'", "not a known test runner"),
        ("node index.js", "node is allowed only"),
        ("node -e 'process.exit(0)'", "node is allowed only"),
        ("node --test --require ./evil.js", "not allowed after --test"),
        ("node --test --test-reporter=dot", "not allowed after --test"),
        ("pytest /etc", "absolute path"),
        ("pytest --rootdir=/tmp", "absolute path"),
        ("pytest ../other/tests", "leaves the workspace"),
        ("node --test test/../../x.js", "leaves the workspace"),
        ("pytest -p evil_plugin", "plugin loading"),
        ("pytest -pevil", "plugin loading"),
        ("pytest --pyargs pkg", "--pyargs"),
        ("pytest --junitxml=out.xml", "--junitxml"),
        ("bash -c pytest", "not a known test runner"),
        ("", "empty"),
        ("pytest 'unterminated", "does not parse"),
        ("pytest a\0b", "NUL"),
    ],
)
def test_refused(text, why):
    with pytest.raises(UsageError) as e:
        parse_test_command(text)
    assert why in e.value.message
    assert "Allowed:" in e.value.message and "npm test" in e.value.message


def test_plan_npx_never_fetches_a_package():
    argv, env = plan_test_run(parse_test_command("npx mocha -g add"), "/tmp/j.xml")
    assert argv == ["npx", "--no", "mocha", "-g", "add"] and "NODE_OPTIONS" not in env


def test_plan_unittest_keeps_argv():
    argv, env = plan_test_run(parse_test_command("python -m unittest -v"), "/tmp/j.xml")
    assert argv == ["python", "-m", "unittest", "-v"] and "NODE_OPTIONS" not in env


def test_plan_yarn_and_pnpm_scripts_get_node_options_like_npm():
    for text in ("yarn test", "pnpm test -- -t add"):
        argv, env = plan_test_run(parse_test_command(text), "/tmp/j.xml")
        assert argv == parse_test_command(text).argv and "--test-reporter=junit" in env["NODE_OPTIONS"]


# -- detect ----------------------------------------------------------------------------


def test_detect_npm_script():
    cmd = detect_test_command({"package.json", "a.test.js"}, {"scripts": {"test": "node --test"}})
    assert cmd == TestCommand(["npm", "test"], "npm")


def test_detect_ignores_npm_placeholder_script():
    pj = {"scripts": {"test": 'echo "Error: no test specified" && exit 1'}}
    assert detect_test_command({"package.json", "sum.test.js"}, pj) == TestCommand(["node", "--test"], "node")
    assert detect_test_command({"package.json", "index.js"}, pj) is None


@pytest.mark.parametrize("f", ["a.test.js", "lib/a.test.mjs", "b.test.cjs", "test/a.js", "pkg/test/b.mjs"])
def test_detect_node_test_files(f):
    assert detect_test_command({"package.json", f}, {"name": "x"}) == TestCommand(["node", "--test"], "node")


def test_detect_skips_node_modules():
    assert detect_test_command({"node_modules/x/a.test.js", "index.js"}, None) is None


@pytest.mark.parametrize(
    "files",
    [{"pyproject.toml"}, {"requirements.txt", "app.py"}, {"test_app.py"}, {"tests/test_x.py"}, {"pkg/x_test.py"}],
)
def test_detect_pytest(files):
    assert detect_test_command(files, None) == TestCommand(["python", "-m", "pytest"], "pytest")


def test_detect_nothing():
    assert detect_test_command({"README.md", "main.go"}, None) is None
    assert detect_test_command(set(), None) is None


# -- plan ------------------------------------------------------------------------------


def test_plan_pytest_adds_junit_and_no_cache():
    argv, env = plan_test_run(parse_test_command("pytest -q"), ".kodr/junit.xml")
    assert argv == ["pytest", "-q", "--junitxml=.kodr/junit.xml", "-o", "junit_family=xunit1", "-p", "no:cacheprovider"]
    assert "NODE_OPTIONS" not in env


def test_plan_pytest_only_files_replaces_positionals_keeps_options():
    cmd = parse_test_command("python -m pytest tests -k 'not slow' -x")
    argv, _ = plan_test_run(cmd, "j.xml", ["tests/test_a.py", "tests/test_b.py"])
    assert argv[:9] == [
        "python",
        "-m",
        "pytest",
        "-k",
        "not slow",
        "-x",
        "tests/test_a.py",
        "tests/test_b.py",
        "--junitxml=j.xml",
    ]


def test_plan_node_uses_node_options():
    argv, env = plan_test_run(parse_test_command("node --test"), "/w/.kodr/j.xml")
    assert argv == ["node", "--test"]
    assert env["NODE_OPTIONS"] == (
        "--test-reporter=spec --test-reporter-destination=stdout "
        "--test-reporter=junit --test-reporter-destination=/w/.kodr/j.xml"
    )


def test_plan_node_only_files_replace_original_files():
    cmd = parse_test_command("node --test --test-name-pattern add test/ 'src/*.test.js'")
    argv, _ = plan_test_run(cmd, "j.xml", ["src/a.test.js"])
    assert argv == ["node", "--test", "--test-name-pattern", "add", "src/a.test.js"]


def test_plan_npm_keeps_argv_and_sets_node_options():
    argv, env = plan_test_run(
        parse_test_command("npm test"), "j.xml", ["a.test.js"], inherited_node_options="--max-old-space-size=4096"
    )
    assert argv == ["npm", "test"]  # an npm script cannot be narrowed reliably
    assert env["NODE_OPTIONS"].startswith("--max-old-space-size=4096 --test-reporter=spec")


def test_plan_npm_script_with_own_reporter_gets_no_node_options():
    argv, env = plan_test_run(parse_test_command("npm test"), "j.xml", script="node --test --test-reporter=tap")
    assert "NODE_OPTIONS" not in env


def test_node_options_quotes_paths_with_spaces():
    assert node_options('/my dir/j "x".xml').endswith('"--test-reporter-destination=/my dir/j \\"x\\".xml"')


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x.py", "-p", "a\0b"])
def test_plan_refuses_bad_only_files(bad):
    with pytest.raises(RefusedInput):
        plan_test_run(parse_test_command("pytest"), "j.xml", [bad])
