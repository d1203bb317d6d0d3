"""Deriving data (tags) from records in worker processes, a bounded number of chunks at a time."""

from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from ..tagging.vocabulary import load_vocabulary
from .trials import trial_tags


def default_derivers() -> list:
    """Derived data computed for every study written: tags, for now."""
    from .tags import Tagging

    return [Tagging()]


PARALLEL_THRESHOLD = 400  # records; below this, starting worker processes costs more than it saves
CHUNK = 50  # records sent to a worker at a time
AHEAD_PER_WORKER = 4  # chunks in flight per worker: enough to keep them busy, few enough to bound memory
_worker_derivers: list = []


def _derive_chunk(items: list[tuple[str, dict]]) -> list[list[tuple[dict, dict]]]:
    return [[d.derive(study_id, record) for d in _worker_derivers] for study_id, record in items]


def _tag_trial_chunk(items: list[tuple[str, dict]]) -> list[dict[str, list[str]]]:
    vocab = load_vocabulary()
    return [trial_tags(trial, vocab) for _, trial in items]


def _ignore_interrupts() -> None:
    """In a worker: Ctrl-C reaches the whole process group; the main process alone handles it
    (and terminates the workers), so the terminal gets one line, not a traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _workers() -> int:
    return min(os.cpu_count() or 1, 4)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Deriver:
    """Each deriver's output for a stream of (key, record), in the stream's order.

    Tagging costs more CPU than anything else in a build: with two cores or more, chunks of
    records go to worker processes, at most ``AHEAD_PER_WORKER`` per worker in flight, so the
    records and results held at once do not grow with the corpus. The workers start only when
    there are enough records to repay them (``total``).
    """

    def __init__(self, derivers: list):
        self.derivers = derivers
        self.pool = None

    def studies(self, items: Iterable[tuple[str, dict]], total: int) -> Iterator[tuple[str, dict, list]]:
        """(key, record, [each deriver's (columns, rows)]) for each item."""
        inline = lambda key, record: [d.derive(key, record) for d in self.derivers]  # noqa: E731
        yield from self._run(items, total, _derive_chunk, inline)

    def trial_tags(self, items: list[tuple[str, dict]]) -> list[dict[str, list[str]]] | None:
        """Tags of each (key, trial), in order; None when the build derives nothing."""
        if not self.derivers:
            return None
        inline = lambda key, trial: trial_tags(trial, load_vocabulary())  # noqa: E731
        return [tags for _, _, tags in self._run(items, len(items), _tag_trial_chunk, inline)]

    def _run(self, items: Iterable[tuple[str, dict]], total: int, work: Callable,
             inline: Callable) -> Iterator[tuple[str, dict, object]]:
        if not self.derivers or total < PARALLEL_THRESHOLD or _workers() < 2:
            for key, record in items:
                yield key, record, inline(key, record) if self.derivers else []
            return
        pool = self._pool()
        in_flight: deque = deque()
        for chunk in _chunks(items, CHUNK):
            in_flight.append((chunk, pool.apply_async(work, (chunk,))))
            if len(in_flight) >= AHEAD_PER_WORKER * _workers():
                yield from _finished(in_flight.popleft())
        while in_flight:
            yield from _finished(in_flight.popleft())

    def _pool(self):
        if self.pool is None:
            import multiprocessing

            global _worker_derivers
            _worker_derivers = self.derivers  # inherited by the forked workers, never pickled
            load_vocabulary()  # compiled once, here, rather than once per worker
            self.pool = multiprocessing.get_context("fork").Pool(_workers(), initializer=_ignore_interrupts)
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def __enter__(self) -> Deriver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _finished(submitted: tuple[list, object]) -> Iterator[tuple[str, dict, object]]:
    chunk, result = submitted
    for (key, record), derived in zip(chunk, result.get(), strict=True):
        yield key, record, derived
