"""``styler daemon``: a warm process that answers ``styler fast``, and every way back to running
in-process (no daemon, a stale socket, other code, ``--no-daemon``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styler import daemon

STYLER = str(Path(sys.executable).with_name("styler"))


def _styler(args: list, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([STYLER, *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def _calls(env: dict) -> int:
    done = _styler(["daemon", "status"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    return int(done.stdout.split(" calls served")[0].rsplit(" ", 1)[1])


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("daemon-images")
    rng = np.random.default_rng(0)
    for name in ("photo.jpg", "painting.png"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(d / name)
    return d


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[dict]:
    """The environment of a daemon running in a cache folder of its own."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("daemon-cache"))}
    proc = subprocess.Popen([STYLER, "daemon", "run", "--idle-minutes", "10"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 120
    while _styler(["daemon", "status"], env).returncode != 0:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the daemon did not answer within 120 s"
        time.sleep(0.2)
    yield env
    if proc.poll() is None:
        _styler(["daemon", "stop"], env)
        proc.wait(timeout=30)


def test_fast_goes_to_the_daemon_in_the_callers_folder(running, images, tmp_path):
    before = _calls(running)
    done = _styler(
        ["fast", "photo.jpg", "painting.png", "-o", tmp_path / "out.png"], running, cwd=images
    )  # relative inputs: the daemon works in the caller's folder
    assert done.returncode == 0, done.stderr
    assert "out.png: 64×48 in" in done.stdout
    assert Image.open(tmp_path / "out.png").size == (64, 48)
    assert _calls(running) == before + 1


def test_an_error_comes_back_as_one_line_and_exit_code_2(running, images, tmp_path):
    before = _calls(running)
    done = _styler(["fast", "missing.jpg", "painting.png", "-o", tmp_path / "out.png"], running,
                   cwd=images)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["styler fast: error: missing.jpg: no such file"]
    assert _calls(running) == before + 1
    assert _styler(["daemon", "status"], running).returncode == 0  # still serving


def test_a_malformed_request_or_another_command_is_not_run(running):
    path = Path(running["XDG_CACHE_HOME"]) / "styler" / "daemon.sock"
    before = _calls(running)
    assert "calls" in json.loads(_ask(path, b"not json\n"))
    train = {"code": daemon.code_identity(), "argv": ["train", "a", "b"], "cwd": "/"}
    assert "calls" in json.loads(_ask(path, json.dumps(train).encode() + b"\n"))
    assert _calls(running) == before  # answered with its status, and still serving


def test_no_daemon_runs_in_process(running, images, tmp_path):
    before = _calls(running)
    done = _styler(["fast", images / "photo.jpg", images / "painting.png", "-o",
                    tmp_path / "out.png", "--no-daemon"], running)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.png").exists()
    assert _calls(running) == before


def test_a_daemon_of_other_code_is_ignored(running, images, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", running["XDG_CACHE_HOME"])
    monkeypatch.setattr(daemon, "code_identity", lambda: "other")
    argv = ["fast", str(images / "photo.jpg"), str(images / "painting.png"), "-o", "x.png"]
    assert daemon.forward(argv) is None
    assert "other styler files" in capsys.readouterr().err
    assert not Path("x.png").exists()


def test_a_stale_socket_falls_back_to_running_in_process(images, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    (tmp_path / "styler").mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(tmp_path / "styler" / "daemon.sock"))
    dead.close()  # the file stays, nobody listens: a daemon that was killed
    done = _styler(["fast", images / "photo.jpg", images / "painting.png", "-o",
                    tmp_path / "out.png"], env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.png").exists()
    status = _styler(["daemon", "status"], env)
    assert status.returncode == 1 and "not running" in status.stdout


def test_start_is_idempotent_and_stop_removes_the_socket(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    first = _styler(["daemon", "start", "--idle-minutes", "5"], env)
    assert first.returncode == 0 and "running, pid" in first.stdout, first.stderr
    again = _styler(["daemon", "start"], env)
    assert again.stdout.split("pid ")[1].split()[0] == first.stdout.split("pid ")[1].split()[0]
    reply = json.loads(_ask(tmp_path / "styler" / "daemon.sock", b'{"ping": true}\n'))
    assert reply["calls"] == 0 and reply["code"] == daemon.code_identity()
    assert "stopped" in _styler(["daemon", "stop"], env).stdout
    assert not (tmp_path / "styler" / "daemon.sock").exists()
    assert "none was running" in _styler(["daemon", "stop"], env).stdout


def test_start_from_a_folder_with_another_styler_package_runs_this_one(images, tmp_path):
    """`-m styler.cli` would import ./styler first: a checkout beside an installed copy."""
    decoy = tmp_path / "checkout" / "styler"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("")
    (decoy / "cli.py").write_text("raise SystemExit(3)\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    try:
        started = _styler(["daemon", "start", "--idle-minutes", "5"], env, cwd=decoy.parent)
        assert started.returncode == 0 and "running, pid" in started.stdout, started.stderr
        out = tmp_path / "out.png"
        done = _styler(["fast", images / "photo.jpg", images / "painting.png", "-o", out,
                        "--size", "32"], env, cwd=decoy.parent)  # fmt: skip
        assert done.returncode == 0 and out.exists(), done.stderr
        assert "ignoring it" not in done.stderr and _calls(env) == 1
    finally:
        _styler(["daemon", "stop"], env)


def _ask(path: Path, request: bytes) -> str:
    """The daemon's first line of answer to a raw request (the protocol: JSON lines)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        s.sendall(request)
        return s.makefile().readline()
