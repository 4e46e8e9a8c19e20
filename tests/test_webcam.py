"""`ferkit webcam` with what `make install` installs (headless OpenCV): the server's page in
the browser, in webcam mode; an OpenCV window only where OpenCV has a GUI."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from conftest import make_checkpoint
from ferkit.cli import main
from ferkit.cli.webcam import gui_problem


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webcam_opens_the_page_in_webcam_mode(tmp_path, free_port, monkeypatch, capsys):
    import uvicorn

    assert gui_problem() is not None, "these tests expect the headless OpenCV ferkit pins"
    servers, opened = [], []
    init = uvicorn.Server.__init__

    def keep(self, config):
        init(self, config)
        servers.append(self)

    def browser(url):  # the user's browser: load the page, then stop the server
        with urllib.request.urlopen(url, timeout=10) as page:
            opened.append((url, page.status, page.read().decode()))
        servers[0].should_exit = True
        return True

    monkeypatch.setattr(uvicorn.Server, "__init__", keep)
    monkeypatch.setattr("webbrowser.open", browser)
    ckpt = make_checkpoint(tmp_path / "m.pt")
    assert main(["-q", "webcam", "--model", str(ckpt), "--port", str(free_port)]) == 0
    [(url, status, html)] = opened
    assert url == f"http://127.0.0.1:{free_port}/?webcam" and status == 200
    assert 'id="webcam"' in html
    assert f"{url} (opened in your browser" in capsys.readouterr().err


def test_webcam_window_without_gui_opencv_says_what_to_do(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "m.pt")
    assert main(["webcam", "--view", "window", "--model", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "no GUI" in err and "opencv-python" in err and "--view browser" in err
    assert "Traceback" not in err
