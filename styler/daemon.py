"""``styler daemon``: one warm styler process that answers ``styler fast`` calls.

A new process spends ≈ 2 s before its first pixel (importing torch alone takes ≈ 1.5 s), while
the fast path itself takes ≈ 0.4 s at 512². ``styler daemon start`` keeps a process with torch,
VGG19 and the kernels loaded; while it runs, ``styler fast`` sends it its arguments over a Unix
socket in styler's cache folder and prints what it answers. Without a daemon, with a stale one
(another version of styler's files) or with ``--no-daemon``, the command runs in its own process.

Protocol: the client sends one JSON line ``{"code", "argv", "cwd"}`` (``argv`` of ``fast``
only), ``{"stop": true}``, or anything else for the status; the daemon answers with JSON lines
``{"out"|"err": text}`` as the command prints, then ``{"exit": code}`` (or ``{"stale": true}``
to a client of other code). Calls run one at a time (two would share the same cores), each in
the client's working directory. This module imports no torch: the client must start quickly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from .files import cache_dir

IDLE_MINUTES = 30.0  # an unused daemon exits after this long
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 10.0  # a client that connects and sends nothing does not hold the daemon


def socket_path() -> Path:
    return cache_dir() / "daemon.sock"


def package_root() -> Path:
    """The folder of the styler package this process runs."""
    return Path(str(resources.files("styler")))


def code_identity() -> str:
    """A digest of styler's own files (names, sizes, mtimes) and the Python running it: a daemon
    started before an upgrade or an edit does not answer for the new code."""
    root = package_root()
    files = sorted(p for p in root.rglob("*") if p.suffix in (".py", ".json", ".safetensors"))
    stamp = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(repr((sys.executable, stamp)).encode()).hexdigest()[:16]


def _request(message: Callable[[], dict], timeout: float | None = None) -> socket.socket | None:
    """A connection that has sent ``message()`` (built only once connected); None when no daemon
    listens (or the platform has no Unix sockets)."""
    if not hasattr(socket, "AF_UNIX"):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(socket_path()))
        sock.sendall((json.dumps(message()) + "\n").encode())
    except OSError:  # no socket file, or a stale one (the daemon was killed)
        sock.close()
        return None
    return sock


def _replies(sock: socket.socket):
    with sock, sock.makefile("r", encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def forward(argv: list[str]) -> int | None:
    """Run ``styler ARGV`` in the daemon, echoing its output; its exit code, or None when no
    daemon of this code answers (the caller then runs the command itself)."""
    sock = _request(lambda: {"code": code_identity(), "argv": argv, "cwd": os.getcwd()})
    if sock is None:
        return None
    streams = {"out": sys.stdout, "err": sys.stderr}
    for reply in _replies(sock):
        if "exit" in reply:
            return reply["exit"]
        if "stale" in reply:
            print("styler: the daemon runs other styler files than these; ignoring it "
                  "(restart it: styler daemon stop; styler daemon start)",
                  file=sys.stderr)  # fmt: skip
            return None
        for key, stream in streams.items():
            if key in reply:
                stream.write(reply[key])
                stream.flush()
    print("styler: the daemon ended without an answer", file=sys.stderr)
    return 1


def status(timeout: float = 2.0) -> dict | None:
    """The daemon's pid, code identity, calls served and uptime; None when none runs."""
    sock = _request(lambda: {"ping": True}, timeout)
    if sock is None:
        return None
    try:
        return next(_replies(sock), None)
    except TimeoutError:
        return {"busy": True}


def stop() -> bool:
    """Ask the daemon to exit after its current call; False when none runs."""
    sock = _request(lambda: {"stop": True})
    if sock is None:
        return False
    for _ in _replies(sock):
        pass
    return True


def start(idle_minutes: float = IDLE_MINUTES) -> dict:
    """Start a daemon in the background (its log: ``daemon.log`` beside the socket) and wait
    until it answers; its status. One already running is kept."""
    if (info := status()) is not None:
        return info
    log = socket_path().with_name("daemon.log")
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    cmd = [sys.executable, "-m", "styler.cli", "daemon", "run", "--idle-minutes", str(idle_minutes)]
    # `-m` imports from the current folder first: start in the folder of this very package, or a
    # checkout's styler/ beside an installed copy would answer as "other styler files"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                cwd=package_root().parent, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if (info := status()) is not None:
            return info
        if proc.poll() is not None:
            raise OSError(f"the daemon exited at start (code {proc.returncode}); see {log}")
        time.sleep(0.1)
    proc.terminate()
    raise OSError(f"the daemon did not answer within {START_TIMEOUT_S:.0f} s; see {log}")


class ClientGone(BaseException):
    """The caller hung up (Ctrl-C): the command stops at its next output, like a killed one.
    A BaseException, so that no ``except Exception`` on the way reports it as an error."""


def _send(conn: socket.socket, reply: dict) -> None:
    conn.sendall((json.dumps(reply) + "\n").encode())


class _Stream:
    """A text stream that sends each write to the client as ``{key: text}``."""

    def __init__(self, conn: socket.socket, key: str) -> None:
        self.conn, self.key = conn, key

    def write(self, text: str) -> int:
        try:
            _send(self.conn, {self.key: text})
        except OSError:
            raise ClientGone from None
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _run(conn: socket.socket, message: dict) -> None:
    """One command, as ``styler ARGV`` would run it in the client's folder."""
    from .cli import main

    out, err = _Stream(conn, "out"), _Stream(conn, "err")
    code = 1
    try:
        os.chdir(message["cwd"])
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(message["argv"], forward=False)
    except ClientGone:
        return
    except OSError as e:  # the client's folder is gone
        err.write(f"styler: {e}\n")
        code = 2
    except Exception:  # noqa: BLE001 (a bug must not end the daemon: report it, go on)
        err.write(traceback.format_exc())
    finally:
        os.chdir("/")
    with contextlib.suppress(OSError):
        _send(conn, {"exit": code})


def _read(conn: socket.socket) -> dict:
    """The client's one-line request; {} for one that sends nothing in time or no JSON object."""
    conn.settimeout(REQUEST_TIMEOUT_S)
    try:
        with conn.makefile("r", encoding="utf-8") as lines:
            message = json.loads(lines.readline())
    except (OSError, ValueError):
        return {}
    finally:
        conn.settimeout(None)
    return message if isinstance(message, dict) else {}


def _warm_up() -> None:
    """Import what ``fast`` uses and run the shipped model at the default size (twice: the kernels
    settle on the second run), so a first call at that size is already warm."""
    import torch

    from . import pipeline
    from .params import SIZE, FastRequest

    req = FastRequest()
    engine = pipeline.engine_for(req)
    model = pipeline.load_model(None, engine)
    pair = pipeline.Pair(torch.rand(1, 3, SIZE, SIZE), [torch.rand(1, 3, SIZE, SIZE)], [1.0])
    for _ in range(2):
        pipeline.stylize(model, engine, pair, req)


def serve(idle_minutes: float = IDLE_MINUTES) -> None:
    """The daemon's loop (``styler daemon run``): one connection at a time until ``stop`` or
    ``idle_minutes`` without a call (0: never)."""
    path = socket_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if status() is not None:
        raise OSError(f"{path}: a daemon already answers there")
    path.unlink(missing_ok=True)  # a stale socket of a daemon that was killed
    _warm_up()
    code, started, calls = code_identity(), time.time(), 0
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(16)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit through ``finally``
    listener.settimeout(60 * idle_minutes if idle_minutes > 0 else None)
    print(f"styler daemon: pid {os.getpid()} on {path}", flush=True)
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                print("styler daemon: idle, exiting", flush=True)
                return
            with conn, contextlib.suppress(OSError):  # a client that left is no concern
                message = _read(conn)
                if message.get("stop"):
                    path.unlink(missing_ok=True)  # before the client hears the end
                    return
                argv = message.get("argv")
                if not isinstance(argv, list) or argv[:1] != ["fast"]:
                    _send(conn, {"pid": os.getpid(), "code": code, "calls": calls,
                                 "uptime_s": round(time.time() - started)})  # fmt: skip
                elif message.get("code") != code or not isinstance(message.get("cwd"), str):
                    _send(conn, {"stale": True})
                else:
                    calls += 1
                    _run(conn, message)
    finally:
        listener.close()
        path.unlink(missing_ok=True)
