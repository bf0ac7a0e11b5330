"""requirements.txt is a lock file that `make run` installs with `--no-deps`: nothing checks it at install
time, so this does. Every dependency of every locked package is locked too, at a version that fits, or is
one of the few left out on purpose (the "# left out:" lines), which nothing of ours imports. The versions
of the packages' dependencies are read from their metadata in this (the dev) venv, which installs the lock.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.txt"
RUNTIME_EXTRAS = ("dashboard", "api", "embedded", "export")  # what `make run` serves; not otel


def _lock() -> tuple[dict[str, Version], set[str]]:
    pins: dict[str, Version] = {}
    left_out: set[str] = set()
    for line in LOCK.read_text().splitlines():
        if m := re.match(r"#\s*left out:\s*([\w.-]+)", line):
            left_out.add(canonicalize_name(m.group(1)))
        elif line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version.strip())
    return pins, left_out


def _needs(requirement: str, extras: tuple[str, ...] = ("",)) -> Requirement | None:
    req = Requirement(requirement)
    if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
        return req
    return None


def _unmet(req: Requirement, pins: dict[str, Version], left_out: set[str]) -> str | None:
    name = canonicalize_name(req.name)
    if name in left_out:
        return None
    if name not in pins:
        return "not in the lock"
    if not req.specifier.contains(pins[name], prereleases=True):
        return f"{pins[name]} does not fit {req.specifier}"
    return None


def test_every_dependency_of_the_lock_is_locked_at_a_version_that_fits_or_left_out_on_purpose() -> None:
    pins, left_out = _lock()
    assert pins and left_out <= {"pydeck", "pillow", "altair"}, left_out
    gaps, wanted = [], set()
    for name, version in pins.items():
        dist = metadata.distribution(name)
        assert Version(dist.version) == version, f"{name}: {dist.version} installed, {version} locked"
        for requirement in dist.requires or []:
            if (req := _needs(requirement)) is not None:
                wanted.add(canonicalize_name(req.name))
                if problem := _unmet(req, pins, left_out):
                    gaps.append(f"{name} needs {req}: {problem}")
    assert not gaps, "\n".join(gaps)
    assert left_out <= wanted, f"left out but needed by nothing locked: {left_out - wanted}"


def test_the_package_and_its_runtime_extras_are_satisfied_by_the_lock() -> None:
    pins, _ = _lock()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    declared += [r for extra in RUNTIME_EXTRAS for r in project["optional-dependencies"][extra]]
    gaps = [f"{r}: {problem}" for r in declared if (problem := _unmet(Requirement(r), pins, set()))]
    assert not gaps, "\n".join(gaps)


def test_nothing_of_ours_imports_what_the_lock_leaves_out() -> None:
    _, left_out = _lock()
    modules = {"pydeck": "pydeck", "pillow": "PIL", "altair": "altair"}
    pattern = re.compile(r"^\s*(?:import|from)\s+(" + "|".join(modules[n] for n in left_out) + r")\b", re.M)
    found = [f"{path.relative_to(ROOT)}: {m.group(0).strip()}" for folder in ("yadtq", "dashboard", "worker_farm")
             for path in sorted((ROOT / folder).rglob("*.py")) for m in pattern.finditer(path.read_text())]
    assert not found, found
