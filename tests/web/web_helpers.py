"""Helpers of the web tests (a module of its own: test files import it, conftest stays fixtures only)."""

from __future__ import annotations

import importlib.util
import os

import pytest


def missing(reason: str) -> None:
    """Skip on a developer machine; under CI=true a missing requirement is a failure, not a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: required)")
    pytest.skip(reason, allow_module_level=True)


def require_web_extra() -> None:
    """The web tests need the ``masra[web]`` extra (FastAPI, uvicorn)."""
    for module in ("fastapi", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            missing(f"the web extra is not installed ({module} missing): pip install 'masra[web]'")
