"""The Docker image is built from hash-locked dependencies (issue 15): requirements.lock pins exactly the runtime
dependencies pyproject.toml declares (and what they need), each with its hashes and within its specifier, resolved for
the image's Python; the Dockerfile installs only from the locks with --require-hashes, then the project with
--no-deps. Read from the files, as pip and docker would; docker itself is not needed."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = "requirements.lock"
BUILD_LOCK = "requirements-build.lock"
# How uv's annotations name the project itself as the reason for a pin.
PROJECT_SOURCE = "license-server (pyproject.toml)"


@dataclass
class Pin:
    version: Version
    hashes: list[str]
    via: list[str] = field(default_factory=list)


def _lock(name: str) -> dict[NormalizedName, Pin]:
    """The pins of a lock file: each ``name==version --hash=...`` requirement (continuation lines joined) with the
    ``# via`` annotations that follow it."""
    pins: dict[NormalizedName, Pin] = {}
    current: Pin | None = None
    text = (REPO / name).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            annotation = stripped.lstrip("#").strip()
            if current is not None and annotation.startswith("via"):
                annotation = annotation.removeprefix("via").strip()
            if current is not None and annotation:
                current.via.append(annotation)
            continue
        requirement_text, *options = re.split(r"\s+(?=--)", stripped)
        requirement = Requirement(requirement_text)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{name}: {requirement_text} is not pinned to one version"
        hashes = [option.removeprefix("--hash=") for option in options if option.startswith("--hash=sha256:")]
        assert len(hashes) == len(options), f"{name}: {requirement_text} has options other than --hash: {options}"
        current = Pin(Version(specifier.version), hashes)
        pins[canonicalize_name(requirement.name)] = current
    return pins


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def _docker_python() -> str:
    """The Python version of the Dockerfile's base images (all of its stages use the same one)."""
    versions: set[str] = set(re.findall(r"^FROM python:(\d+\.\d+)\S*", _dockerfile(), re.MULTILINE))
    assert len(versions) == 1, f"the Dockerfile's stages use one Python, not {versions}"
    return versions.pop()


def _docker_environment() -> dict[str, str]:
    """The marker environment inside the image: CPython on Linux (python:X.Y-slim)."""
    python = _docker_python()
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _applicable(requirements: list[str]) -> list[Requirement]:
    """The requirements whose markers hold in the image."""
    parsed = [Requirement(text) for text in requirements]
    return [r for r in parsed if r.marker is None or r.marker.evaluate(_docker_environment())]


def _runtime_dependencies() -> list[Requirement]:
    dependencies: list[str] = _pyproject()["project"]["dependencies"]
    return _applicable(dependencies)


def _assert_pinned_with_hashes_within_specifiers(requirements: list[Requirement], lock: str) -> None:
    pins = _lock(lock)
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} does not pin {requirement.name}, which pyproject.toml declares"
        pin = pins[name]
        assert pin.hashes, f"{lock} pins {name} without a --hash"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{lock} pins {name}=={pin.version}, outside pyproject.toml's {requirement.specifier}"
        )


def test_every_runtime_dependency_is_pinned_with_hashes_within_its_specifier() -> None:
    _assert_pinned_with_hashes_within_specifiers(_runtime_dependencies(), RUNTIME_LOCK)


def test_the_lock_holds_the_runtime_dependencies_and_only_what_they_need() -> None:
    pins = _lock(RUNTIME_LOCK)
    declared = {canonicalize_name(r.name) for r in _runtime_dependencies()}
    direct = {name for name, pin in pins.items() if PROJECT_SOURCE in pin.via}
    # Not the test or dev extras, and nothing pyproject.toml no longer declares.
    assert direct == declared, (
        f"{RUNTIME_LOCK} (run `make lock`) lacks {sorted(declared - direct)} and pins {sorted(direct - declared)} "
        "as direct dependencies pyproject.toml does not declare"
    )
    for name, pin in pins.items():
        assert pin.hashes, f"{RUNTIME_LOCK} pins {name} without a --hash"
        assert pin.via, f"{RUNTIME_LOCK} pins {name} for no reason (hand-added?)"
        unknown = [reason for reason in pin.via if reason != PROJECT_SOURCE and canonicalize_name(reason) not in pins]
        assert not unknown, f"{RUNTIME_LOCK} pins {name} for packages it does not pin: {unknown}"
    # Every transitive pin is needed by a chain ending at a declared dependency.
    needed = set(direct)
    while True:
        more = {name for name, pin in pins.items() if any(canonicalize_name(r) in needed for r in pin.via)} - needed
        if not more:
            break
        needed |= more
    assert needed == set(pins), f"{RUNTIME_LOCK} pins what no declared dependency needs: {set(pins) - needed}"


def test_the_locks_are_resolved_for_the_docker_image_python() -> None:
    python = _docker_python()
    requires_python = _pyproject()["project"]["requires-python"]
    assert Version(python) in Requirement(f"license-server{requires_python}").specifier
    for lock in (RUNTIME_LOCK, BUILD_LOCK):
        header = (REPO / lock).read_text().splitlines()[:2]
        assert header[1] == f"#    make lock  (Python {python} on Linux, as the Dockerfile)", (
            f"{lock} was not resolved by `make lock` for the image's Python {python}: {header}"
        )


def test_the_build_backend_is_pinned_with_hashes_within_its_specifier() -> None:
    requires: list[str] = _pyproject()["build-system"]["requires"]
    _assert_pinned_with_hashes_within_specifiers(_applicable(requires), BUILD_LOCK)


def _run_commands() -> list[list[str]]:
    """Each command of the Dockerfile's RUN instructions (continuations joined, split at ``&&``), as words."""
    text = _dockerfile().replace("\\\n", " ")
    commands: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("RUN "):
            commands += [shlex.split(part) for part in line.removeprefix("RUN ").split("&&")]
    return commands


def _pip(command: list[str]) -> list[str] | None:
    """The words after ``pip`` (``pip ...``, ``/opt/venv/bin/pip ...``, ``python -m pip ...``), or None."""
    for index, word in enumerate(command):
        if word.endswith("/pip") or word == "pip":
            return command[index + 1 :]
        if word == "-m" and command[index + 1 : index + 2] == ["pip"]:
            return command[index + 2 :]
    return None


def test_the_dockerfile_installs_from_the_locks_by_hash_and_the_project_without_dependencies() -> None:
    pip_commands = [arguments for command in _run_commands() if (arguments := _pip(command)) is not None]
    assert pip_commands, "the Dockerfile runs pip"
    installed_locks: list[str] = []
    for arguments in pip_commands:
        verb = arguments[0]
        if verb in ("install", "wheel"):
            assert "--no-deps" in arguments, f"pip {shlex.join(arguments)} would resolve dependencies unhashed"
        if verb == "wheel":
            # Build isolation would fetch the build backend from the index, unhashed.
            assert "--no-build-isolation" in arguments, f"pip {shlex.join(arguments)}"
        if verb != "install":
            continue
        if "-r" in arguments:
            assert "--require-hashes" in arguments, f"pip {shlex.join(arguments)} installs without checking hashes"
            installed_locks.append(arguments[arguments.index("-r") + 1])
        else:
            # Anything else installed is the project built from this source: paths, never names from an index.
            targets = [word for word in arguments[1:] if not word.startswith("-")]
            assert targets, f"pip {shlex.join(arguments)}"
            assert all(t == "." or t.startswith(("/", "./")) for t in targets), f"pip {shlex.join(arguments)}"
    assert sorted(installed_locks) == sorted([RUNTIME_LOCK, BUILD_LOCK])
    # With --no-deps a package missing from the lock is not fetched: the build fails on it here instead.
    assert pip_commands[-1] == ["check"], "pip check runs after the last install"
    copied = re.findall(r"^COPY (?!--from)(.*) \S+$", _dockerfile(), re.MULTILINE)
    assert any({RUNTIME_LOCK, BUILD_LOCK} <= set(line.split()) for line in copied), "the locks are copied in"


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, BUILD_LOCK])
def test_make_lock_writes_the_lock(lock: str) -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^lock:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "the Makefile has a lock target"
    assert f"-o {lock}" in recipe.group(1)
    assert "--generate-hashes" in makefile
