"""``masra serve`` under hostile requests: only checked videos inside ``--videos`` are served, the Host header
is checked on every bind address, uploads and the job queue are capped with clear answers, a queued job
keeps its upload and its status, every error is ``{"error": ...}``, and URLs are percent-encoded."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import threading
from types import SimpleNamespace

import pytest

from masra.web.errors import RequestError
from test_web_grounding import finished


def upload(client, name: str, data: bytes):
    return client.post("/api/uploads", params={"name": name}, content=data)


class GatedService:
    """Stands in for the grounder: each job waits for ``gate``, then reads its video file."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def ground(self, video, query, progress):
        self.gate.wait(20)
        return {"query": query, "bytes": len(video.path.read_bytes())}


@pytest.fixture
def outside(tmp_path, bunny):
    """Files beside the video folder: a real video and a text file, never to be served."""
    folder = tmp_path / "outside"
    folder.mkdir()
    shutil.copy(bunny, folder / "secret.mp4")
    (folder / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    return folder


@pytest.fixture
def library(tmp_path, bunny, outside):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(bunny, folder / "bunny.mp4")
    (folder / "alias.mp4").symlink_to("bunny.mp4")  # a link inside the folder is fine
    (folder / "pw.mp4").symlink_to(outside / "passwd")
    (folder / "leak.mp4").symlink_to(outside / "secret.mp4")
    (folder / "broken.mp4").write_text("root:x:0:0 - not a video, never served")
    return folder


@pytest.mark.parametrize("name", ["pw.mp4", "leak.mp4"])
def test_a_symlink_out_of_the_video_folder_is_never_served(make_client, library, name):
    client = make_client(videos=library)
    response = client.get(f"/media/library/{name}")
    assert response.status_code == 403
    assert response.json() == {"error": f"{name} links outside the server's video folder; it is not served"}
    job = client.post("/api/jobs", json={"video": f"library/{name}", "query": "a rabbit"})
    assert job.status_code == 403 and "links outside" in job.json()["error"]
    listed = {v["name"]: v for v in client.get("/api/info").json()["videos"]}
    assert listed[name]["url"] is None and "links outside" in listed[name]["problem"]
    assert "outside" not in listed[name]["problem"].replace("links outside", "")  # the target is not named


def test_a_symlink_inside_the_video_folder_is_served(make_client, library, bunny):
    response = make_client(videos=library).get("/media/library/alias.mp4")
    assert response.status_code == 200 and response.content == bunny.read_bytes()


def test_a_file_that_fails_the_video_check_is_not_served(make_client, library, bikes):
    shutil.copy(bikes, library / "bikes.mp4")
    client = make_client(videos=library, max_duration=6)
    broken = client.get("/media/library/broken.mp4")
    assert broken.status_code == 400 and b"root:x" not in broken.content
    assert broken.json()["error"].startswith("broken.mp4 is not a video masra can read")
    too_long = client.get("/media/library/bikes.mp4")
    assert too_long.status_code == 400 and too_long.json()["error"].startswith("bikes.mp4 is 10.0 s long")


def test_urls_are_percent_encoded(make_client, tmp_path, bunny):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a#b.mp4", "100% real?.mp4"):
        shutil.copy(bunny, folder / name)
    client = make_client(videos=folder)
    urls = {v["name"]: v["url"] for v in client.get("/api/info").json()["videos"]}
    assert urls == {"a#b.mp4": "/media/library/a%23b.mp4", "100% real?.mp4": "/media/library/100%25%20real%3F.mp4"}
    for url in urls.values():
        response = client.get(url)
        assert response.status_code == 200 and response.content == bunny.read_bytes()


def test_every_error_is_json(make_client, bunny):
    client = make_client()
    video = upload(client, "bunny.mp4", bunny.read_bytes()).json()
    for method, path, status in [("GET", "/no/such/page", 404), ("GET", "/static/missing.js", 404),
                                 ("PUT", "/api/jobs", 405), ("DELETE", "/api/info", 405),
                                 ("GET", "/media/upload/0123456789abcdef", 404)]:
        response = client.request(method, path)
        assert response.status_code == status, path
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()) == {"error"} and response.json()["error"], path
    assert client.get("/no/such/page").json() == {"error": "no such page: /no/such/page"}
    assert client.put("/api/jobs").json() == {"error": "PUT is not allowed on /api/jobs"}
    beyond = client.get(video["url"], headers={"Range": f"bytes={10**9}-"})
    assert beyond.status_code == 416 and "error" in beyond.json()
    assert beyond.headers["content-range"] == f"bytes */{bunny.stat().st_size}"


def test_the_host_header_is_checked_on_an_ipv6_loopback_server():
    from masra.web.hosts import host_names, request_host

    assert request_host("[::1]:7860") == "::1" and request_host("LocalHost:7860") == "localhost"
    assert request_host("127.0.0.1") == "127.0.0.1" and request_host("") is None
    assert request_host("evil.example:80/x") is None and request_host("[::1") is None
    names = host_names("::1", [])
    assert "::1" in names and "localhost" in names and "attacker.example" not in names
    assert host_names("0.0.0.0", ["media.lan"]) is not None and "media.lan" in host_names("0.0.0.0", ["media.lan"])
    assert host_names("0.0.0.0", ["*"]) is None  # the operator's explicit choice


@pytest.mark.parametrize(("bind", "good", "warns"), [("::1", "[::1]:7860", False),
                                                     ("127.0.0.1", "localhost:7860", False),
                                                     ("0.0.0.0", "localhost:7860", True)])
def test_masra_serve_checks_the_host_on_every_bind_address(monkeypatch, caplog, tmp_path, bind, good, warns):
    """`masra serve --host BIND` as run from the command line (model and uvicorn stood in for)."""
    import uvicorn
    from fastapi.testclient import TestClient

    from masra.cli.main import main
    from masra.inference import Grounder

    served = {}
    monkeypatch.setattr(Grounder, "from_checkpoint",
                        classmethod(lambda cls, *a, **k: SimpleNamespace(encoder=SimpleNamespace(spec="stub"))))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    with caplog.at_level(logging.WARNING, logger="masra.serve"):
        assert main(["serve", "--checkpoint", str(tmp_path), "--host", bind, "--port", "7860"]) == 0
    assert served["host"] == bind
    assert ("anyone who can reach this address" in caplog.text) is warns
    with TestClient(served["app"]) as client:
        assert client.get("/api/info", headers={"Host": good}).status_code == 200
        for evil in ("attacker.example", "attacker.example:7860", "[::2]:7860"):
            refused = client.get("/api/info", headers={"Host": evil})
            assert refused.status_code == 400, evil
            assert refused.json()["error"].startswith("this server does not answer to the host name")
        assert upload(client, "x.mp4", b"data").status_code == 400  # TestClient's own Host is refused too


def test_uploads_in_flight_are_capped_with_a_429(tmp_path, bunny):
    from masra.web.media import UploadStore

    async def scenario():
        store = UploadStore(max_bytes=10**9, max_files=5, max_duration=60, max_receiving=1)
        gate = asyncio.Event()

        async def slow():
            yield bunny.read_bytes()[:100]
            await gate.wait()
            yield bunny.read_bytes()[100:]

        async def fast():
            yield bunny.read_bytes()

        first = asyncio.create_task(store.save("first.mp4", slow(), None))
        await asyncio.sleep(0.05)
        with pytest.raises(RequestError) as refused:
            await store.save("second.mp4", fast(), None)
        gate.set()
        assert (await first).name == "first.mp4"
        assert (await store.save("third.mp4", fast(), None)).name == "third.mp4"  # the slot is free again
        store.close()
        return refused.value

    refused = asyncio.run(scenario())
    assert refused.status == 429
    assert refused.message == ("the server is receiving 1 upload already, its limit; try again in a moment "
                               "(masra serve --max-concurrent-uploads)")


def test_the_job_queue_is_capped_with_a_429(make_client, library):
    service = GatedService()
    client = make_client(videos=library, service=service, max_queued_jobs=2)
    body = {"video": "library/bunny.mp4", "query": "a rabbit"}
    jobs = [client.post("/api/jobs", json=body) for _ in range(3)]  # one running, two waiting
    assert [r.status_code for r in jobs] == [202, 202, 202]
    refused = client.post("/api/jobs", json=body)
    assert refused.status_code == 429
    assert refused.json() == {"error": "2 queries are waiting already, this server's limit; try again in a "
                                       "moment (masra serve --max-queued-jobs)"}
    service.gate.set()
    assert all(finished(client, r.json()["job"])["state"] == "done" for r in jobs)
    assert client.post("/api/jobs", json=body).status_code == 202  # room again


def test_an_upload_a_queued_job_needs_is_never_evicted(make_client, library, bunny):
    service = GatedService()
    client = make_client(videos=library, service=service, max_uploads=1)
    blocker = client.post("/api/jobs", json={"video": "library/bunny.mp4", "query": "first"}).json()["job"]
    mine = upload(client, "mine.mp4", bunny.read_bytes()).json()
    queued = client.post("/api/jobs", json={"video": mine["ref"], "query": "mine"}).json()["job"]
    others = [upload(client, f"other{i}.mp4", bunny.read_bytes()).json() for i in range(3)]  # past --max-uploads
    assert client.get(mine["url"]).status_code == 200  # still kept: a queued job needs it
    assert client.get(others[0]["url"]).status_code == 404  # unneeded ones still go, oldest first
    service.gate.set()
    status = finished(client, queued)
    assert status["state"] == "done", status["error"]
    assert status["result"]["bytes"] == len(bunny.read_bytes())
    assert finished(client, blocker)["state"] == "done"
    # Once no job needs it, the upload counts again: only the newest --max-uploads are kept.
    assert client.get(mine["url"]).status_code == 404
    assert len(list(client.app.state.uploads.folder.iterdir())) == 1


def test_the_duration_limit_reads_the_video_not_the_containers_claim(make_client, library, bikes, monkeypatch):
    """A container that claims 1 s cannot get its 10-s video past a 6-s limit."""
    import masra.video.frames as frames
    from masra.web import media

    real_probe = frames.probe_video
    monkeypatch.setattr(media, "probe_video", lambda path: dataclasses.replace(real_probe(path), duration=1.0))
    shutil.copy(bikes, library / "bikes.mp4")
    client = make_client(videos=library, max_duration=6)
    refused = client.get("/media/library/bikes.mp4")
    assert refused.status_code == 400 and refused.json()["error"].startswith("bikes.mp4 is 10.0 s long")
