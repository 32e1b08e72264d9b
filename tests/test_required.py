"""The test-asset policy (tests/required.py): skip on a developer machine, fail under CI=true."""

from __future__ import annotations

import pytest

from required import require_module, require_path


def test_a_missing_asset_skips_locally_with_its_reason(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="real annotations: .*absent.jsonl not found"):
        require_path(tmp_path / "absent.jsonl", "real annotations")
    with pytest.raises(pytest.skip.Exception, match="module no_such_module_xyz is not installed"):
        require_module("no_such_module_xyz", "an optional wheel")


def test_a_missing_asset_fails_under_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="absent.jsonl not found; CI=true"):
        require_path(tmp_path / "absent.jsonl", "real annotations")
    with pytest.raises(pytest.fail.Exception, match="no_such_module_xyz is not installed; CI=true"):
        require_module("no_such_module_xyz", "an optional wheel")


def test_a_present_asset_is_returned(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require_path(tmp_path, "a folder") == tmp_path
    require_module("pytest", "the test runner")
