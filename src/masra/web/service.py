"""The grounder behind the page: features of a video are extracted once and reused for further queries."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from masra.errors import MasraError
from masra.video.report import distinct_windows
from masra.web.jobs import Progress
from masra.web.media import Video


class GroundingService:
    """Wraps a :class:`masra.inference.Grounder`. Only the job runner's single worker thread calls
    :meth:`ground`, so the cache needs no lock."""

    def __init__(self, grounder: Any, top_k: int, cache_size: int = 4) -> None:
        self.grounder = grounder
        self.top_k = top_k
        self.cache_size = cache_size
        self._features: OrderedDict[tuple, Any] = OrderedDict()

    def ground(self, video: Video, query: str, progress: Progress) -> dict[str, Any]:
        try:
            features = self._extract(video, progress)
            prediction = self.grounder.predict_video(features, query, progress=progress, top_k=self.top_k)
        except MasraError as err:  # the page names the video as the person knows it, not by its server path
            raise MasraError(str(err).replace(str(video.path), video.name)) from None
        n_clips = len(prediction.saliency)
        return {
            "video": video.as_dict(),
            "query": prediction.query,
            "duration": float(prediction.duration),
            "clip_length": float(prediction.clip_length),
            "moments": [{"start": s, "end": e, "score": p} for s, e, p in distinct_windows(prediction.windows)],
            "saliency": [float(v) for v in prediction.saliency],
            "saliency_times": [float(t) for t in features.frame_times[:n_clips]],
        }

    def _extract(self, video: Video, progress: Progress) -> Any:
        stat = video.path.stat()
        key = (str(video.path), stat.st_mtime_ns, stat.st_size)
        if key in self._features:
            self._features.move_to_end(key)
            return self._features[key]
        features = self.grounder.extract_video(video.path, progress=progress)
        self._features[key] = features
        while len(self._features) > self.cache_size:
            self._features.popitem(last=False)
        return features
