"""``masra serve`` refuses bad settings before it starts serving, each with a clear message."""

from __future__ import annotations

import socket

import pytest

from masra.cli.main import main


def serve(capsys, *args: str) -> str:
    assert main(["serve", *args]) == 1
    return capsys.readouterr().err


def test_a_different_encoder_stops_the_server_at_start(capsys, web_checkpoint, tmp_path):
    from tiny_clip import make_tiny_clip

    other = make_tiny_clip(tmp_path / "other_clip", seed=1)
    with socket.socket() as taken:  # were the check missed, serving would fail on this port instead of hanging
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        err = serve(capsys, "--checkpoint", str(web_checkpoint.checkpoint), "--video-encoder", f"clip:{other}",
                    "--device", "cpu", "--port", str(taken.getsockname()[1]))
    last = err.strip().splitlines()[-1]  # after the transformers loading bars
    assert last.startswith("masra serve: error: ") and "a different model" in last


@pytest.mark.parametrize(("args", "message"), [
    (["--videos", "/nonexistent/videos"], "/nonexistent/videos: field '--videos': not a folder"),
    (["--port", "70000"], "field '--port': 70000 is not a port number"),
    (["--max-duration", "0"], "field '--max-duration': must be > 0"),
    (["--max-upload-mb", "-1"], "field '--max-upload-mb': must be > 0"),
    (["--max-concurrent-uploads", "0"], "field '--max-concurrent-uploads': must be > 0"),
    (["--max-queued-jobs", "0"], "field '--max-queued-jobs': must be > 0"),
    (["--runtime", "onnx", "--video-encoder", "clip:/models/clip"],
     "field '--video-encoder': an export holds its own encoder (masra export --encoder)"),
    (["--runtime", "onnx", "--device", "cuda"], "field '--device': the onnx runtime runs on the CPU"),
])
def test_bad_settings_are_refused(capsys, tmp_path, args, message):
    err = serve(capsys, "--checkpoint", str(tmp_path / "no_run"), *args)
    assert err == f"masra serve: error: {message}\n"


def test_an_export_without_its_encoder_stops_the_server_at_start(capsys, web_checkpoint, tmp_path):
    assert main(["export", "--checkpoint", str(web_checkpoint.checkpoint), "--out", str(tmp_path / "export")]) == 0
    err = serve(capsys, "--runtime", "onnx", "--checkpoint", str(tmp_path / "export"))
    assert "this export has no video encoder" in err.strip().splitlines()[-1]
