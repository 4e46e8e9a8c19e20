"""`ferkit webcam` with what `make install` installs (headless OpenCV): the server's page in
the browser, in webcam mode; an OpenCV window only where OpenCV has a GUI."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from conftest import make_checkpoint
from ferkit.cli import main
from ferkit.cli.webcam import gui_problem

# the browser test's fixtures (chromium installed when missing, the app under uvicorn)
from test_serve_browser import CHROME_ARGS, CHROMEDRIVER, chromium, server, wait_for  # noqa: F401


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("any_port", [False, True], ids=["port", "port-0"])
def test_webcam_opens_the_page_in_webcam_mode(tmp_path, free_port, any_port, monkeypatch, capsys):
    """The page opens at the port the server bound: --port N, or any free one for --port 0."""
    import uvicorn

    assert gui_problem() is not None, "these tests expect the headless OpenCV ferkit pins"
    servers, opened = [], []
    init = uvicorn.Server.__init__

    def keep(self, config):
        init(self, config)
        servers.append(self)

    def browser(url):  # the user's browser: load the page, then stop the server
        try:
            bound = servers[0].servers[0].sockets[0].getsockname()[1]
            with urllib.request.urlopen(url, timeout=10) as page:
                opened.append((url, bound, page.status, page.read().decode()))
        finally:
            servers[0].should_exit = True
        return True

    monkeypatch.setattr(uvicorn.Server, "__init__", keep)
    monkeypatch.setattr("webbrowser.open", browser)
    ckpt = make_checkpoint(tmp_path / "m.pt")
    port = 0 if any_port else free_port
    assert main(["-q", "webcam", "--model", str(ckpt), "--port", str(port)]) == 0
    [(url, bound, status, html)] = opened
    assert bound == free_port or (any_port and bound != 0)
    assert url == f"http://127.0.0.1:{bound}/?webcam" and status == 200
    assert 'id="webcam"' in html
    assert f"{url} (opened in your browser" in capsys.readouterr().err


def test_webcam_window_without_gui_opencv_says_what_to_do(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "m.pt")
    assert main(["webcam", "--view", "window", "--model", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "no GUI" in err and "opencv-python" in err and "--view browser" in err
    assert "Traceback" not in err


@pytest.mark.browser
def test_page_at_webcam_address_starts_the_camera(request):
    """Headless Chromium with its fake camera opens /?webcam, as `ferkit webcam` does: the page
    starts the camera itself and sends frames to the server."""
    binary, base = (request.getfixturevalue(name) for name in ("chromium", "server"))
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in (
        *CHROME_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.get(base + "/?webcam")
        wait_for(driver, "#video")
        assert driver.find_element(By.ID, "webcam").text == "Stop webcam"
        # the fake camera shows no face: an answer came back and was said
        wait_for(driver, "#status.warn")
        assert "No face" in driver.find_element(By.ID, "status").text
    finally:
        driver.quit()
