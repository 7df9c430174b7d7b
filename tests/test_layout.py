"""House rules the tree keeps: test modules share helpers through tests/helpers/ (or fixtures), never by
importing one another; one exit code for a refused command."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
        for path in (ROOT / "memeguard").rglob("*.py")
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
