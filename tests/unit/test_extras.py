"""`needs_extra`: a missing optional package reads as the pip line that installs it."""

from __future__ import annotations

import tomllib

import pytest
from conftest import ROOT

from yadtq.errors import ConfigError
from yadtq.extras import EXTRA_MODULES, MissingExtra, needs_extra


def test_a_missing_package_of_the_extra_names_the_extra() -> None:
    with pytest.raises(MissingExtra) as caught, needs_extra("api", "yadtq api"):
        raise ModuleNotFoundError("No module named 'fastapi.security'", name="fastapi.security")
    assert isinstance(caught.value, ConfigError)  # the CLI's usage exit code
    assert str(caught.value) == "yadtq api needs fastapi, which is not installed: pip install 'yadtq[api]'"


def test_other_import_errors_pass_through() -> None:
    with pytest.raises(ModuleNotFoundError, match="yadtq_nowhere"), needs_extra("api", "yadtq api"):
        import yadtq_nowhere  # type: ignore[import-not-found]  # noqa: F401


def test_the_extras_match_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRA_MODULES) <= set(declared)
