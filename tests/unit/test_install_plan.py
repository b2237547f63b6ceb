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


def test_npm_install_without_a_lockfile():
    plan = plan_install({"package.json", "index.test.js"})
    assert plan.commands == [["npm", "install", *NPM_FLAGS]]
    assert plan.kind == "node"


def test_uv_sync_frozen_with_uv_lock():
    plan = plan_install({"pyproject.toml", "uv.lock"})
    assert plan.commands == [["uv", "sync", "--frozen"]]
    assert plan.kind == "python"
    assert plan.manifests == ["pyproject.toml", "uv.lock"]


def test_uv_sync_without_lock():
    assert plan_install({"pyproject.toml", "app.py"}).commands == [["uv", "sync"]]


def test_requirements_into_workspace_venv():
    plan = plan_install({"requirements.txt", "test_app.py"})
    assert plan.commands == [
        ["uv", "venv", ".venv"],
        ["uv", "pip", "install", "--python", ".venv/bin/python", "-r", "requirements.txt"],
    ]
    assert plan.kind == "python"


def test_pyproject_wins_over_requirements():
    plan = plan_install({"pyproject.toml", "requirements.txt"})
    assert plan.commands == [["uv", "sync"]]


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
        for cmd in plan_install(files).commands:
            assert isinstance(cmd, list) and all(isinstance(a, str) for a in cmd)


def test_manifests_changed():
    before = {"package.json": "a", "index.js": "x", "uv.lock": "l"}
    after = {"package.json": "b", "index.js": "y", "package-lock.json": "n"}
    assert manifests_changed(before, after) == ["package-lock.json", "package.json", "uv.lock"]
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


@pytest.mark.parametrize("spec", ["file:../outside", "file:/etc", "link:../../x", "../sibling", "/abs/path", "~/x", "file:~/x", "file:a/../../b"])
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
