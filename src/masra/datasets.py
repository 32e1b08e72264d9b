"""The datasets masra knows, and their constants. No torch: the evaluator reads these (masra.eval)."""

DATASETS = ("qvhighlights", "charades_sta", "tacos", "tvsum", "youtube_highlights")
# Highlight-detection-only datasets: per-clip ``label`` scores, no moments (no Hungarian matching).
SALIENCY_ONLY_DATASETS = ("tvsum", "youtube_highlights")
# Seconds per feature row, as the anchor repositories use them (docs/data.md, "Clip length per dataset").
DATASET_CLIP_LENGTH = {"qvhighlights": 2.0, "charades_sta": 1.0, "tacos": 2.0, "tvsum": 2.0, "youtube_highlights": 1.0}
# QVHighlights' 2-s clips, also hard-coded by its official evaluator and submission format.
QVH_CLIP_LENGTH = DATASET_CLIP_LENGTH["qvhighlights"]
