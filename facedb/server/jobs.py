"""Jobs: long work (a search over a long video or many photos) run in the background, with
progress, cancellation and results that are kept only until fetched.

A job belongs to the key that submitted it (or to the owner, on the unix socket): another key
neither sees it nor learns that it exists (404). Jobs run one at a time, in submission order, in
a thread of their own beside the request handlers; at most ``max_jobs`` wait (more: 503 with
Retry-After). A finished job's result (names of people, biometric answers) is kept until its
first fetch, which removes it, and at most ``keep_s`` seconds after the job ended; a cancelled or
failed job likewise. Nothing of a job is written to disk, and only its kind, counts and outcome
reach the log or the audit trail (the search itself is audited as any search).
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from ..errors import FacedbError, NotFoundError, OverloadedError

Status = Literal["queued", "running", "done", "failed", "cancelled"]
#: What a job runs: given a progress function (call it with the number of inputs done; it raises
#: ``Cancelled`` once the job is cancelled), returns the result's JSON.
Work = Callable[[Callable[[int], None]], dict[str, Any]]


class Cancelled(Exception):
    """Raised inside a job's work by its progress function once the job is cancelled."""


@dataclass
class Job:
    id: str
    kind: str
    owner: str
    collection: str
    total: int
    status: Status = "queued"
    done: int = 0
    created: float = field(default_factory=time.time)
    finished: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def view(self) -> dict[str, Any]:
        """The job's JSON (``JobInfo``)."""
        return {"id": self.id, "kind": self.kind, "status": self.status, "done": self.done, "total": self.total,
                "collection": self.collection, "created_at": _iso(self.created),
                "finished_at": _iso(self.finished) if self.finished else None,
                "result": self.result, "error": self.error}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


class Jobs:
    """The server's jobs (``app.state.jobs``)."""

    def __init__(self, max_jobs: int = 16, keep_s: float = 3600.0) -> None:
        self.max_jobs = max_jobs
        self.keep_s = keep_s
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facedb-job")

    def submit(self, kind: str, owner: str, collection: str, total: int, work: Work,
               error_body: Callable[[FacedbError], dict[str, Any]]) -> Job:
        with self._lock:
            self._sweep()
            waiting = sum(j.status in ("queued", "running") for j in self._jobs.values())
            if waiting >= self.max_jobs:
                raise OverloadedError(f"{waiting} jobs are waiting or running (at most {self.max_jobs}); "
                                      "fetch or cancel some, or try again later", retry_after=5)
            job = Job(secrets.token_urlsafe(16), kind, owner, collection, total)
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, work, error_body)
        return job

    def _run(self, job: Job, work: Work, error_body: Callable[[FacedbError], dict[str, Any]]) -> None:
        def progress(n: int) -> None:
            job.done += n
            if job.cancel.is_set():
                raise Cancelled

        if job.cancel.is_set():
            return
        job.status = "running"
        try:
            result = work(progress)
        except Cancelled:
            job.status = "cancelled"
        except FacedbError as exc:
            job.error, job.status = error_body(exc), "failed"
        except Exception as exc:  # never a job left "running": it failed, the server logs why
            import logging

            logging.getLogger("facedb.server").error("job %s (%s) failed: %s", job.id[:6], job.kind,
                                                     type(exc).__name__)
            job.error = {"error": "internal server error (logged on the server)", "reason": "internal",
                         "status": 500, "kind": "internal"}
            job.status = "failed"
        else:
            if job.cancel.is_set():
                job.status = "cancelled"
            else:
                job.result, job.status = result, "done"
        finally:
            job.finished = time.time()

    def get(self, job_id: str, owner: str, collection: str) -> Job:
        with self._lock:
            self._sweep()
            job = self._jobs.get(job_id)
            if job is None or job.owner != owner or job.collection != collection:
                raise NotFoundError(f"no job {job_id!r} (a job's result is kept until it is fetched once, and "
                                    f"at most {self.keep_s:g} s after it ended)")
            return job

    def fetch(self, job_id: str, owner: str, collection: str) -> dict[str, Any]:
        """The job's JSON; a job that has ended is forgotten once fetched."""
        job = self.get(job_id, owner, collection)
        view = job.view()
        if job.finished is not None:
            with self._lock:
                self._jobs.pop(job.id, None)
        return view

    def cancel(self, job_id: str, owner: str, collection: str) -> dict[str, Any]:
        """Stop the job (at its next progress point) and forget it."""
        job = self.get(job_id, owner, collection)
        job.cancel.set()
        if job.status == "queued":
            job.status, job.finished = "cancelled", time.time()
        view = job.view()
        with self._lock:
            self._jobs.pop(job.id, None)
            job.result = None
        if view["status"] == "running":
            view["status"] = "cancelled"
        return view

    def _sweep(self) -> None:
        """Forget jobs that ended more than ``keep_s`` ago (their results with them)."""
        now = time.time()
        for job_id in [j.id for j in self._jobs.values() if j.finished is not None and now - j.finished > self.keep_s]:
            self._jobs.pop(job_id).result = None

    def close(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()
            self._jobs.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
