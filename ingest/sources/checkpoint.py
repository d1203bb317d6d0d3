"""Resuming interrupted network builds: every checked answer is kept on disk until the build succeeds.

The cache sits on the `requests.Session` (``session.kb_cache``) and is consulted by
:func:`ingest.sources.http.get_checked`. Paging is deterministic (a cursor or page token comes from
the previous page), so a re-run replays the pages already fetched from disk and goes to the
network only from the first page it lacks. PubMed history sessions (WebEnv) expire, so an esearch
is never kept: a resumed run searches again, and its efetch pages are named by the search, its
record count and the offset (not the WebEnv), so the kept ones are replayed while the count is
unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from urllib.parse import urlencode


class PageCache:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.hits = 0
        self.stored = 0

    def key(self, url: str, params: dict | None) -> str:
        query = urlencode(sorted((params or {}).items()), doseq=True)
        return hashlib.sha256(f"{url}?{query}".encode()).hexdigest()

    def get(self, url: str, params: dict | None) -> bytes | None:
        path = self.directory / self.key(url, params)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        self.hits += 1
        return data

    def put(self, url: str, params: dict | None, body: bytes) -> None:
        """Write atomically: a crash mid-write never leaves a partial page to replay."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / self.key(url, params)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_bytes(body)
        os.replace(tmp, path)
        self.stored += 1

    def pages(self) -> int:
        if not self.directory.is_dir():
            return 0
        return sum(1 for p in self.directory.iterdir() if "." not in p.name)

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
