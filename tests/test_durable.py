"""Accepted jobs survive the server: a real server process killed with SIGKILL, or stopped with
SIGTERM, mid-run; the next one finishes every job, resuming the interrupted one from its checkpoint.
"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import httpx2
from conftest import api_spawn, api_stop
from PIL import Image

LONG = 400  # iterations of the job that is interrupted: long enough to be caught mid-run


def submit(url: str, images: dict[str, bytes], iters: int) -> str:
    files = [("content", ("c.png", images["content"])), ("style", ("s.jpg", images["style"]))]
    data = {"size": "32", "iters": str(iters), "optimizer": "adam"}
    r = httpx2.post(f"{url}/v1/jobs", files=files, data=data, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def status(url: str, job_id: str) -> dict:
    return httpx2.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()


def finish_all(url: str, ids: list[str], api_wait) -> dict[str, dict]:
    finished = lambda: all(status(url, i)["status"] == "done" for i in ids)
    api_wait(finished, 300, "every job to be done")
    for job_id in ids:
        r = httpx2.get(f"{url}/v1/jobs/{job_id}/result", timeout=30)
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (43, 32)
    return {i: status(url, i) for i in ids}


def test_sigkill_loses_no_accepted_job(api_model_path: Path, api_images, api_wait, tmp_path):
    proc, url = api_spawn(api_model_path, tmp_path, STYLER_MAX_ITERS=str(LONG))
    try:
        finished = submit(url, api_images, 2)
        api_wait(lambda: status(url, finished)["status"] == "done", what="the first job")
        before = status(url, finished)
        running = submit(url, api_images, LONG)
        queued = [submit(url, api_images, 3) for _ in range(2)]
        api_wait(lambda: status(url, running)["step"] >= 25, 120, "two checkpoints")
        assert all(status(url, i)["status"] == "queued" for i in queued)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)

        proc, url = api_spawn(api_model_path, tmp_path, STYLER_MAX_ITERS=str(LONG))
        jobs = finish_all(url, [finished, running, *queued], api_wait)
    finally:
        api_stop(proc)
    assert jobs[finished] == before  # finished before the kill: not run again
    resumed = jobs[running]
    assert resumed["attempts"] == 2 and resumed["step"] == LONG
    assert resumed["note"].startswith("resumed from step ")
    assert int(resumed["note"].split()[3]) >= 20  # from its checkpoint, not from the start
    assert all(jobs[i]["attempts"] == 1 and jobs[i]["note"] is None for i in queued)


def test_sigterm_checkpoints_the_running_job_and_exits(api_model_path, api_images, api_wait,
                                                       tmp_path):  # fmt: skip
    proc, url = api_spawn(api_model_path, tmp_path, STYLER_MAX_ITERS=str(LONG))
    try:
        running = submit(url, api_images, LONG)
        api_wait(lambda: status(url, running)["step"] >= 3, 120, "the job to run")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises it once it has stopped
        assert "Application shutdown complete" in (tmp_path / "server.log").read_text()
        proc, url = api_spawn(api_model_path, tmp_path, STYLER_MAX_ITERS=str(LONG))
        job = finish_all(url, [running], api_wait)[running]
    finally:
        api_stop(proc)
    assert job["attempts"] == 2 and job["step"] == LONG
    assert int(job["note"].split()[3]) >= 3  # checkpointed when it stopped
