"""Grounding through the API with a real checkpoint: the page gets what the Python API computes, and a
second query on the same video reuses its features; on torch and on an export, on each backbone."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest


def test_each_window_is_listed_once_at_its_best_score():
    from masra.video.report import distinct_windows

    windows = [(2.0, 4.0, 0.9), (0.0, 2.0, 0.8), (2.0, 4.0, 0.7), (2.0, 6.0, 0.6), (0.0, 2.0, 0.95)]
    assert distinct_windows(windows) == [(0.0, 2.0, 0.95), (2.0, 4.0, 0.9), (2.0, 6.0, 0.6)]


def finished(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {status}")


@pytest.fixture(scope="module", params=["trained", "masra-moment-detr", "masra-cg-detr"])
def served(request, web_checkpoint, tmp_path_factory) -> SimpleNamespace:
    """The checkpoint the page serves: web_checkpoint (QD-DETR), or one on another backbone with every MASRA part
    on (seeded, untrained) and web_checkpoint's encoder."""
    if request.param == "trained":
        return web_checkpoint
    from runtime.conftest import SEMANTIC_DIM, tiny_checkpoint

    from masra.checkpoint import ModelDims
    from masra.features.encoder import ClipEncoder

    encoder = ClipEncoder.load(web_checkpoint.encoder)
    dims = ModelDims(encoder.video_dim + 2, encoder.text_dim, SEMANTIC_DIM, None, web_checkpoint.encoder,
                     encoder.fingerprint)
    folder = tmp_path_factory.mktemp(f"web_{request.param}") / "ckpt"
    tiny_checkpoint(folder, masra=True, dims=dims, backbone=request.param.removeprefix("masra-").replace("-", "_"))
    return SimpleNamespace(checkpoint=folder, encoder=web_checkpoint.encoder)


@pytest.fixture(scope="module")
def grounder(served):
    from masra.inference import Grounder

    return Grounder.from_checkpoint(served.checkpoint, device="cpu", video_encoder=served.encoder)


def test_the_page_gets_the_python_api_result_and_features_are_reused(make_client, grounder, bikes):
    from masra.video.report import distinct_windows
    from masra.web.service import GroundingService

    client = make_client(service=GroundingService(grounder, top_k=5), max_duration=12)
    video = client.post("/api/uploads", params={"name": "bikes.mp4"}, content=bikes.read_bytes()).json()
    jobs = [client.post("/api/jobs", json={"video": video["ref"], "query": q}).json()["job"]
            for q in ("a cyclist rides by", "  a parked   bicycle ")]
    first, second = (finished(client, job) for job in jobs)
    assert first["state"] == second["state"] == "done", (first["error"], second["error"])

    n_clips = 5  # 10 s in 2-s clips
    assert [(s["stage"], s["total"]) for s in first["stages"]] == [("decode", n_clips), ("encode", n_clips),
                                                                   ("ground", 1)]
    assert [(s["stage"], s["total"]) for s in second["stages"]] == [("ground", 1)]  # features were kept

    for status, query in ((first, "a cyclist rides by"), (second, "a parked bicycle")):
        result = status["result"]
        expected = grounder.predict_video(bikes, query, top_k=5)
        assert result["query"] == query
        assert [(m["start"], m["end"], m["score"]) for m in result["moments"]] == distinct_windows(expected.windows)
        assert result["saliency"] == expected.saliency.tolist()
        assert result["duration"] == pytest.approx(10.0)
        assert result["saliency_times"] == pytest.approx([1.0, 3.0, 5.0, 7.0, 9.0])
        assert result["video"]["name"] == "bikes.mp4"


# The export (torch.export of the model and the CLIP towers) takes minutes on a loaded 2-core machine, more than
# pytest's default timeout (pyproject.toml).
@pytest.mark.timeout(1800)
def test_the_page_on_the_onnx_runtime_gets_the_torch_moments(make_client, grounder, served, bikes, tmp_path):
    """`masra serve --runtime onnx`'s service: the export (with its encoder) answers as the torch grounder."""
    from masra.cli.main import main
    from masra.runtime import OnnxGrounder
    from masra.video.report import distinct_windows
    from masra.web.service import GroundingService

    export = tmp_path / "export"
    assert main(["export", "--checkpoint", str(served.checkpoint), "--out", str(export), "--encoder",
                 served.encoder]) == 0
    client = make_client(service=GroundingService(OnnxGrounder.from_export(export, threads=1), top_k=5),
                         max_duration=12)
    video = client.post("/api/uploads", params={"name": "bikes.mp4"}, content=bikes.read_bytes()).json()
    status = finished(client, client.post("/api/jobs", json={"video": video["ref"], "query": "a cyclist"}).json()["job"])
    assert status["state"] == "done", status["error"]
    expected = grounder.predict_video(bikes, "a cyclist", top_k=5)
    moments = status["result"]["moments"]
    assert [(m["start"], m["end"]) for m in moments] == [(s, e) for s, e, _ in distinct_windows(expected.windows)]
    assert [m["score"] for m in moments] == pytest.approx([p for _, _, p in distinct_windows(expected.windows)],
                                                         abs=1e-4)
    assert status["result"]["saliency"] == pytest.approx(expected.saliency.tolist(), abs=1e-4)
