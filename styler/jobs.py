"""Background jobs for the slow path: an SQLite record of every job and a bounded pool of threads.

The database (one file, stdlib ``sqlite3``) holds each job's parameters, status, progress, latest
preview, a cancel flag and, once done, the encoded result. Everything a client asks about goes
through it, so status, progress events, cancelling and results work from any server process
sharing the file, and a restart loses no finished result.

Inputs stay in the memory of the process that accepted the job, so a job that was queued or
running when its process stopped cannot resume: it is marked failed, with a message, when the
pool shuts down or, after a crash, when the next store opens the file. Jobs of other processes
that are still alive (``uvicorn --workers N``) are left alone.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("styler.jobs")

FINISHED = ("done", "failed", "cancelled")  # the other statuses are "queued" and "running"
INTERRUPTED = "the server stopped before this job finished; please submit it again"
INTERNAL = "internal error while running the job (details are in the server log)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id         TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    params     TEXT NOT NULL,              -- JSON
    step       INTEGER NOT NULL DEFAULT 0,
    total      INTEGER NOT NULL,
    terms      TEXT NOT NULL DEFAULT '{}', -- JSON: the latest loss terms
    error      TEXT,
    cancel     INTEGER NOT NULL DEFAULT 0,
    created    REAL NOT NULL,
    started    REAL,
    finished   REAL,
    owner      TEXT NOT NULL,              -- the JobStore instance that runs it
    pid        INTEGER NOT NULL,           -- and its process
    preview    TEXT,                       -- data URL of a small JPEG of the current image
    media_type TEXT,
    result     BLOB
)
"""
_FIELDS = "id, status, params, step, total, terms, error, created, started, finished, preview, media_type"


@dataclass
class Job:
    id: str
    status: str
    params: dict[str, Any]
    step: int
    total: int
    terms: dict[str, float]
    error: str | None
    created: float
    started: float | None
    finished: float | None
    preview: str | None
    media_type: str | None

    @property
    def elapsed_s(self) -> float | None:
        """Running time so far, or in all once finished (None while queued)."""
        if self.started is None:
            return None
        return round((self.finished or time.time()) - self.started, 3)

    def to_dict(self) -> dict[str, Any]:
        """The public view: everything but the preview (sent as progress events) and the result."""
        return {
            "id": self.id,
            "status": self.status,
            "step": self.step,
            "total": self.total,
            "terms": self.terms,
            "error": self.error,
            "params": self.params,
            "created_at": _iso(self.created),
            "started_at": _iso(self.started),
            "finished_at": _iso(self.finished),
            "elapsed_s": self.elapsed_s,
        }


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobStore:
    """Jobs in one SQLite file; one connection behind a lock, shared by the server's threads."""

    def __init__(self, path: str | Path, retention_s: float | None = None) -> None:
        """``retention_s``: finished jobs and their results are deleted that long after they finish (None: kept)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.owner = uuid.uuid4().hex
        self.retention_s = retention_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._recover()
        self.prune()

    def _rows(self, query: str, *args: Any) -> list[tuple]:
        with self._lock:
            return self._db.execute(query, args).fetchall()

    def _exec(self, query: str, *args: Any) -> int:
        """Run one statement (autocommit); the number of rows it changed."""
        with self._lock:
            return self._db.execute(query, args).rowcount

    def _recover(self) -> None:
        """Fail the unfinished jobs of stores that are gone: an earlier app in this process, or a dead one."""
        rows = self._rows("SELECT id, pid FROM jobs WHERE status IN ('queued', 'running')")
        stale = [job_id for job_id, pid in rows if pid == os.getpid() or not _alive(pid)]
        for job_id in stale:
            self._fail(job_id, INTERRUPTED)
        if stale:
            log.warning("marked %d interrupted job(s) as failed", len(stale))

    def _fail(self, job_id: str, message: str) -> None:
        self._exec(
            "UPDATE jobs SET status = 'failed', error = ?, finished = ? WHERE id = ? AND status IN ('queued', 'running')",
            message, time.time(), job_id,
        )  # fmt: skip

    def prune(self) -> int:
        """Delete the finished jobs older than the retention time (run on open and on each new job); how many."""
        if self.retention_s is None:
            return 0
        statuses = ", ".join(f"'{s}'" for s in FINISHED)
        return self._exec(f"DELETE FROM jobs WHERE status IN ({statuses}) AND finished < ?", time.time() - self.retention_s)

    def add(self, params: dict[str, Any], total: int) -> Job:
        self.prune()
        job_id = uuid.uuid4().hex
        self._exec(
            "INSERT INTO jobs (id, status, params, total, created, owner, pid) VALUES (?, 'queued', ?, ?, ?, ?, ?)",
            job_id, json.dumps(params), total, time.time(), self.owner, os.getpid(),
        )  # fmt: skip
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        rows = self._rows(f"SELECT {_FIELDS} FROM jobs WHERE id = ?", job_id)
        if not rows:
            return None
        job = Job(*rows[0])
        job.params, job.terms = json.loads(job.params), json.loads(job.terms)
        return job

    def result(self, job_id: str) -> tuple[bytes, str] | None:
        rows = self._rows("SELECT result, media_type FROM jobs WHERE id = ? AND status = 'done'", job_id)
        return rows[0] if rows else None

    def start(self, job_id: str) -> bool:
        """queued → running; False if the job was cancelled meanwhile."""
        return self._exec("UPDATE jobs SET status = 'running', started = ? WHERE id = ? AND status = 'queued' AND cancel = 0", time.time(), job_id) == 1

    def progress(self, job_id: str, step: int, terms: dict[str, float], preview: str | None) -> bool:
        """Record a step (keeping the last preview when there is no new one); True if a cancel was asked."""
        self._exec("UPDATE jobs SET step = ?, terms = ?, preview = COALESCE(?, preview) WHERE id = ?", step, json.dumps(terms), preview, job_id)
        return bool(self._rows("SELECT cancel FROM jobs WHERE id = ?", job_id)[0][0])

    def finish(self, job_id: str, status: str, error: str | None = None, result: bytes | None = None, media_type: str | None = None) -> None:
        self._exec(
            "UPDATE jobs SET status = ?, error = ?, result = ?, media_type = ?, finished = ? WHERE id = ?",
            status, error, result, media_type, time.time(), job_id,
        )  # fmt: skip

    def cancel(self, job_id: str) -> Job | None:
        """Flag the job; a queued one is cancelled at once, a running one at its next step."""
        self._exec("UPDATE jobs SET cancel = 1 WHERE id = ? AND status IN ('queued', 'running')", job_id)
        self._exec("UPDATE jobs SET status = 'cancelled', finished = ? WHERE id = ? AND status = 'queued'", time.time(), job_id)
        return self.get(job_id)

    def fail_unfinished(self, message: str = INTERRUPTED) -> None:
        """Fail this store's queued and running jobs (on shutdown)."""
        rows = self._rows("SELECT id FROM jobs WHERE owner = ? AND status IN ('queued', 'running')", self.owner)
        for (job_id,) in rows:
            self._fail(job_id, message)

    def close(self) -> None:
        with self._lock:
            self._db.close()


Report = Callable[[int, dict[str, float], str | None], bool]
"""``report(step, terms, preview)`` after each step; returns True when the work should stop."""
Work = Callable[[dict[str, Any], Any, Report], tuple[bytes, str]]
"""``work(params, inputs, report) -> (encoded image, media type)``; a ValueError's message is shown to the user."""


class QueueFull(Exception):
    """No room in the job queue; try again later."""


class WorkerPool:
    """``workers`` threads running ``work``; at most ``queue_size`` jobs wait for a free thread."""

    def __init__(self, store: JobStore, work: Work, workers: int = 1, queue_size: int = 16) -> None:
        self.store, self.work, self.queue_size = store, work, queue_size
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()  # unbounded: submit() enforces the bound
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"styler-job-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def full(self) -> bool:
        return self.waiting >= self.queue_size

    def submit(self, params: dict[str, Any], total: int, inputs: Any) -> Job:
        with self._lock:
            if self.full():
                raise QueueFull(f"the job queue is full ({self.queue_size} waiting); try again later")
            job = self.store.add(params, total)
            self._queue.put((job.id, inputs))
        return job

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers (a running job stops at its next step) and fail what is left unfinished."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.store.fail_unfinished()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._execute(*item)
            except Exception:  # the store itself failed; keep the thread alive for the next job
                log.exception("job %s: could not record its outcome", item[0])

    def _execute(self, job_id: str, inputs: Any) -> None:
        if self._stopping.is_set() or not self.store.start(job_id):
            return
        job = self.store.get(job_id)
        assert job is not None
        cancelled = False

        def report(step: int, terms: dict[str, float], preview: str | None) -> bool:
            nonlocal cancelled
            cancelled = self.store.progress(job_id, step, terms, preview)
            return cancelled or self._stopping.is_set()

        try:
            data, media_type = self.work(job.params, inputs, report)
        except ValueError as e:
            self.store.finish(job_id, "failed", error=str(e))
        except Exception:
            log.exception("job %s failed", job_id)
            self.store.finish(job_id, "failed", error=INTERNAL)
        else:
            if self._stopping.is_set():
                self.store.finish(job_id, "failed", error=INTERRUPTED)
            elif cancelled:
                self.store.finish(job_id, "cancelled")
            else:
                self.store.finish(job_id, "done", result=data, media_type=media_type)
