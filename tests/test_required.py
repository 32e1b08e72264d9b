"""The test-asset policy (tests/required.py): skip on a developer machine, fail under CI=true."""

from __future__ import annotations

import pytest

from required import require_module, require_path


@pytest.mark.parametrize("ci, outcome", [(None, pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_a_missing_asset_skips_locally_and_fails_under_ci(tmp_path, monkeypatch, ci, outcome):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="real annotations: .*absent.jsonl not found"):
        require_path(tmp_path / "absent.jsonl", "real annotations")
    with pytest.raises(outcome, match="an optional wheel: module no_such_module_xyz is not installed"):
        require_module("no_such_module_xyz", "an optional wheel")


def test_under_ci_the_failure_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true, so a missing test asset is an error"):
        require_path(tmp_path / "absent.jsonl", "real annotations")


def test_a_present_asset_is_returned(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require_path(tmp_path, "a folder") == tmp_path
    require_module("pytest", "the test runner")
