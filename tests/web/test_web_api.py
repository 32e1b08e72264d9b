"""The HTTP API of ``masra serve`` without a model: every refusal is one clear sentence, uploads stay in
the server's own temporary folder, --videos files are picked by name only, and videos can be seeked."""

from __future__ import annotations

import shutil

import pytest



def upload(client, name: str, data: bytes):
    return client.post("/api/uploads", params={"name": name}, content=data)


def test_a_real_video_uploads_and_seeks_with_range_requests(make_client, bunny):
    client = make_client()
    response = upload(client, "bunny.mp4", bunny.read_bytes())
    assert response.status_code == 200, response.text
    video = response.json()
    assert video["name"] == "bunny.mp4" and video["ref"].startswith("upload/")
    assert video["duration"] == pytest.approx(5.3, abs=0.1)
    stored = list(client.app.state.uploads.folder.iterdir())
    assert [p.read_bytes() for p in stored] == [bunny.read_bytes()]
    assert stored[0].name != "bunny.mp4"  # a server-made name, not the client's
    part = client.get(video["url"], headers={"Range": "bytes=1000-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 1000-1099/{bunny.stat().st_size}"
    assert part.content == bunny.read_bytes()[1000:1100]
    assert part.headers["content-type"] == "video/mp4"


@pytest.mark.parametrize(("name", "data", "message"), [
    ("notes.txt", b"hello", "notes.txt is not a video file: masra reads .mp4"),
    ("fake.mp4", b"this is text, not an mp4" * 10, "fake.mp4 is not a video masra can read ("),
    ("empty.mp4", b"", "empty.mp4 is empty"),
])
def test_a_file_that_is_not_a_video_is_refused_with_a_message(make_client, name, data, message):
    client = make_client()
    response = upload(client, name, data)
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    assert "masra-serve-" not in response.json()["error"]  # the server's folder is never shown
    assert list(client.app.state.uploads.folder.iterdir()) == []  # nothing left behind


def test_a_video_longer_than_the_limit_is_refused(make_client, bikes):
    response = upload(make_client(max_duration=6), "bikes.mp4", bikes.read_bytes())
    assert response.status_code == 400
    assert response.json()["error"] == ("bikes.mp4 is 10.0 s long; this server takes videos of at most 6 s "
                                        "(masra serve --max-duration)")


def test_an_upload_past_the_size_limit_is_cut_off(make_client, bunny):
    client = make_client(max_upload_bytes=100_000)
    data = bunny.read_bytes()

    def chunks():  # no Content-Length: the server must count while it streams
        for i in range(0, len(data), 32_768):
            yield data[i:i + 32_768]

    for body in (data, chunks()):
        response = client.post("/api/uploads", params={"name": "bunny.mp4"}, content=body)
        assert response.status_code == 413
        assert response.json()["error"] == "bunny.mp4 is larger than this server's upload limit of 0.0953674 MB"
        assert list(client.app.state.uploads.folder.iterdir()) == []


def test_a_client_path_in_the_upload_name_is_reduced_to_its_file_name(make_client, bunny):
    client = make_client()
    video = upload(client, "../../etc/evil/bunny.mp4", bunny.read_bytes()).json()
    assert video["name"] == "bunny.mp4"
    assert [p.parent for p in client.app.state.uploads.folder.iterdir()] == [client.app.state.uploads.folder]


def test_only_the_latest_uploads_are_kept(make_client, bunny):
    client = make_client(max_uploads=2)
    refs = [upload(client, f"v{i}.mp4", bunny.read_bytes()).json()["ref"] for i in range(3)]
    assert len(list(client.app.state.uploads.folder.iterdir())) == 2
    assert client.get(f"/media/{refs[0]}").status_code == 404
    assert client.get(f"/media/{refs[2]}").status_code == 200


def test_the_upload_folder_is_removed_when_the_server_stops(make_client, bunny):
    client = make_client()
    upload(client, "bunny.mp4", bunny.read_bytes())
    folder = client.app.state.uploads.folder
    client.__exit__(None, None, None)
    assert not folder.exists()


@pytest.fixture
def library(tmp_path, bunny, bikes):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(bunny, folder / "bunny.mp4")
    shutil.copy(bikes, folder / "bikes.mp4")
    (folder / "readme.txt").write_text("not a video")
    (folder / "broken.mp4").write_text("not a video either")
    (tmp_path / "secret.mp4").write_bytes(bunny.read_bytes())  # beside the folder: must never be served
    return folder


def test_the_video_folder_lists_videos_and_says_which_cannot_be_used(make_client, library):
    info = make_client(videos=library, max_duration=6).get("/api/info").json()
    by_name = {v["name"]: v for v in info["videos"]}
    assert sorted(by_name) == ["bikes.mp4", "broken.mp4", "bunny.mp4"]
    assert by_name["bunny.mp4"]["problem"] is None and by_name["bunny.mp4"]["url"] == "/media/library/bunny.mp4"
    assert by_name["bikes.mp4"]["problem"].startswith("bikes.mp4 is 10.0 s long")
    assert by_name["broken.mp4"]["problem"].startswith("broken.mp4 is not a video masra can read")
    assert info["limits"]["max_duration"] == 6


@pytest.mark.parametrize("name", ["../secret.mp4", "..%2Fsecret.mp4", "%2E%2E%2Fsecret.mp4", "readme.txt",
                                  "missing.mp4"])
def test_the_video_folder_serves_listed_names_only(make_client, library, name):
    client = make_client(videos=library)
    assert client.get(f"/media/library/{name}").status_code == 404
    response = client.post("/api/jobs", json={"video": f"library/{name}".replace("%2F", "/"), "query": "a bike"})
    assert response.status_code == 404
    assert "has no video named" in response.json()["error"]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"video": "library/bunny.mp4", "query": "   "}, 400, "type a query first"),
    ({"video": "library/bunny.mp4", "query": "x" * 301}, 400,
     "the query is 301 characters long; this server takes at most 300"),
    ({"video": "", "query": "a rabbit"}, 400, "choose a video: upload one or pick one from the list"),
    ({"video": "upload/0123456789abcdef", "query": "a rabbit"}, 404, "no such upload"),
    ({"video": "library/bikes.mp4", "query": "a bike"}, 400, "bikes.mp4 is 10.0 s long"),
    ({"query": "a rabbit"}, 422, "malformed request (video)"),
])
def test_bad_queries_are_refused_before_any_work(make_client, library, body, status, message):
    response = make_client(videos=library, max_duration=6).post("/api/jobs", json=body)
    assert response.status_code == status
    assert response.json()["error"].startswith(message)


def test_the_page_and_its_scripts_are_served(make_client):
    client = make_client()
    page = client.get("/")
    assert page.status_code == 200 and 'id="query-form"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/docs").status_code == 404  # no API explorer on a user-facing server


def test_a_changed_video_folder_file_is_checked_again(make_client, library, bunny):
    client = make_client(videos=library, max_duration=6)
    body = {"video": "library/broken.mp4", "query": "a rabbit"}
    assert client.post("/api/jobs", json=body).status_code == 400
    (library / "broken.mp4").write_bytes(bunny.read_bytes())  # fixed in place: now a readable 5.3 s video
    listing = {v["name"]: v for v in client.get("/api/info").json()["videos"]}
    assert listing["broken.mp4"]["problem"] is None
    assert listing["broken.mp4"]["duration"] == pytest.approx(5.3, abs=0.1)


def test_another_sites_page_cannot_upload_or_start_jobs(make_client, bunny):
    client = make_client()
    evil = {"Origin": "http://evil.example"}
    response = client.post("/api/uploads", params={"name": "bunny.mp4"}, content=bunny.read_bytes(), headers=evil)
    assert response.status_code == 403
    assert response.json()["error"] == "requests from other sites' pages are refused"
    assert list(client.app.state.uploads.folder.iterdir()) == []
    assert client.post("/api/jobs", json={"video": "", "query": "x"}, headers=evil).status_code == 403
    # The page's own requests carry its own origin.
    for own in ("http://testserver", "https://testserver"):  # https: behind a TLS-terminating proxy
        assert client.post("/api/uploads", params={"name": "bunny.mp4"}, content=bunny.read_bytes(),
                           headers={"Origin": own}).status_code == 200
    assert client.post("/api/uploads", params={"name": "bunny.mp4"}, content=bunny.read_bytes(),
                       headers={"Origin": "http://testserver.evil.example"}).status_code == 403


def test_a_loopback_server_refuses_other_host_names(make_client):
    client = make_client(allowed_hosts=["127.0.0.1", "localhost"])
    assert client.get("/api/info", headers={"Host": "127.0.0.1:7860"}).status_code == 200
    assert client.get("/api/info", headers={"Host": "localhost:7860"}).status_code == 200
    assert client.get("/api/info", headers={"Host": "rebound.evil.example:7860"}).status_code == 400
