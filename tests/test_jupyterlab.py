"""`jupyter lab` works in the environment and opens a chapter's .py as a notebook (jupytext).

Starts JupyterLab headless on 127.0.0.1 with a free port and a token, asks its
contents API for ``book/04_order_free_rnn.py`` as a notebook (what the Lab UI
does on "Open With > Notebook"), and always shuts the server down.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "book/04_order_free_rnn.py"
pytestmark = pytest.mark.slow
START_TIMEOUT = 20   # seconds for the server to answer /api/status


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, timeout: float = 5) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode())


@pytest.fixture
def lab_server(tmp_path):
    pytest.importorskip("jupyterlab")
    pytest.importorskip("jupytext")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ,
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"),     # no user config: the environment's only
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_PLATFORM_DIRS="1")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
           "--ServerApp.allow_root=True",   # CI and this machine run as root
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                _get(f"{base}/api/status", token, timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"jupyter lab did not answer within {START_TIMEOUT} s:\n{log.read()[-3000:]}")
                time.sleep(0.2)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def test_lab_opens_chapter_py_as_notebook(lab_server):
    base, token = lab_server
    model = _get(f"{base}/api/contents/{CHAPTER}?type=notebook&content=1", token, timeout=15)
    assert model["type"] == "notebook" and model["path"] == CHAPTER
    nb = model["content"]
    kinds = {c["cell_type"] for c in nb["cells"]}
    assert {"code", "markdown"} <= kinds, kinds
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    # jupytext read it: the pairing with the .ipynb (outputs come from there) is in the metadata
    assert "py:percent" in nb["metadata"].get("jupytext", {}).get("formats", "")
    # the parameters cell papermill fills is there, as in the .py
    assert any("parameters" in c["metadata"].get("tags", []) for c in nb["cells"] if c["cell_type"] == "code")
    # jupytext's server extension is the one serving it
    ext = _get(f"{base}/api/contents/{CHAPTER}?content=0", token)
    assert ext["type"] == "notebook"   # a paired/percent .py is listed as a notebook, not a file
