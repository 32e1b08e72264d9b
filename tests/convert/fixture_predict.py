"""`masra predict` on an anchor fixture's own inputs (tests/fixtures/<anchor>/io.npz), for the tests that compare
a converted run's submission rows with those the anchor's inference code wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from masra.cli.main import main


def predict_fixture_rows(run: Path, io: dict[str, np.ndarray], expected: list[dict], folder: Path) -> list[dict]:
    """Writes the fixture's features as feature files (already L2-normalised, so normalisation is switched off;
    masra appends the TEF, so the fixture's two TEF columns are cut) and the annotation rows of ``expected``,
    runs `masra predict` with ``run`` and returns its rows."""
    (folder / "v").mkdir()
    (folder / "t").mkdir()
    rows = []
    for i, row in enumerate(expected):
        clips, tokens = int(io["src_vid_mask"][i].sum()), int(io["src_txt_mask"][i].sum())
        np.savez(folder / "v" / f"{row['vid']}.npz", features=io["src_vid"][i, :clips, :-2])
        np.savez(folder / "t" / f"qid{row['qid']}.npz", last_hidden_state=io["src_txt"][i, :tokens])
        rows.append({"qid": row["qid"], "query": row["query"], "vid": row["vid"], "duration": 2.0 * clips})
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = folder / "preds.jsonl"
    assert main(["predict", "--checkpoint", str(run), "--annotations", str(folder / "test.jsonl"),
                 "--out", str(out), "--device", "cpu", "--set", f"data.v_feat_dirs=[{folder / 'v'}]",
                 "--set", f"data.t_feat_dir={folder / 't'}", "--set", "data.normalize_video=false",
                 "--set", "data.normalize_text=false"]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]
