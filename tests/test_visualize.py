"""One query plot for `masra predict --plots` (one model) and the demo (several models against GT saliency)."""

from __future__ import annotations

from PIL import Image

from masra.visualize import plot_query, query_title

ROW = {"qid": 7, "vid": "v_0_10", "query": "a dog runs", "pred_relevant_windows": [[2.0, 6.0, 0.9], [0.0, 2.0, 0.3]],
       "pred_saliency_scores": [0.1, 0.5, 0.9, 0.4, 0.2]}


def test_one_model_and_several_models_draw_the_same_picture_layout(tmp_path):
    single = plot_query(tmp_path / "one.png", {"prediction": ROW}, clip_length=2.0, gt_windows=[[2.0, 6.0]],
                        title=query_title(ROW))
    several = plot_query(tmp_path / "sub" / "two.png", {"baseline": ROW, "masra": {**ROW, "pred_saliency_scores": []}},
                         clip_length=2.0, duration=10.0, gt_windows=[[2.0, 6.0]],
                         gt_saliency=[0.0, 0.5, 1.0, 0.5, 0.0], top_k=1)
    for path in (single, several):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (900, 360)
    assert query_title({**ROW, "query": "x" * 100}).endswith("x" * 87 + "...")
