"""Shared fixtures of the service tests (test_api, test_api_jobs, test_browser, test_load,
test_durable); every name starts with ``api_``.

Everything runs on tiny images and an untrained (but valid) model written to a temporary folder.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx2
import pytest
import torch
from core_helpers import pattern
from fastapi.testclient import TestClient
from PIL import Image

from styler.api import create_app
from styler.jobs import JobStore
from styler.model import StyleNet
from styler.settings import Settings

REPO = Path(__file__).resolve().parent.parent
# engine.cpu_prefers_bf16 keeps its measurement in the user's cache folder: not the tests'
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="styler-tests-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)


def _encode(im: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


@pytest.fixture(scope="session")
def api_images() -> dict[str, bytes]:
    """Encoded inputs: good ones, and one of each kind of bad one."""
    photo = _encode(pattern(160, 120, 4), "JPEG", quality=95)
    return {
        "content": _encode(pattern(64, 48, 1), "PNG"),
        "style": _encode(pattern(48, 48, 2), "JPEG", quality=90),
        "style2": _encode(pattern(40, 44, 3), "WEBP"),
        "text": b"this is not an image\n" * 4,
        "truncated": photo[: len(photo) // 2],
        "huge": _encode(Image.new("1", (20000, 20000)), "PNG"),  # 400 megapixels, a few kB on disk
        "tiny": _encode(pattern(8, 8, 5), "PNG"),
    }


@pytest.fixture(scope="session")
def api_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api-model") / "tiny.safetensors"
    StyleNet.build(seed=0).save(path)
    return path


@pytest.fixture(scope="session")
def api_model(api_model_path: Path) -> StyleNet:
    """Loaded once and shared by the in-process apps (loading the VGG takes a second)."""
    return StyleNet.load(api_model_path)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the whole suite: the test tensors are tiny, and with two threads on a
    shared, busy machine PyTorch spends most of its time synchronising workers (~30× slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _wait(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def api_wait() -> Callable[..., None]:
    """``api_wait(predicate, timeout=60, what=...)``: poll until true, or fail saying what."""
    return _wait


@pytest.fixture
def api_client(api_model: StyleNet, tmp_path: Path) -> Callable[..., AbstractContextManager]:
    """``with api_client(max_waiting=1) as client:`` an app on a fresh data folder, model ready."""

    @contextmanager
    def make(weights: str | Path | StyleNet = api_model, data_dir: Path = tmp_path / "data",
             **settings) -> Iterator[TestClient]:  # fmt: skip
        app = create_app(weights, Settings(data_dir=data_dir, **settings))
        with TestClient(app, raise_server_exceptions=False) as client:
            service = app.state.service
            loaded = lambda: service.model is not None or service.model_error is not None
            _wait(loaded, what="the model")
            yield client

    return make


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_spawn(
    model: Path, data: Path, cwd: Path = REPO, **env: str
) -> tuple[subprocess.Popen, str]:
    """``styler.api.serve`` in a subprocess on a free port, with its log in ``data/server.log``;
    the process and its URL once it is ready."""
    port = _free_port()
    data.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "STYLER_WEIGHTS": str(model), "STYLER_DATA_DIR": str(data),
           "STYLER_THREADS": "1", **env}  # fmt: skip
    code = f"from styler.api import serve; serve('127.0.0.1', {port}, 1)"
    with (data / "server.log").open("a") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=cwd, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            log_text = (data / "server.log").read_text()
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log_text}")
        try:
            return httpx2.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx2.TransportError:
            return False

    _wait(ready, 90, "the server to be ready")
    return proc, url


def api_stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def api_server(api_model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """``with api_server(STYLER_MAX_ITERS="8") as url:`` a real server in a subprocess, ready."""

    @contextmanager
    def start(**env: str) -> Iterator[str]:
        data = tmp_path_factory.mktemp("server")
        proc, url = api_spawn(api_model_path, data, **env)
        try:
            assert url in (data / "server.log").read_text(), "serve() should print its URL"
            yield url
        finally:
            api_stop(proc)

    return start


def _held(monkeypatch, owner: object, name: str) -> Iterator[SimpleNamespace]:
    """Holds every call of ``owner.name`` until ``release`` is set; ``entered``: one is held."""
    entered, release = threading.Event(), threading.Event()
    original = getattr(owner, name)

    def held(*args, **kwargs):
        entered.set()
        assert release.wait(60), "the test never released the gate"
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, held)
    yield SimpleNamespace(entered=entered, release=release)
    release.set()


@pytest.fixture
def api_gate(api_model, monkeypatch):
    """Holds every f_θ call until ``api_gate.release`` is set; ``api_gate.entered``: one is held."""
    yield from _held(monkeypatch, api_model, "stylize")


@pytest.fixture
def api_step_gate(monkeypatch):
    """Holds a job's first progress report (after its first solver step) until released."""
    yield from _held(monkeypatch, JobStore, "progress")
