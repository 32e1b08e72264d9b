"""The page in a real headless browser (Debian's chromium + chromedriver, driven by Selenium): a query on a
real video lists and draws moments, a click plays the video from the moment's start, a bad upload shows its
message. The server is the real ``masra serve`` command on 127.0.0.1 with a checkpoint trained on features
of the same (small, random) CLIP image tower.

Set MASRA_WEB_SCREENSHOT=docs/images/web.png to keep the run's screenshot (the picture in docs/web.md).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from required import missing


def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing("the browser test needs Debian's chromium and chromium-driver (make browser)")
    return chromium, driver  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(web_checkpoint, tmp_path_factory, bunny, bikes):
    """``masra serve`` in a subprocess; yields its base URL."""
    videos = tmp_path_factory.mktemp("served")
    shutil.copy(bunny, videos / "bunny.mp4")
    port = free_port()
    command = [sys.executable, "-m", "masra.cli.main", "serve", "--checkpoint", str(web_checkpoint.checkpoint),
               "--video-encoder", web_checkpoint.encoder, "--videos", str(videos), "--port", str(port),
               "--max-duration", "8", "--device", "cpu"]
    log = tmp_path_factory.mktemp("log") / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise AssertionError(f"masra serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/api/info", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"masra serve did not answer in 180 s:\n{log.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="module")
def browser(monkeypatch_module):
    chromium, driver_path = browser_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ModuleNotFoundError:
        missing("selenium is not installed (pip install 'masra[dev]')")
    monkeypatch_module.setenv("SE_OFFLINE", "true")  # Selenium Manager must never try to download anything
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1000,1300"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def js(driver, script: str):
    return driver.execute_script(script)


def wait(driver, condition, timeout: float = 120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def test_a_query_lists_moments_draws_them_and_plays_from_a_click(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server + "/")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#library option")) == 2)
    Select(browser.find_element(By.ID, "library")).select_by_value("library/bunny.mp4")
    wait(browser, lambda d: js(d, "return document.getElementById('player').readyState") >= 1)
    browser.find_element(By.ID, "query").send_keys("a big rabbit stretches on the grass")
    browser.find_element(By.ID, "run").click()
    buttons = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#moments button"))
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None, browser.find_element(By.ID, "error").text

    result = js(browser, "return state.result")
    moments = result["moments"]
    assert 1 <= len(moments) <= 10 and len(buttons) == len(moments)
    assert [m["score"] for m in moments] == sorted((m["score"] for m in moments), reverse=True)
    assert len({(m["start"], m["end"]) for m in moments}) == len(moments)  # each window once
    assert all(0 <= m["start"] < m["end"] <= result["duration"] + 1e-6 for m in moments)
    assert result["duration"] == pytest.approx(5.3, abs=0.1)
    assert len(result["saliency"]) == len(result["saliency_times"]) == pytest.approx(5.3 / result["clip_length"], abs=1)
    # The timeline draws one bar per moment, and the curve one point per clip.
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart rect.moment")) == len(moments)
    curve = browser.find_element(By.CSS_SELECTOR, "#chart polyline.curve").get_attribute("points").split()
    assert len(curve) == len(result["saliency"])
    # The job's progress reached the page: its summary counts the frames and clips of this video.
    n_clips = len(result["saliency"])
    summary = browser.find_element(By.ID, "status-text").text
    took = r" \(\d+\.\d s\)"
    assert re.fullmatch(rf"Done in \d+\.\d s: {n_clips} frames decoded{took}, {n_clips} clips encoded{took}, "
                        rf"1 window grounded{took}", summary), summary

    # Put the video far from the moment, click the moment: it plays from the moment's start.
    index = max(range(len(moments)), key=lambda i: abs(moments[i]["start"] - 5.0))
    start = moments[index]["start"]
    js(browser, "const p = document.getElementById('player'); p.pause(); p.currentTime = 5.0;")
    wait(browser, lambda d: not js(d, "return document.getElementById('player').seeking"))
    buttons[index].click()
    wait(browser, lambda d: not js(d, "return document.getElementById('player').seeking"), timeout=20)
    now = js(browser, "return document.getElementById('player').currentTime")
    assert start - 0.1 <= now <= start + 1.5, (start, now)
    assert "selected" in buttons[index].get_attribute("class")

    shot = tmp_path / "web.png"
    js(browser, "window.scrollTo(0, 0)")
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("MASRA_WEB_SCREENSHOT"):
        shutil.copy(shot, os.environ["MASRA_WEB_SCREENSHOT"])


@pytest.mark.parametrize(("name", "make", "message"), [
    ("notes.txt", lambda src: b"just some text", "notes.txt is not a video file"),
    ("fake.mp4", lambda src: b"not really an mp4 " * 20, "fake.mp4 is not a video masra can read"),
    ("bikes.mp4", lambda src: src.read_bytes(), "bikes.mp4 is 10.0 s long; this server takes videos of at most 8 s"),
])
def test_a_bad_upload_shows_its_message(server, browser, tmp_path, bikes, name, make, message):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    path = tmp_path / name
    path.write_bytes(make(bikes))
    browser.find_element(By.ID, "upload").send_keys(str(path))
    error = browser.find_element(By.ID, "error")
    wait(browser, lambda d: error.get_attribute("hidden") is None, timeout=30)
    assert error.text.startswith(message)
    assert "Traceback" not in browser.page_source
    browser.find_element(By.ID, "query").send_keys("a bike")
    browser.find_element(By.ID, "run").click()  # nothing was uploaded, so there is no video to ground
    wait(browser, lambda d: error.text.startswith("choose a video"), timeout=30)


@pytest.mark.parametrize(("query", "message"), [
    ("   ", "type a query first"),
    ("a rabbit " * 40, "the query is 359 characters long; this server takes at most 300"),
])
def test_an_empty_or_too_long_query_shows_its_message(server, browser, query, message):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server + "/")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#library option")) == 2)
    Select(browser.find_element(By.ID, "library")).select_by_value("library/bunny.mp4")
    browser.find_element(By.ID, "query").send_keys(query)
    browser.find_element(By.ID, "run").click()
    error = browser.find_element(By.ID, "error")
    wait(browser, lambda d: error.get_attribute("hidden") is None, timeout=30)
    assert error.text.startswith(message)
    assert not browser.find_elements(By.CSS_SELECTOR, "#moments button")
