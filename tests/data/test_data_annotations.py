"""Annotation readers on every shipped file, and one crafted bad file per validation rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from masra.cli.main import main
from masra.data.annotations import check_annotations, detect_dataset, load_annotations
from masra.data.summary import summarize
from masra.errors import MasraError
from required import SHARED_DATA, require_path



@pytest.fixture
def _shared_data() -> None:
    require_path(SHARED_DATA, "real annotations")


needs_shared = pytest.mark.usefixtures("_shared_data")

# file -> (dataset, rows) as documented in the folders' README files
SHIPPED = {
    "qvhighlights/highlight_train_release.jsonl": ("qvhighlights", 7218),
    "qvhighlights/highlight_val_release.jsonl": ("qvhighlights", 1550),
    "qvhighlights/highlight_test_release.jsonl": ("qvhighlights", 1542),
    "qvhighlights/highlight_test_with_gt.jsonl": ("qvhighlights", 1542),
    "charades_sta/charades_sta_train_tvr_format.jsonl": ("charades_sta", 12404),
    "charades_sta/charades_sta_test_tvr_format.jsonl": ("charades_sta", 3720),
    "tacos/train.jsonl": ("tacos", 9790),
    "tacos/val.jsonl": ("tacos", 4436),
    "tacos/test.jsonl": ("tacos", 4001),
    "tvsum/tvsum_train.jsonl": ("tvsum", 40),
    "tvsum/tvsum_val.jsonl": ("tvsum", 10),
    "youtube_highlights/youtube_train.jsonl": ("youtube_highlights", 233),
    "youtube_highlights/youtube_valid.jsonl": ("youtube_highlights", 152),
}


@needs_shared
def test_every_shipped_file_is_covered_by_this_test() -> None:
    on_disk = {str(p.relative_to(SHARED_DATA.resolve())) for p in SHARED_DATA.resolve().glob("*/*.jsonl")}
    assert on_disk == set(SHIPPED)


@needs_shared
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_file_loads_clean_with_detected_format(name: str) -> None:
    dataset, rows = SHIPPED[name]
    path = SHARED_DATA / name
    result = check_annotations(path)
    assert result.errors == []
    assert result.dataset == dataset
    assert len(result.records) == rows
    raw = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record, row in zip(result.records[:50], raw[:50]):
        assert record.qid == row["qid"] and record.vid == row["vid"] and record.duration == row["duration"]
        assert record.relevant_windows == row.get("relevant_windows")
    labelled = "release.jsonl" not in name or "test" not in name
    assert all(r.has_labels for r in result.records) == labelled


@needs_shared
def test_check_command_reports_every_shipped_file_clean(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(SHARED_DATA / name) for name in sorted(SHIPPED)]
    assert main(["data", "check", *files]) == 0
    out = capsys.readouterr().out
    assert out.count("OK") == len(files)
    assert "error(s)" not in out


@needs_shared
def test_qvh_vid_parsing_keeps_underscores_in_youtube_id() -> None:
    records = load_annotations(SHARED_DATA / "qvhighlights" / "highlight_test_release.jsonl")
    record = next(r for r in records if r.vid == "_6hnl_BrFvs_360.0_510.0")
    assert record.youtube_id == "_6hnl_BrFvs"


@needs_shared
def test_summary_counts_match_the_rows() -> None:
    path = SHARED_DATA / "qvhighlights" / "highlight_val_release.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    summary = summarize(load_annotations(path))
    assert summary.rows == len(rows)
    assert summary.videos == len({r["vid"] for r in rows})
    assert sum(summary.windows_per_query.values()) == len(rows)
    assert summary.windows_per_query[1] == sum(len(r["relevant_windows"]) == 1 for r in rows)
    lengths = [ed - st for r in rows for st, ed in r["relevant_windows"]]
    assert summary.window_length_s.max == max(lengths) and summary.window_length_s.min == min(lengths)
    assert sum(summary.duration_histogram.values()) == len(rows)


QVH_ROW = {
    "qid": 1, "query": "a man talks", "duration": 150, "vid": "abc_def_30.0_180.0",
    "relevant_windows": [[2, 6]], "relevant_clip_ids": [1, 2], "saliency_scores": [[1, 2, 3], [4, 4, 0]],
}
CHARADES_ROW = {"qid": 7, "query": "person opens door", "duration": 30.5, "vid": "AB12C", "relevant_windows": [[1.5, 9.0]]}
TVSUM_ROW = {"qid": "v1", "query": "title", "duration": 2, "vid": "v1", "domain": "BK", "label": [[1.0] * 20, [5.0] * 20]}
YOUTUBE_ROW = {"qid": "y1", "query": "dog", "duration": 5.0, "vid": "y1", "domain": "dog", "label": [[0], [1], [0]]}


def _write(tmp_path: Path, rows: list[object]) -> Path:
    path = tmp_path / "ann.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def _bad(tmp_path: Path, base: dict, **changes: object) -> Path:
    """Three rows of ``base`` with distinct qids; row 2 gets ``changes`` (a None value removes the key)."""
    rows = [dict(base, qid=f"q{i}" if isinstance(base["qid"], str) else 100 + i) for i in range(3)]
    rows[1] = {k: v for k, v in {**rows[1], **changes}.items() if v is not None}
    return _write(tmp_path, rows)


CASES = [
    ("missing key", QVH_ROW, {"query": None}, "query", "missing required key"),
    ("wrong type", QVH_ROW, {"duration": "150"}, "duration", "expected a number"),
    ("non-finite", CHARADES_ROW, {"duration": float("nan")}, "duration", "non-finite"),
    ("start > end", CHARADES_ROW, {"relevant_windows": [[9.0, 1.5]]}, "relevant_windows[0]", "start 9 > end 1.5"),
    ("past duration", CHARADES_ROW, {"relevant_windows": [[1.0, 31.0]]}, "relevant_windows[0]", "outside [0, duration=30.5]"),
    ("negative start", CHARADES_ROW, {"relevant_windows": [[-1.0, 3.0]]}, "relevant_windows[0]", "outside"),
    ("zero length", CHARADES_ROW, {"relevant_windows": [[3.0, 3.0]]}, "relevant_windows[0]", "zero-length"),
    ("inf window", CHARADES_ROW, {"relevant_windows": [[1.0, float("inf")]]}, "relevant_windows[0]", "non-finite"),
    ("bad qid", CHARADES_ROW, {"qid": 1.5}, "qid", "expected an integer or a non-empty string"),
    ("clip ids vs windows", QVH_ROW, {"relevant_clip_ids": [1, 3]}, "relevant_clip_ids", "not the 2-s clips"),
    ("saliency rows", QVH_ROW, {"saliency_scores": [[1, 2, 3]]}, "saliency_scores", "1 rows for 2 relevant_clip_ids"),
    ("saliency value", QVH_ROW, {"saliency_scores": [[1, 2, 3], [4, 5, 0]]}, "saliency_scores[1]", "0..4"),
    ("saliency annotators", QVH_ROW, {"saliency_scores": [[1, 2], [4, 4]]}, "saliency_scores[0]", "3 integers"),
    ("labels without windows", QVH_ROW, {"relevant_windows": None}, "relevant_windows", "missing required key"),
    ("tvsum rows vs duration", TVSUM_ROW, {"duration": 3}, "label", "2 rows but duration"),
    ("tvsum width", TVSUM_ROW, {"label": [[1.0] * 19, [1.0] * 19]}, "label[0]", "expected 20 value(s)"),
    ("tvsum range", TVSUM_ROW, {"label": [[1.0] * 20, [6.0] * 20]}, "label[1]", "outside 1..5"),
    ("youtube values", YOUTUBE_ROW, {"label": [[0], [2], [0]]}, "label[1]", "expected 0 or 1"),
    ("youtube too many", YOUTUBE_ROW, {"label": [[0]] * 8}, "label", "more than one per second"),
    ("youtube vs clip", YOUTUBE_ROW, {"clip": [[0, 100], [50, 150]]}, "label", "3 rows for 2 entries of 'clip'"),
]


@pytest.mark.parametrize("name,base,changes,field,message", CASES, ids=[c[0] for c in CASES])
def test_validation_error_names_file_line_and_field(
    tmp_path: Path, name: str, base: dict, changes: dict, field: str, message: str
) -> None:
    path = _bad(tmp_path, base, **changes)
    with pytest.raises(MasraError) as info:
        load_annotations(path, detect_dataset(base))
    err = info.value
    assert (err.file, err.line, err.field) == (str(path), 2, field)
    assert message in err.message
    assert f"{path}:2: field '{field}'" in str(err)


def test_valid_rows_of_each_kind_load(tmp_path: Path) -> None:
    for base in (QVH_ROW, CHARADES_ROW, TVSUM_ROW, YOUTUBE_ROW):
        records = load_annotations(_write(tmp_path, [base]))
        assert records[0].dataset == detect_dataset(base)
        assert records[0].has_labels


def test_invalid_json_and_non_object_rows(tmp_path: Path) -> None:
    path = _write(tmp_path, [CHARADES_ROW, "{not json", "[1, 2]"])
    result = check_annotations(path)
    assert [(e.line, e.field) for e in result.errors] == [(2, None), (3, None)]
    assert "invalid JSON" in result.errors[0].message and "expected a JSON object" in result.errors[1].message


def test_duplicate_qid_names_the_first_line(tmp_path: Path) -> None:
    path = _write(tmp_path, [CHARADES_ROW, dict(CHARADES_ROW, qid=8), CHARADES_ROW])
    with pytest.raises(MasraError) as info:
        load_annotations(path)
    assert info.value.line == 3 and info.value.field == "qid" and "first on line 1" in info.value.message


def test_window_within_tolerance_past_duration_is_accepted(tmp_path: Path) -> None:
    row = dict(CHARADES_ROW, relevant_windows=[[1.0, CHARADES_ROW["duration"] + 0.005]])
    assert load_annotations(_write(tmp_path, [row]))[0].relevant_windows == row["relevant_windows"]


def test_unlabelled_rows_load_without_targets(tmp_path: Path) -> None:
    row = {k: QVH_ROW[k] for k in ("qid", "query", "duration", "vid")}
    (record,) = load_annotations(_write(tmp_path, [row]))
    assert record.dataset == "qvhighlights" and not record.has_labels


def test_check_collects_all_errors_up_to_the_limit(tmp_path: Path) -> None:
    rows = [dict(CHARADES_ROW, qid=i, relevant_windows=[[5.0, 1.0]]) for i in range(30)]
    path = _write(tmp_path, rows)
    full = check_annotations(path)
    assert [e.line for e in full.errors] == list(range(1, 31)) and not full.truncated
    limited = check_annotations(path, max_errors=7)
    assert len(limited.errors) == 7 and limited.truncated
    with pytest.raises(MasraError, match="and 29 more"):
        load_annotations(path)


def test_check_command_prints_every_error_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, [dict(CHARADES_ROW, relevant_windows=[[5.0, 1.0]]), CHARADES_ROW, "oops"])
    assert main(["data", "check", str(path), "--dataset", "charades_sta"]) == 1
    out = capsys.readouterr().out
    assert f"{path}:1: field 'relevant_windows[0]': start 5 > end 1" in out
    assert f"{path}:2: field 'qid': duplicate qid" in out
    assert f"{path}:3: invalid JSON" in out


def test_unknown_dataset_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MasraError, match="unknown dataset"):
        load_annotations(_write(tmp_path, [CHARADES_ROW]), "kinetics")
    with pytest.raises(MasraError, match="file not found"):
        load_annotations(tmp_path / "nope.jsonl")


def test_int_and_string_qid_naming_the_same_file_are_refused_with_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, [dict(CHARADES_ROW, qid=9769), dict(CHARADES_ROW, qid=8), dict(CHARADES_ROW, qid="9769")])
    with pytest.raises(MasraError) as info:
        load_annotations(path, "charades_sta")
    err = info.value
    assert (err.file, err.line, err.field) == (str(path), 3, "qid")
    assert "qid '9769' and qid 9769 on line 1 name the same files" in err.message and "qid9769.npz" in err.message


@pytest.mark.parametrize("field,value", [("vid", "../../etc/passwd"), ("vid", "/abs/video"), ("vid", ".."),
                                         ("qid", "a/../../b")])
def test_names_that_would_leave_a_feature_folder_are_refused_at_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: str
) -> None:
    path = _write(tmp_path, [CHARADES_ROW, {**CHARADES_ROW, "qid": 8, field: value}])
    with pytest.raises(MasraError) as info:
        load_annotations(path, "charades_sta")
    assert (info.value.file, info.value.line, info.value.field) == (str(path), 2, field)
    assert f"refusing {value!r} as a file name" in info.value.message
    assert main(["data", "check", str(path), "--dataset", "charades_sta"]) == 1
    assert f"{path}:2: field '{field}': refusing" in capsys.readouterr().out
