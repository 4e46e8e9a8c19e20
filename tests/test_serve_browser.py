"""The web page in a real browser: Debian's headless Chromium, driven by Selenium.

The app runs under uvicorn on 127.0.0.1 (a free port) in a background thread; the test uploads
examples/astronaut.png, waits for the box over her face and checks its label is one of the
seven emotions. The screenshot is written to tests/artifacts/serve_browser.png.

Chromium and chromium-driver come from apt: installed here when missing and the test runs as
root with apt-get (as in CI), else the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ASTRONAUT, ROOT, make_checkpoint
from ferkit.inference import EmotionRecognizer
from ferkit.labels import EMOTIONS

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROME_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1200,1000",
)


@pytest.fixture(scope="session")
def chromium() -> str:
    """/usr/bin/chromium with its driver, installed with apt when missing (root only)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip("chromium/chromium-driver missing, and not root with apt-get to install")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        steps = (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
        )
        for cmd in steps:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                pytest.skip(f"{' '.join(cmd)} failed: {done.stderr.strip()[-300:]}")
    return CHROMIUM


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app under uvicorn on 127.0.0.1 and a free port; yields its base URL."""
    uvicorn = pytest.importorskip("uvicorn")
    from ferkit.serve import create_app

    metrics = {"val_accuracy": 0.5, "val_n": 3589}  # what a trained checkpoint carries
    app = create_app(make_checkpoint(tmp_path_factory.mktemp("browser") / "m.pt", metrics=metrics))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(chromium):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in CHROME_ARGS:
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(driver, css: str, timeout: float = 30):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, css))
    )


def test_upload_photo_shows_box_label_and_bars(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    browser.find_element(By.ID, "file").send_keys(str(ASTRONAUT))
    tag = wait_for(browser, "#overlay .box .tag")
    assert tag.get_attribute("data-label") in EMOTIONS
    assert any(name in tag.text for name in EMOTIONS), tag.text
    box = browser.find_element(By.CSS_SELECTOR, "#overlay .box")
    w, h = box.size["width"], box.size["height"]
    _, _, bw, bh = EmotionRecognizer().predict(ASTRONAUT)[0].box  # the detector's own box
    assert w > 20 and abs(w / h - bw / bh) < 0.05  # scaled with the image, not stretched
    bars = browser.find_elements(By.CSS_SELECTOR, "#faces .face .bar")
    assert [b.find_element(By.TAG_NAME, "span").text for b in bars] == list(EMOTIONS)
    assert "1 face found" in browser.find_element(By.ID, "status").text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "serve_browser.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_the_example_photo_and_the_models_accuracy(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    browser.find_element(By.ID, "example").click()  # the photo shipped in static/
    tag = wait_for(browser, "#overlay .box .tag")
    assert tag.get_attribute("data-label") in EMOTIONS
    assert "1 face found" in browser.find_element(By.ID, "status").text
    info = browser.find_element(By.ID, "model-info").text
    assert "Model: simple_cnn, 50.0% accuracy on 3,589 validation faces" in info, info


def test_no_face_and_errors_are_said(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 300, 3), 200, np.uint8)).save(blank)
    browser.find_element(By.ID, "file").send_keys(str(blank))
    wait_for(browser, "#status.warn")
    assert "No face found" in browser.find_element(By.ID, "status").text
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    browser.find_element(By.ID, "file").send_keys(str(notes))
    wait_for(browser, "#status.error")
    assert "Error:" in browser.find_element(By.ID, "status").text


def test_a_photo_the_browser_cannot_draw_still_gets_its_faces(server, browser, tmp_path):
    """HEIC: the server reads it (pillow-heif), Chromium cannot draw it; the faces are listed
    and the page says why no picture is shown, instead of boxes over a broken image."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from ferkit.imaging import heif_support

    assert heif_support()
    photo = tmp_path / "IMG_0001.heic"
    Image.open(ASTRONAUT).convert("RGB").save(photo, "HEIF")
    browser.get(server + "/")
    browser.find_element(By.ID, "file").send_keys(str(photo))
    wait_for(browser, "#faces .face")
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 30).until(lambda _: "cannot show" in status.text)
    assert "1 face found" in status.text
    assert not browser.find_element(By.ID, "stage").is_displayed()
