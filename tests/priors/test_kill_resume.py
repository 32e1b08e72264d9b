"""``kill -9`` in the middle of ``masra priors generate``, then a restart: every video ends up exactly once
with status ok, nothing written before the kill is lost, and the cache file parses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import completion, honest_reply, make_video_dir, write_annotations

from masra.priors.cache import read_cache

REPLY_DELAY_S = 0.1
N_VIDEOS = 12


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(REPLY_DELAY_S)
        body = json.dumps(completion(honest_reply(payload))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _command(videos: Path, ann: Path, out: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "masra.cli.main", "priors", "generate", "--videos", str(videos),
            "--annotations", str(ann), "--out", str(out), "--base-url", url, "--model", "fake",
            "--concurrency", "2", "--caption-batch", "2", "--event-frames", "2", "--short-side", "64",
            "--event-short-side", "64", "--clip-length", "2", "--no-progress"]


def test_kill_and_resume(bikes, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    vids = [f"clip{k:02d}" for k in range(N_VIDEOS)]
    videos = make_video_dir(tmp_path, vids, bikes)
    ann = write_annotations(tmp_path / "ann.jsonl", dict.fromkeys(vids, 4.0))
    out = tmp_path / "priors.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    try:
        proc = subprocess.Popen(_command(videos, ann, out, url), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stderr.close()

        before = out.read_bytes()
        complete_before = before[: before.rfind(b"\n") + 1].decode().splitlines()
        assert 3 <= len(complete_before) < N_VIDEOS
        # a write torn by the kill: a half record without its newline at the end of the file
        with out.open("ab") as handle:
            handle.write(b'{"vid": "clip00", "duration": 4.0, "status": "o')

        rerun = subprocess.run(_command(videos, ann, out, url), env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        done_before = len({json.loads(line)["vid"] for line in complete_before})
        assert f"{N_VIDEOS - done_before} processed" in rerun.stdout
        assert f"{done_before} already done" in rerun.stdout
    finally:
        server.shutdown()
        server.server_close()

    lines = out.read_text().splitlines()
    assert lines[: len(complete_before)] == complete_before  # nothing finished before the kill was lost
    records = [json.loads(line) for line in lines]  # every line parses: the torn fragment was cut off
    assert sorted(r["vid"] for r in records) == vids  # each video exactly once
    cache = read_cache(out)
    assert sorted(cache) == vids and all(r["status"] == "ok" for r in cache.values())
    assert all(r["captions"] and all(r["captions"]) and len(r["events"]) == 2 for r in cache.values())
