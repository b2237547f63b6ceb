import json

import pytest

from kodr_core.errors import RefusedInput
from kodr_core.install_plan import MANIFESTS, check_package_json, manifests_changed, plan_install

NPM_FLAGS = ["--no-audit", "--no-fund", "--ignore-scripts"]


@pytest.mark.parametrize("lock", ["package-lock.json", "npm-shrinkwrap.json"])
def test_npm_ci_with_a_lockfile(lock):
    plan = plan_install({"package.json", lock, "index.js"})
    assert plan.commands == [["npm", "ci", *NPM_FLAGS]]
    assert plan.kind == "node"
    assert plan.manifests == ["package.json", lock]
    assert "npm ci" in plan.why


def test_the_lockfile_present_picks_pnpm_or_yarn_frozen_and_without_scripts():
    plan = plan_install({"package.json", "pnpm-lock.yaml"})
    assert plan.commands == [["pnpm", "install", "--frozen-lockfile", "--ignore-scripts"]]
    plan = plan_install({"package.json", "yarn.lock"})
    assert plan.commands == [["yarn", "install", "--frozen-lockfile", "--ignore-scripts", "--non-interactive"]]
    assert plan_install({"package.json", "yarn.lock", "package-lock.json"}).commands[0][:2] == ["npm", "ci"]


def test_npm_install_without_a_lockfile():
    plan = plan_install({"package.json", "index.test.js"})
    assert plan.commands == [["npm", "install", *NPM_FLAGS]]
    assert plan.kind == "node"


def _reader(texts):
    return lambda name: texts[name].encode() if name in texts else None


def _plan(texts):
    return plan_install(set(texts), _reader(texts))


VENV = ["uv", "venv", "--allow-existing", ".venv"]
PIP = ["uv", "pip", "install", "--python", ".venv/bin/python"]


def test_pyproject_with_test_extras_and_groups_builds_one_venv_with_pytest():
    plan = _plan(
        {
            "pyproject.toml": """
[project]
name = "p"
version = "1"
[project.optional-dependencies]
test = ["hypothesis"]
docs = ["sphinx"]
dev = ["black"]
[dependency-groups]
test = ["pytest-mock"]
lint = ["ruff"]
"""
        }
    )
    assert plan.kind == "python"
    assert plan.commands == [VENV, [*PIP, "-e", ".[test]", "--group", "test", "pytest"]]  # dev: only without test
    assert "extras" in plan.why and "dependency-groups" in plan.why


def test_dev_extra_is_taken_when_there_is_no_test_extra_or_group():
    plan = _plan(
        {"pyproject.toml": '[project]\nname = "p"\nversion = "1"\n[project.optional-dependencies]\ndev = ["x"]\n'}
    )
    assert plan.commands[-1] == [*PIP, "-e", ".[dev]", "pytest"]


def test_uv_lock_is_synced_frozen_then_test_tools_added():
    plan = _plan(
        {
            "pyproject.toml": '[project]\nname = "p"\nversion = "1"\n[project.optional-dependencies]\ntests = ["x"]\n',
            "uv.lock": "version = 1\n",
        }
    )
    assert plan.commands == [["uv", "sync", "--frozen", "--extra", "tests"], [*PIP, "pytest"]]
    assert plan.manifests == ["pyproject.toml"]


def test_pyproject_without_project_table_is_refused_not_a_silent_success():
    with pytest.raises(RefusedInput, match=r"no \[project\] table"):
        _plan({"pyproject.toml": "[tool.black]\nline-length = 100\n"})


def test_pyproject_tool_config_only_with_setup_py_installs_setup_py():
    plan = _plan(
        {
            "pyproject.toml": "[tool.pytest.ini_options]\naddopts = '--cov=pkg -p pytest_mock'\n",
            "setup.py": "from setuptools import setup\nsetup(name='p', extras_require={'testing': ['mock']})\n",
        }
    )
    assert plan.commands == [VENV, [*PIP, "-e", ".[testing]", "pytest", "pytest-cov", "pytest-mock"]]


def test_setup_py_only_project_is_installed_editable():
    plan = _plan({"setup.py": "from setuptools import setup\nsetup(name='p')\n", "test_p.py": ""})
    assert plan.commands == [VENV, [*PIP, "-e", ".", "pytest"]]


def test_setup_cfg_extras():
    plan = _plan({"setup.cfg": "[metadata]\nname = p\n[options.extras_require]\ntest = pytest-mock\ndocs = sphinx\n"})
    assert plan.commands[-1] == [*PIP, "-e", ".[test]", "pytest"]


def test_poetry_groups_become_requirements():
    plan = _plan(
        {
            "pyproject.toml": """
[tool.poetry]
name = "p"
version = "1"
[tool.poetry.dependencies]
python = "^3.8"
[tool.poetry.group.dev.dependencies]
pytest = "^7.0"
freezegun = "1.2.3"
evil = {git = "https://example.com/x.git"}
[build-system]
requires = ["poetry-core"]
build-backend = "poetry.core.masonry.api"
"""
        }
    )
    assert plan.commands == [VENV, [*PIP, "-e", ".", "pytest>=7.0", "freezegun==1.2.3", "pytest"]]
    assert "dropped" in plan.why and "evil" not in " ".join(plan.commands[-1])


def test_requirements_files_and_tox_deps():
    plan = _plan(
        {
            "requirements.txt": "attrs\n",
            "requirements-dev.txt": "-r requirements.txt\n-e .\nflake8\n",
            "requirements-test.txt": "--index-url https://evil.example/simple\nfoo\n",
            "tox.ini": "[testenv]\ndeps =\n    mock>=2\n    py38: six\n    https://evil.example/x.tar.gz\n    {posargs}\n"
            "[pytest]\naddopts = -n auto --timeout=30\n",
        }
    )
    assert plan.commands == [
        VENV,
        [
            *PIP,
            "-r",
            "requirements.txt",
            "-r",
            "requirements-dev.txt",
            "mock>=2",
            "six",
            "pytest",
            "pytest-xdist",
            "pytest-timeout",
        ],
    ]
    assert "requirements-test.txt line 1" in plan.why  # refused, said why, not installed


def test_pytest_config_plugins_from_every_config_file():
    from kodr_core.python_env import pytest_plugins

    read = _reader(
        {
            "pytest.ini": "[pytest]\nasyncio_mode = auto\nrequired_plugins = pytest-httpx>=0.1\n",
            "setup.cfg": "[tool:pytest]\naddopts = --cov-report=term -p xdist\n",
            "pyproject.toml": "[tool.pytest.ini_options]\naddopts = ['--benchmark-skip']\n",
        }
    )
    assert pytest_plugins(read) == ["pytest-asyncio", "pytest-httpx", "pytest-cov", "pytest-xdist", "pytest-benchmark"]


def test_requirements_only_without_read_is_a_preview():
    plan = plan_install({"requirements.txt", "test_app.py"})
    assert plan.kind == "python" and plan.commands[0] == VENV


def test_node_and_python_both_install_node_first():
    plan = plan_install({"package.json", "requirements.txt"})
    assert plan.kind == "node"
    assert plan.commands[0][:2] == ["npm", "install"]
    assert plan.commands[-1][:3] == ["uv", "pip", "install"]


def test_nested_manifests_do_not_count():
    with pytest.raises(RefusedInput):
        plan_install({"sub/package.json", "lib/requirements.txt"})


def test_nothing_recognisable_is_refused_with_what_was_looked_for():
    with pytest.raises(RefusedInput) as e:
        plan_install({"README.md", "main.go"})
    for name in MANIFESTS:
        assert name in e.value.message


def test_every_command_is_an_argv_list():
    for files in ({"package.json"}, {"pyproject.toml", "uv.lock"}, {"requirements.txt"}):
        for cmd in plan_install(files, _reader({f: '[project]\nname="p"\nversion="1"\n' for f in files})).commands:
            assert isinstance(cmd, list) and all(isinstance(a, str) for a in cmd)


def test_manifests_changed():
    before = {"package.json": "a", "index.js": "x", "uv.lock": "l"}
    after = {"package.json": "b", "index.js": "y", "package-lock.json": "n"}
    assert manifests_changed(before, after) == ["package-lock.json", "package.json", "uv.lock"]
    assert manifests_changed({"setup.py": "a"}, {"setup.py": "b"}) == ["setup.py"]
    assert manifests_changed(before, dict(before, **{"index.js": "z"})) == []
    assert manifests_changed({}, {}) == []


# -- check_package_json -----------------------------------------------------------------


def pj(**deps):
    return json.dumps({"name": "x", "version": "1.0.0", **deps})


def test_plain_registry_specs_are_fine():
    text = pj(
        dependencies={"a": "^1.2.3", "b": "latest", "c": "1.x || >=2.5.0", "d": "npm:lodash@^4"},
        devDependencies={"e": "*", "f": "file:./packages/f", "g": "./local"},
    )
    assert check_package_json(text) == []


def test_invalid_json():
    problems = check_package_json("{not json")
    assert problems and "not valid JSON" in problems[0]
    assert check_package_json("[]") == ["package.json must be a JSON object"]


@pytest.mark.parametrize(
    "spec",
    [
        "https://evil.example/pkg.tgz",
        "http://evil.example/pkg.tgz",
        "git+ssh://git@github.com/u/r.git",
        "git://github.com/u/r.git",
        "github:user/repo",
        "user/repo",
        "user/repo#main",
        "git@github.com:u/r.git",
    ],
)
def test_remote_specs_are_refused(spec):
    problems = check_package_json(pj(dependencies={"x": spec}))
    assert len(problems) == 1 and "dependencies.x" in problems[0]


@pytest.mark.parametrize(
    "spec",
    ["file:../outside", "file:/etc", "link:../../x", "../sibling", "/abs/path", "~/x", "file:~/x", "file:a/../../b"],
)
def test_local_specs_escaping_the_workspace_are_refused(spec):
    problems = check_package_json(pj(optionalDependencies={"x": spec}))
    assert problems and "outside the workspace" in problems[0]


def test_bad_shapes():
    assert check_package_json(pj(dependencies=["a"])) == ["dependencies must be an object"]
    assert check_package_json(pj(dependencies={"a": 1})) == ["dependencies.a: spec must be a string"]


def test_overrides_are_checked():
    problems = check_package_json(pj(overrides={"foo": {"bar": "https://evil.example/x.tgz"}, "baz": "$baz"}))
    assert len(problems) == 1 and problems[0].startswith("overrides.foo.bar")


def test_workspaces_must_stay_inside():
    assert check_package_json(pj(workspaces=["packages/*"])) == []
    assert check_package_json(pj(workspaces={"packages": ["../outside"]})) == [
        "workspaces: '../outside' points outside the workspace"
    ]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("--index-url http://evil.example/simple\nrequests\n", "option '--index-url'"),
        ("-i http://evil.example/simple\n", "option '-i'"),
        ("-e git+https://github.com/x/y\n", "option '-e'"),
        ("-r ../../other.txt\n", "option '-r'"),
        ("git+https://github.com/x/y#egg=y\n", "outside the package index"),
        ("pkg @ https://evil.example/pkg.whl\n", "outside the package index"),
        ("../outside/pkg\n", "local path"),
    ],
)
def test_requirements_txt_refusals(text, problem):
    from kodr_core.install_plan import check_requirements_txt

    found = check_requirements_txt(text)
    assert found and problem in found[0]


def test_requirements_txt_registry_lines_pass():
    from kodr_core.install_plan import check_requirements_txt

    assert check_requirements_txt("# pins\npytest>=8 ; python_version >= '3.11'\nrequests==2.32.3  # http\n\n") == []


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[project\nname=", "not valid TOML"),
        ('[[tool.uv.index]]\nurl = "http://evil.example"\n', "[tool.uv] index"),
        ('[tool.uv.sources]\nx = { git = "https://github.com/x/x" }\n', "git/URL sources"),
        ('[tool.uv.sources]\nx = { path = "../../x" }\n', "outside the workspace"),
        ('[project]\nname = "a"\ndependencies = ["x @ https://evil.example/x.whl"]\n', "outside the package index"),
    ],
)
def test_pyproject_refusals(text, problem):
    from kodr_core.install_plan import check_pyproject_toml

    found = check_pyproject_toml(text)
    assert found and problem in found[0]


def test_pyproject_plain_dependencies_pass():
    from kodr_core.install_plan import check_pyproject_toml

    text = '[project]\nname = "a"\nversion = "0"\ndependencies = ["pytest>=8"]\n[tool.uv.sources]\nlib = { path = "libs/lib" }\n'
    assert check_pyproject_toml(text) == []


def test_a_lockfile_left_behind_a_changed_manifest_is_stale():
    from kodr_core.install_plan import stale_locks

    assert stale_locks(["package.json"]) == {"package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "yarn.lock"}
    assert stale_locks(["package.json", "package-lock.json"]) == {"npm-shrinkwrap.json", "pnpm-lock.yaml", "yarn.lock"}
    assert stale_locks(["pyproject.toml"]) == {"uv.lock"} and stale_locks(["index.js"]) == set()
