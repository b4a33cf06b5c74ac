"""The solver's worker threads: a bounded queue of job ids over the durable :class:`JobStore`.

On start the pool queues the jobs it takes over from stopped servers; on close (SIGTERM) it takes
no more, and a running job stops at its next step with a checkpoint, to be resumed by the next
server.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .jobs import INTERNAL, Job, JobStore
from .params import JobSpec, Source

log = logging.getLogger("styler.workers")


@dataclass
class Run:
    """What a worker hands the work function for one job."""

    job: Job
    inputs: list[Source]
    resume: tuple[int, bytes] | None  # the latest checkpoint: step and saved state
    progress: Callable[[int, dict[str, float], str | None], bool]  # True: stop now
    checkpoint: Callable[[int, bytes], None]


Work = Callable[[Run], "tuple[bytes, str] | None"]
"""``work(run) -> (encoded image, media type)``, or None when it stopped early (after a
checkpoint). A ValueError's message is shown to the user."""


class QueueFull(Exception):
    """No room in the job queue; try again later."""


class WorkerPool:
    """``workers`` threads running ``work``; at most ``queue_size`` new jobs wait for a thread."""

    def __init__(self, store: JobStore, work: Work, workers: int = 1, queue_size: int = 16) -> None:
        self.store, self.work, self.queue_size = store, work, queue_size
        self._queue: queue.Queue[str | None] = queue.Queue()  # submit() enforces the bound
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        for job_id in store.take_over():
            self._queue.put(job_id)
        self._threads = [threading.Thread(target=self._run, name=f"styler-job-{i}", daemon=True)
                         for i in range(workers)]  # fmt: skip
        for t in self._threads:
            t.start()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def full(self) -> bool:
        return self.waiting >= self.queue_size

    def submit(self, spec: JobSpec, inputs: list[Source]) -> Job:
        with self._lock:
            if self.full():
                raise QueueFull(f"the job queue is full ({self.queue_size} waiting)")
            job = self.store.add(spec, inputs)
            self._queue.put(job.id)
        return job

    def close(self, timeout: float = 30.0) -> None:
        """Take no more jobs; a running one stops at its next step with a checkpoint."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while (job_id := self._queue.get()) is not None:
            try:
                self._execute(job_id)
            except Exception:  # the store itself failed; keep the thread alive for the next job
                log.exception("job %s: could not record its outcome", job_id)

    def _execute(self, job_id: str) -> None:
        if self._stopping.is_set() or not self.store.start(job_id):
            return
        job = self.store.get(job_id)
        assert job is not None
        cancelled = False

        def progress(step: int, terms: dict[str, float], preview: str | None) -> bool:
            nonlocal cancelled
            cancelled = self.store.progress(job_id, step, terms, preview)
            return cancelled or self._stopping.is_set()

        checkpoint = lambda step, state: self.store.checkpoint(job_id, step, state)
        run = Run(job, self.store.inputs(job_id), self.store.resume_point(job_id), progress,
                  checkpoint)  # fmt: skip
        try:
            out = self.work(run)
        except ValueError as e:
            self.store.finish(job_id, "failed", error=str(e))
        except Exception:
            log.exception("job %s failed", job_id)
            self.store.finish(job_id, "failed", error=INTERNAL)
        else:
            if cancelled:
                self.store.finish(job_id, "cancelled")
            elif out is None:
                self.store.requeue(job_id)
            else:
                self.store.finish(job_id, "done", result=out[0], media_type=out[1])
