"""House rules the tree keeps: test modules share helpers through tests/helpers/ (or fixtures), never by
importing one another; one exit code for a refused command."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _first_party() -> list[str]:
    import tomllib

    return list(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]["files"])


LAYERED_PACKAGES = _first_party()


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    names |= {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    return names


def test_test_modules_import_only_helpers_from_the_tests_tree() -> None:
    offenders = {}
    for path in (ROOT / "tests").rglob("*.py"):
        wrong = {m for m in imported_modules(path) if m.startswith("tests.") and not m.startswith("tests.helpers")}
        if wrong:
            offenders[str(path.relative_to(ROOT))] = sorted(wrong)
    assert offenders == {}


def test_one_exit_code_for_a_refused_command() -> None:
    defined = [
        str(path.relative_to(ROOT))
        for package in LAYERED_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "EXIT_REJECTED = " in path.read_text(encoding="utf-8")
    ]
    assert len(defined) == 1, defined


def test_the_image_installs_pinned_locks_that_cover_every_dependency() -> None:
    """The Dockerfile's base is pinned to a patch release and suite, and it installs requirements/<lock>.lock
    with --no-deps: so each lock must pin every dependency the image's extras declare."""
    import re
    import tomllib

    from packaging.requirements import Requirement

    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11\.\d+-slim-\w+$", dockerfile, re.MULTILINE)
    assert "--no-deps -r requirements.lock" in dockerfile
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for lock, extras in (("cpu", ["cpu", "s3"]), ("gpu", ["cpu", "vlm", "s3"])):
        pinned = {}
        for line in (ROOT / "requirements" / f"{lock}.lock").read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                name, version = line.split("==")
                pinned[name] = version
        wanted = project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]]
        for spec in wanted:
            requirement = Requirement(spec)
            name = re.sub(r"[-_.]+", "-", requirement.name).lower()
            assert name in pinned, (lock, name)
            assert requirement.specifier.contains(pinned[name], prereleases=True), (lock, name, pinned[name])


def test_every_first_party_package_is_typed_packaged_shipped_and_layered() -> None:
    """One list of packages (mypy's files) is what setuptools packages, the image copies and the import
    contracts cover: a new package cannot slip past the type check, the image or the layers."""
    import configparser
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packaged = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packaged == {*LAYERED_PACKAGES, "migrations"}
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for package in LAYERED_PACKAGES:
        assert f"COPY {package} ./{package}" in dockerfile, package
    contracts = configparser.ConfigParser()
    contracts.read(ROOT / ".importlinter")
    assert contracts["importlinter"]["root_packages"].split() == LAYERED_PACKAGES


def test_no_import_cycle_between_first_party_modules() -> None:
    """Every import statement of the first-party packages (inside functions too, as grimp reads them) forms a graph
    without a cycle: Tarjan's strongly connected components are all single modules."""
    import sys

    import grimp

    graph = grimp.build_graph(*LAYERED_PACKAGES, include_external_packages=False)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in edges[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert cycles == []


@pytest.mark.integration  # a fresh interpreter of its own
def test_importing_the_application_builds_nothing() -> None:
    """No work at import time: importing the adapters and the composition creates no Celery app, no console
    router or template environment, no ASGI app and no password hash (each is made by a function the
    composition calls, or on first use). A fresh interpreter, so no other test's app counts."""
    import subprocess
    import sys

    code = """
import celery._state
from fastapi import APIRouter
import composition.cli, composition.webapp, composition.worker_app
import console.app, console.dashboard, console.items, console.web, review.users, worker.tasks
assert not list(celery._state._get_active_apps()), "a Celery app was built at import"
modules = (console.app, console.dashboard, console.items, console.web)
assert not [n for m in modules for n, v in vars(m).items() if isinstance(v, APIRouter)], "a router at import"
assert console.web.templates.cache_info().currsize == 0, "templates loaded at import"
assert review.users._dummy_hash.cache_info().currsize == 0, "a password hashed at import"
assert "app" not in vars(composition.webapp) and "app" not in vars(composition.worker_app), "an app at import"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
