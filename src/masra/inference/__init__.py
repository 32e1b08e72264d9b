"""Inference from a trained checkpoint, one module per job:

- :mod:`~masra.inference.loading`: ``load_model`` rebuilds a checkpoint's model (config + dims + weights);
- :mod:`~masra.inference.grounder`: :class:`Grounder`, the tensor API on features the caller provides;
- :mod:`~masra.inference.video`: the checkpoint's encoder, loaded and checked (a query over a video file:
  :mod:`masra.model.video_inference`, shared with masra.runtime);
- :mod:`~masra.inference.split`: ``predict_split`` / ``evaluate_checkpoint`` over an annotation split.

No priors and no MLLM are needed here: a MASRA model runs on video features + query features alone. Nothing
here imports masra.train, masra.priors, masra.lab or masra.cli (a test checks this).

    from masra.inference import Grounder
    grounder = Grounder.from_checkpoint("runs/qvh/best")
    pred = grounder.predict(video_feats, query_feats, duration=150)   # raw [L, D] features, [N, Dt] tokens
    pred.windows[0]    # (start_s, end_s, score) of the best moment
    pred.saliency      # [L] per-clip highlight scores

From a video file (the checkpoint records the CLIP encoder of its features; weights must be present):

    video = grounder.extract_video("clip.mp4", progress=lambda stage, done, total: ...)
    pred = grounder.predict_video(video, "when does the chef cut the pizza?")   # or predict_video("clip.mp4", ...)
    pred.windows[:3], pred.saliency, pred.to_row()
"""

from masra.inference.grounder import Grounder, Prediction
from masra.inference.loading import load_model
from masra.inference.split import SplitPredictions, evaluate_checkpoint, predict_split

# The video side (masra.features.video.VideoFeatures, masra.video.predict.VideoPrediction) needs the video
# extra and is imported where it is used, so this package loads in a core install.
__all__ = [
    "Grounder",
    "Prediction",
    "SplitPredictions",
    "evaluate_checkpoint",
    "load_model",
    "predict_split",
]
