"""Deriving data (tags) from records in worker processes while parsing goes on."""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Callable, Iterator

from ..tagging.vocabulary import load_vocabulary
from .trials import trial_tags


def default_derivers() -> list:
    """Derived data computed for every study written: tags, for now."""
    from .tags import Tagging

    return [Tagging()]


PARALLEL_THRESHOLD = 400  # records; below this, starting worker processes costs more than it saves
_worker_derivers: list = []


def _derive_chunk(items: list[tuple[str, dict]]) -> list[list[tuple[dict, dict]]]:
    return [[d.derive(study_id, record) for d in _worker_derivers] for study_id, record in items]


def _tag_trial_chunk(items: list[tuple[str, dict]]) -> list[dict[str, list[str]]]:
    vocab = load_vocabulary()
    return [trial_tags(trial, vocab) for _, trial in items]


def _fork_pool(derivers: list, workers: int):
    import multiprocessing

    global _worker_derivers
    _worker_derivers = derivers  # inherited by the forked workers, never pickled
    load_vocabulary()  # compiled once, here, rather than once per worker
    # Freeze the parent's objects out of the collector first: a collection in a forked worker
    # would otherwise touch (and so copy) every page of the records it inherited.
    gc.freeze()
    try:
        return multiprocessing.get_context("fork").Pool(workers, initializer=_ignore_interrupts)
    finally:
        gc.unfreeze()


def _ignore_interrupts() -> None:
    """In a worker: Ctrl-C reaches the whole process group; the main process alone handles it
    (and terminates the workers), so the terminal gets one line, not a traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _workers() -> int:
    return min(os.cpu_count() or 1, 4)


class _Lane:
    """Records of one kind sent to the workers in chunks; results looked up by key and record."""

    CHUNK = 50

    def __init__(self, work: Callable, inline: Callable):
        self.work, self.inline = work, inline  # chunk function for workers; (key, record) -> result here
        self.batch: list[tuple[str, dict]] = []
        self.submitted: dict[str, tuple[dict, int, int]] = {}  # key -> (record, chunk, index in chunk)
        self.chunks: list = []  # AsyncResult per chunk

    def submit(self, pool) -> None:
        if not self.batch:
            return
        for index, (key, record) in enumerate(self.batch):
            self.submitted[key] = (record, len(self.chunks), index)
        self.chunks.append(pool.apply_async(self.work, (self.batch,)))
        self.batch = []

    def known(self, key: str, record: dict) -> bool:
        known = self.submitted.get(key)
        return known is not None and known[0] is record

    def result(self, key: str, record: dict):
        if self.known(key, record):
            chunk, index = self.submitted[key][1:]
            return self.chunks[chunk].get()[index]
        return self.inline(key, record)


class Prederiver:
    """Tags studies and trials in worker processes as soon as they are parsed, while parsing goes on.

    Tagging costs more CPU than parsing; run side by side they share the cores instead of
    queueing, and the main process never compiles the vocabulary. Workers start once a first
    chunk is ready (small inputs never fork). A record merged again later is derived again:
    a result is used only if it was derived from the very record being written.
    """

    def __init__(self, derivers: list):
        self.derivers = derivers
        self.enabled = bool(derivers) and _workers() >= 2
        self.pool = None
        self.studies = _Lane(_derive_chunk, lambda key, record: [d.derive(key, record) for d in derivers])
        self.trials = _Lane(_tag_trial_chunk, lambda key, trial: trial_tags(trial, load_vocabulary()))

    def study(self, key: str, record: dict) -> None:
        """A study record just parsed."""
        self._queue(self.studies, key, record)

    def trial(self, key: str, trial: dict) -> None:
        """A trial just collected."""
        self._queue(self.trials, key, trial)

    def _queue(self, lane: _Lane, key: str, record: dict) -> None:
        if not self.enabled:
            return
        lane.batch.append((key, record))
        if len(lane.batch) >= lane.CHUNK:
            self._submit(lane)

    def _submit(self, lane: _Lane) -> None:
        if lane.batch and self.pool is None:
            self.pool = _fork_pool(self.derivers, _workers())
        lane.submit(self.pool)

    def _send_missing(self, lane: _Lane, items: list[tuple[str, dict]]) -> None:
        """Send what was not derived yet (merged since, or parsed in one go) to the workers, if worth it."""
        missing = [(key, record) for key, record in items if not lane.known(key, record)]
        lane.batch = []
        if self.enabled and (self.pool is not None or len(missing) >= PARALLEL_THRESHOLD):
            for start in range(0, len(missing), lane.CHUNK):
                lane.batch = missing[start:start + lane.CHUNK]
                self._submit(lane)

    def prepare(self, studies: list[tuple[str, dict]], trials: list[tuple[str, dict]]) -> None:
        """Everything still to derive goes to the workers now, studies first."""
        self._send_missing(self.studies, studies)
        if self.derivers:
            self._send_missing(self.trials, trials)

    def results(self, items: list[tuple[str, dict]]) -> Iterator[list[tuple[dict, dict]]]:
        """Each deriver's output for each (key, study record), in order."""
        for key, record in items:
            yield self.studies.result(key, record)

    def trial_tags(self, items: list[tuple[str, dict]]) -> list[dict[str, list[str]]] | None:
        """Tags of each (key, trial), in order; None when the build derives nothing."""
        if not self.derivers:
            return None
        return [self.trials.result(key, trial) for key, trial in items]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def __enter__(self) -> Prederiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
