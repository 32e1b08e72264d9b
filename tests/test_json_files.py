"""The one atomic JSON writer: a failed write leaves the previous file whole and no temporary file."""

from __future__ import annotations

import json

import pytest

from masra.data.jsonl import write_json, write_jsonl


def test_write_json_replaces_the_file_and_ends_with_a_newline(tmp_path):
    path = tmp_path / "sub" / "m.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": [1, 2]}, indent=4)
    assert path.read_text() == json.dumps({"a": [1, 2]}, indent=4) + "\n"
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


@pytest.mark.parametrize("bad", [{"x": object()}, {"x": float("nan")}])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, bad):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"a": 1}])
    with pytest.raises((TypeError, ValueError)):
        write_jsonl(path, [{"a": 2}, bad])
    assert path.read_text() == '{"a": 1}\n'
    json_path = tmp_path / "m.json"
    write_json(json_path, {"a": 1})
    with pytest.raises(TypeError):
        write_json(json_path, {"x": object()})
    assert json.loads(json_path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "rows.jsonl"]
