"""The web server's one writer of ``heart_user``: submissions that arrive together are stored together.

Storing each submission as its own Delta commit, taken in turn under the table's file lock, managed
about 3 a second on 2 cores however many people were waiting (docs/reliability.md). Here a request
puts its checked row (:func:`heartrisk.sources.submissions.submission_row`: a refused submission never gets
this far) on a queue and waits for the commit that holds it. One thread writes: it takes whatever has
gathered while the previous commit ran, up to ``max_batch`` rows, and writes it in ONE insert (one
commit). A lone submission is written at once; nothing waits for a timer.

The guarantees are those of one commit per request:

* a request is answered only after the commit that holds its row, each with its own id;
* a batch that fails is written again row by row, so a row that cannot be stored does not fail the
  others and each request gets its own outcome (inserts are keyed, so a row the failed batch did
  store is not stored twice);
* on stop, new submissions are refused (:class:`WriterStoppedError`, a 503 from the API) and every
  queued one is written before the thread ends.

The thread starts and stops with the app (``create_app``'s lifespan), as the model cache's does.
Nothing here logs a submission's id or answers: only counts and the kind of error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Mapping
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import pandas as pd
from fastapi.concurrency import run_in_threadpool

from heartrisk.config import Settings
from heartrisk.sources.submissions import insert_submissions, submission_row

log = logging.getLogger(__name__)

#: Most rows one commit takes by default: a full batch of 500 one-row submissions is a ~100 KB commit.
DEFAULT_MAX_BATCH = 500
#: How long stopping waits for the queue to be written (a commit waits up to the store's lock timeout).
DEFAULT_STOP_TIMEOUT_S = 120.0


class WriterStoppedError(RuntimeError):
    """The writer is not taking submissions (the server is stopping): nothing was stored."""


@dataclass
class _Pending:
    """One checked row and the future its request waits on."""

    row: pd.DataFrame
    future: Future[str] = field(default_factory=Future)

    @property
    def submission_id(self) -> str:
        return str(self.row["submission_id"].iat[0])


_STOP = object()  # put on the queue (last) by stop(): everything before it is written first


class SubmissionWriter:
    """Group commit of consented submissions into ``heart_user`` (see the module docstring)."""

    def __init__(self, settings: Settings, max_batch: int = DEFAULT_MAX_BATCH,
                 stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.settings = settings
        self.max_batch = max_batch
        self.stop_timeout_s = stop_timeout_s
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._gate = threading.Lock()  # accepting + enqueueing happen together, so none slips past _STOP
        self._accepting = False
        self._waiting = 0
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Start the writer thread and take submissions (a second call does nothing)."""
        with self._gate:
            if self._thread is not None:
                return
            self._accepting = True
            self._thread = threading.Thread(target=self._run, name="submission-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Refuse new submissions, write every queued one, then end the thread (idempotent)."""
        with self._gate:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._accepting = False
            self._queue.put(_STOP)
        thread.join(self.stop_timeout_s)
        if thread.is_alive():  # the store is stuck: say so; these requests were never answered 201
            log.error("stopped waiting for the submission writer after %.0f s: %d queued submissions "
                      "(none acknowledged) may not be stored", self.stop_timeout_s, self.waiting)

    @property
    def running(self) -> bool:
        return self._accepting

    @property
    def queued(self) -> int:
        """Submissions on the queue, not yet taken into a commit."""
        return self._queue.qsize()

    @property
    def waiting(self) -> int:
        """Submissions taken but not answered yet (queued or in the commit being written)."""
        return self._waiting

    # ------------------------------------------------------------------ submitting
    def enqueue(self, row: pd.DataFrame) -> Future[str]:
        """Queue a row made by :func:`~heartrisk.sources.submissions.submission_row`; the future gives its
        ``submission_id`` once committed, or the error that kept it out of the table."""
        pending = _Pending(row)
        with self._gate:
            if not self._accepting:
                raise WriterStoppedError("the server is stopping and takes no submissions now; nothing "
                                         "was stored: send it again in a minute")
            self._waiting += 1
            self._queue.put(pending)
        return pending.future

    def add(self, answers: Mapping[str, object], heart_disease: bool) -> str:
        """Check, queue and wait: :func:`~heartrisk.sources.submissions.add_submission` through this writer.

        A refused submission raises :class:`~heartrisk.validation.ValidationError` before it is queued.
        """
        return self.enqueue(submission_row(self.settings, answers, heart_disease)).result()

    async def submit(self, answers: Mapping[str, object], heart_disease: bool) -> str:
        """:meth:`add` for the event loop: checked in a worker thread, then the wait for the commit
        holds no thread. Shielded: a request cancelled while it waits (client gone, server stopping)
        leaves its row queued, to be written."""
        row = await run_in_threadpool(submission_row, self.settings, answers, heart_disease)
        return await asyncio.shield(asyncio.wrap_future(self.enqueue(row)))

    # ------------------------------------------------------------------ the writer thread
    def _run(self) -> None:
        while True:
            first = self._queue.get()  # blocks while idle: a lone submission is written at once
            if first is _STOP:
                return
            batch, stopping = [first], False
            while len(batch) < self.max_batch:  # whatever gathered during the last commit
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)  # type: ignore[arg-type]
            if stopping:
                return

    def _write(self, batch: list[_Pending]) -> None:
        """One commit for the batch; if it fails, one commit per row so each gets its own outcome."""
        try:
            rows = batch[0].row if len(batch) == 1 else pd.concat([p.row for p in batch], ignore_index=True)
            insert_submissions(self.settings, rows)
        except Exception as exc:
            if len(batch) == 1:
                self._settle(batch[0], error=exc)
                return
            # The kind of error only: its text may hold answers or ids, which are not logged.
            log.warning("a commit of %d submissions failed (%s); writing them one by one",
                        len(batch), type(exc).__name__)
            for pending in batch:
                self._write([pending])
            return
        for pending in batch:
            self._settle(pending, result=pending.submission_id)

    def _settle(self, pending: _Pending, result: str | None = None,
                error: BaseException | None = None) -> None:
        with self._gate:
            self._waiting -= 1
        with contextlib.suppress(InvalidStateError):  # its waiter cancelled it; the row's fate stands
            if error is not None:
                pending.future.set_exception(error)
            else:
                pending.future.set_result(result)  # type: ignore[arg-type]
