"""Hostile JSONL files (binary, latin-1, numbers beyond float range, deep nesting) through every reader:
annotations (`data check`), submissions and ground truth (`evaluate --pred/--gt`). Each must give the usual
``file:line: field`` MasraError, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from masra.cli.main import main
from masra.data.annotations import check_annotations, load_annotations
from masra.data.jsonl import write_json, write_jsonl
from masra.eval.submission import load_ground_truth, load_submission
from masra.errors import MasraError

GT_ROW = {
    "qid": 1, "query": "a man talks", "duration": 150, "vid": "abc_def_30.0_180.0",
    "relevant_windows": [[2, 6]], "relevant_clip_ids": [1, 2], "saliency_scores": [[1, 2, 3], [4, 4, 0]],
}
PRED_ROW = {"qid": 1, "pred_relevant_windows": [[2.0, 6.0, 0.9]], "pred_saliency_scores": [0.1, 0.5]}
HUGE = "1" + "0" * 400  # 10**400: a valid JSON integer, beyond float range
HUGER = "9" * 5000  # past Python's 4300-digit int parsing limit
DEEP = "[" * 100_000 + "]" * 100_000

# reader, its base row, and where the huge number goes (key, value with a "HUGE" placeholder, field named)
READERS: dict[str, tuple[Callable[[Path], object], dict, str, object, str]] = {
    "annotations": (load_annotations, GT_ROW, "duration", "HUGE", "duration"),
    "ground truth": (load_ground_truth, GT_ROW, "relevant_windows", [[2, "HUGE"]], "relevant_windows[0][1]"),
    "submission": (load_submission, PRED_ROW, "pred_saliency_scores", [0.1, "HUGE"], "pred_saliency_scores[1]"),
}


def _rows(base: dict) -> list[dict]:
    return [dict(base, qid=base["qid"] + i) for i in range(3)]


def _write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _line(row: dict, **replace: str) -> bytes:
    text = json.dumps(row)
    for placeholder, value in replace.items():
        text = text.replace(json.dumps(placeholder), value)
    return text.encode("utf-8")


def _error(reader: Callable[[Path], object], path: Path) -> MasraError:
    with pytest.raises(MasraError) as info:
        reader(path)
    assert info.value.file == str(path)
    return info.value


@pytest.mark.parametrize("kind", READERS)
def test_binary_file_names_file_and_line(tmp_path: Path, kind: str) -> None:
    reader = READERS[kind][0]
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x89\xfe\xff\x00\x80binary" * 20)
    err = _error(reader, path)
    assert err.line == 1 and "not UTF-8 text" in err.message


@pytest.mark.parametrize("kind", READERS)
def test_latin1_line_names_file_and_line(tmp_path: Path, kind: str) -> None:
    reader, base = READERS[kind][:2]
    rows = _rows(base)
    lines = [_line(r) for r in rows]
    lines[1] = json.dumps(dict(rows[1], note="café"), ensure_ascii=False).encode("latin-1")
    err = _error(reader, _write_lines(tmp_path / "rows.jsonl", lines))
    assert err.line == 2 and "not UTF-8 text" in err.message and "column" in err.message


@pytest.mark.parametrize("digits", [HUGE, HUGER], ids=["1e400", "5000 digits"])
@pytest.mark.parametrize("kind", READERS)
def test_number_beyond_float_range_names_the_field(tmp_path: Path, kind: str, digits: str) -> None:
    reader, base, key, value, field = READERS[kind]
    rows = _rows(base)
    lines = [_line(r) for r in rows]
    lines[1] = _line(dict(rows[1], **{key: value}), HUGE=digits)
    err = _error(reader, _write_lines(tmp_path / "rows.jsonl", lines))
    assert (err.line, err.field) == (2, field)
    assert "too large for a float" in err.message
    assert len(str(err)) < 300  # the number is abbreviated, not printed in full


@pytest.mark.parametrize("kind", READERS)
def test_deeply_nested_json_names_file_and_line(tmp_path: Path, kind: str) -> None:
    reader, base = READERS[kind][:2]
    rows = _rows(base)
    lines = [_line(r) for r in rows]
    lines[1] = _line(dict(rows[1], note="DEEP"), DEEP=DEEP)
    err = _error(reader, _write_lines(tmp_path / "rows.jsonl", lines))
    assert err.line == 2 and "nested too deeply" in err.message


def test_check_keeps_going_after_hostile_lines(tmp_path: Path) -> None:
    rows = _rows(GT_ROW)
    lines = [_line(rows[0]), b"\xff\xfe oops", _line(dict(rows[1], duration="HUGE"), HUGE=HUGE),
             _line(dict(rows[2], note="DEEP"), DEEP=DEEP), _line(dict(rows[2], qid=50))]
    result = check_annotations(_write_lines(tmp_path / "ann.jsonl", lines))
    assert [(e.line, e.field) for e in result.errors] == [(2, None), (3, "duration"), (4, None)]
    assert [r.qid for r in result.records] == [1, 50]


def test_data_check_and_evaluate_commands_report_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\x80\x81\x82" * 10)
    assert main(["data", "check", str(binary)]) == 1
    assert f"{binary}:1: not UTF-8 text" in capsys.readouterr().out

    gt = _write_lines(tmp_path / "gt.jsonl", [_line(r) for r in _rows(GT_ROW)])
    pred_rows = _rows(PRED_ROW)
    pred_lines = [_line(r) for r in pred_rows]
    pred_lines[2] = _line(dict(pred_rows[2], pred_saliency_scores=[0.1, "HUGE"]), HUGE=HUGE)
    pred = _write_lines(tmp_path / "pred.jsonl", pred_lines)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "m.json")]) == 1
    err = capsys.readouterr().err
    assert f"{pred}:3: field 'pred_saliency_scores[1]'" in err and "Traceback" not in err
    assert not (tmp_path / "m.json").exists()


def test_failed_jsonl_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "preds.jsonl"
    write_jsonl(path, [PRED_ROW])
    with pytest.raises(ValueError, match="non-finite"):
        write_jsonl(path, [PRED_ROW, dict(PRED_ROW, qid=2, pred_saliency_scores=[float("nan")])])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.jsonl"]
    assert load_submission(path) == [PRED_ROW]


def test_failed_json_write_onto_a_folder_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.mkdir()  # os.replace onto a folder fails after the temporary file is complete
    with pytest.raises(IsADirectoryError):
        write_json(target, {"brief": {}})
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"] and target.is_dir()
