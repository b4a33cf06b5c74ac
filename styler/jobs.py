"""Durable background jobs for the solver: an SQLite record of every job (threads: workers.py).

The database (one file, stdlib ``sqlite3``) holds each job's typed request (JSON), its input
images, status, progress, latest preview, the latest checkpoint (image + step), a cancel flag and,
once done, the encoded result. A job accepted with 202 is therefore never lost: when a server
starts, it takes over the unfinished jobs of processes that are gone and runs them again, from
their checkpoint when they have one ("resumed from step N"). Jobs of server processes that are
still alive (``uvicorn --workers N``) are left to them. Inputs and checkpoints are deleted when a
job finishes; finished jobs are deleted ``retention_s`` after they finish.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .params import JobSpec, Source

log = logging.getLogger("styler.jobs")

FINISHED = ("done", "failed", "cancelled")  # the other statuses are "queued" and "running"
LEGACY = "the server stopped before this job finished and its inputs were not kept; submit again"
INTERNAL = "internal error while running the job (details are in the server log)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id         TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    params     TEXT NOT NULL,              -- JSON: the typed request and the output format
    step       INTEGER NOT NULL DEFAULT 0,
    total      INTEGER NOT NULL,
    terms      TEXT NOT NULL DEFAULT '{}', -- JSON: the latest loss terms
    error      TEXT,
    cancel     INTEGER NOT NULL DEFAULT 0,
    created    REAL NOT NULL,
    started    REAL,                       -- the first start
    finished   REAL,
    owner      TEXT NOT NULL,              -- the JobStore instance that runs it
    pid        INTEGER NOT NULL,           -- and its process
    preview    TEXT,                       -- data URL of a small JPEG of the current image
    media_type TEXT,
    result     BLOB
);
CREATE TABLE IF NOT EXISTS inputs (
    job      TEXT NOT NULL,
    position INTEGER NOT NULL,             -- 0: the content, then the styles
    name     TEXT NOT NULL,
    data     BLOB NOT NULL,
    PRIMARY KEY (job, position)
);
"""
# Columns added since the first schema; an older database gains them when it is opened.
_ADDED = {"note": "TEXT", "attempts": "INTEGER NOT NULL DEFAULT 0", "ckpt_step": "INTEGER",
          "ckpt": "BLOB"}  # fmt: skip
_FIELDS = ("id, status, params, step, total, terms, error, created, started, finished, preview, "
           "media_type, note, attempts")  # fmt: skip


@dataclass
class Job:
    id: str
    status: str
    params: dict[str, Any]  # the stored JobSpec, as the API shows it
    step: int
    total: int
    terms: dict[str, float]
    error: str | None
    created: float
    started: float | None
    finished: float | None
    preview: str | None
    media_type: str | None
    note: str | None  # e.g. "resumed from step 40 after a restart"
    attempts: int  # how many times a worker started it

    @property
    def elapsed_s(self) -> float | None:
        """Time since the first start, or in all once finished (None while queued)."""
        if self.started is None:
            return None
        return round((self.finished or time.time()) - self.started, 3)

    @property
    def spec(self) -> JobSpec:
        return JobSpec.from_dict(self.params)

    def to_dict(self) -> dict[str, Any]:
        """The public view: everything but the preview (sent as progress events) and the result."""
        keys = ("id", "status", "step", "total", "terms", "error", "note", "attempts", "params")
        times = {f"{k}_at": iso_time(getattr(self, k)) for k in ("created", "started", "finished")}
        return {**{k: getattr(self, k) for k in keys}, **times, "elapsed_s": self.elapsed_s}


def iso_time(t: float | None) -> str | None:
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
        """``retention_s``: finished jobs are deleted that long after they finish (None: kept)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.owner = uuid.uuid4().hex
        self.retention_s = retention_s
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for column, kind in _ADDED.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
        self.prune()

    def _rows(self, query: str, *args: Any) -> list[tuple]:
        with self._lock:
            return self._db.execute(query, args).fetchall()

    def _exec(self, query: str, *args: Any) -> int:
        """Run one statement (autocommit); the number of rows it changed."""
        with self._lock:
            return self._db.execute(query, args).rowcount

    def prune(self) -> int:
        """Delete the finished jobs older than the retention time; how many."""
        if self.retention_s is None:
            return 0
        statuses = ", ".join(f"'{s}'" for s in FINISHED)
        cutoff = time.time() - self.retention_s
        return self._exec(f"DELETE FROM jobs WHERE status IN ({statuses}) AND finished < ?", cutoff)

    def add(self, spec: JobSpec, inputs: list[Source]) -> Job:
        """A queued job with its inputs (content first), stored in one transaction."""
        params, total = spec.to_dict(), spec.request.iters
        self.prune()
        job_id = uuid.uuid4().hex
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO jobs (id, status, params, total, created, owner, pid) "
                    "VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                    (job_id, json.dumps(params), total, time.time(), self.owner, os.getpid()),
                )
                self._db.executemany(
                    "INSERT INTO inputs (job, position, name, data) VALUES (?, ?, ?, ?)",
                    [(job_id, i, s.name, s.data) for i, s in enumerate(inputs)],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
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

    def inputs(self, job_id: str) -> list[Source]:
        q = "SELECT name, data FROM inputs WHERE job = ? ORDER BY position"
        return [Source(name, bytes(data)) for name, data in self._rows(q, job_id)]

    def result(self, job_id: str) -> tuple[bytes, str] | None:
        q = "SELECT result, media_type FROM jobs WHERE id = ? AND status = 'done'"
        rows = self._rows(q, job_id)
        return rows[0] if rows else None

    def checkpoint(self, job_id: str, step: int, state: bytes) -> None:
        """Keep the solver's state at ``step`` (one UPDATE: atomic)."""
        self._exec("UPDATE jobs SET ckpt_step = ?, ckpt = ? WHERE id = ?", step, state, job_id)

    def resume_point(self, job_id: str) -> tuple[int, bytes] | None:
        rows = self._rows("SELECT ckpt_step, ckpt FROM jobs WHERE id = ?", job_id)
        return (rows[0][0], bytes(rows[0][1])) if rows and rows[0][1] is not None else None

    def start(self, job_id: str) -> bool:
        """queued → running (a run after an earlier one says how it goes on); False if the job
        was cancelled or taken by another store meanwhile."""
        with self._lock:
            rows = self._rows("SELECT attempts, ckpt_step FROM jobs WHERE id = ?", job_id)
            if not rows:
                return False
            attempts, ckpt_step = rows[0]
            note = None
            if attempts:
                how = f"resumed from step {ckpt_step}" if ckpt_step else "restarted from step 0"
                note = f"{how} after a server restart"
            return self._exec(
                "UPDATE jobs SET status = 'running', started = COALESCE(started, ?), "
                "attempts = attempts + 1, note = COALESCE(?, note) "
                "WHERE id = ? AND status = 'queued' AND cancel = 0 AND owner = ?",
                time.time(), note, job_id, self.owner,
            ) == 1  # fmt: skip

    def progress(
        self, job_id: str, step: int, terms: dict[str, float], preview: str | None
    ) -> bool:
        """Record a step (keeping the last preview when there is no new one); True if a cancel
        was asked."""
        self._exec(
            "UPDATE jobs SET step = ?, terms = ?, preview = COALESCE(?, preview) WHERE id = ?",
            step, json.dumps(terms), preview, job_id,
        )  # fmt: skip
        return bool(self._rows("SELECT cancel FROM jobs WHERE id = ?", job_id)[0][0])

    def finish(self, job_id: str, status: str, error: str | None = None,
               result: bytes | None = None, media_type: str | None = None) -> bool:  # fmt: skip
        """running → done, failed or cancelled, once, by the store that runs it; its inputs and
        checkpoint are dropped."""
        with self._lock:
            done = self._exec(
                "UPDATE jobs SET status = ?, error = ?, result = ?, media_type = ?, finished = ?, "
                "ckpt = NULL WHERE id = ? AND status = 'running' AND owner = ?",
                status, error, result, media_type, time.time(), job_id, self.owner,
            )  # fmt: skip
            self._exec("DELETE FROM inputs WHERE job = ?", job_id)
        return done == 1

    def requeue(self, job_id: str) -> None:
        """running → queued: a run stopped by a shutdown; the next server takes it over."""
        self._exec("UPDATE jobs SET status = 'queued' WHERE id = ? AND status = 'running'", job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Flag the job; a queued one is cancelled at once, a running one at its next step."""
        with self._lock:
            unfinished = "status IN ('queued', 'running')"
            self._exec(f"UPDATE jobs SET cancel = 1 WHERE id = ? AND {unfinished}", job_id)
            cancelled = self._exec(
                "UPDATE jobs SET status = 'cancelled', finished = ?, ckpt = NULL "
                "WHERE id = ? AND status = 'queued'", time.time(), job_id,
            )  # fmt: skip
            if cancelled:
                self._exec("DELETE FROM inputs WHERE job = ?", job_id)
        return self.get(job_id)

    def take_over(self) -> list[str]:
        """Claim the unfinished jobs of stores that are gone (a dead process, or an earlier store
        in this one) and return them, oldest first, to run again; one claim wins each job."""
        rows = self._rows(
            "SELECT id, owner, pid, cancel, EXISTS (SELECT 1 FROM inputs WHERE job = id) "
            "FROM jobs WHERE status IN ('queued', 'running') AND owner != ? ORDER BY created",
            self.owner,
        )  # fmt: skip
        claimed = []
        for job_id, owner, pid, cancel, has_inputs in rows:
            if pid != os.getpid() and _alive(pid):
                continue
            if cancel or not has_inputs:  # no inputs: accepted by a styler that did not keep them
                self._exec(
                    "UPDATE jobs SET status = ?, error = ?, finished = ? "
                    "WHERE id = ? AND owner = ?",
                    "cancelled" if cancel else "failed", None if cancel else LEGACY, time.time(),
                    job_id, owner,
                )  # fmt: skip
                continue
            if self._exec(
                "UPDATE jobs SET status = 'queued', owner = ?, pid = ? WHERE id = ? AND owner = ?",
                self.owner, os.getpid(), job_id, owner,
            ):  # fmt: skip
                claimed.append(job_id)
        if claimed:
            log.warning("took over %d unfinished job(s) of a stopped server", len(claimed))
        return claimed

    def close(self) -> None:
        with self._lock:
            self._db.close()
