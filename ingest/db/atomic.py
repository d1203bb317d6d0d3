"""Writing kb.db atomically: a temporary file beside the target, renamed over it only on success.

A build never modifies kb.db in place. It writes ``.kb.db.tmp-PID`` beside the target and
renames it over the target only once everything has been written and committed, so a
crash or a bad input leaves the previous kb.db exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils


class BuildError(RuntimeError):
    """The build cannot complete; kb.db has not been touched."""


def pause_point(name: str) -> None:
    """Debug aid for crash tests: with KB_PAUSE_AT=name the process announces itself and waits.

    The crash-safety tests kill the build with SIGKILL at such points.
    """
    if os.environ.get("KB_PAUSE_AT") == name:
        print(f"kb: paused at {name}", file=sys.stderr, flush=True)
        time.sleep(120)


@contextlib.contextmanager
def atomic_database(target: Path, copy_existing: bool) -> Iterator[sqlite_utils.Database]:
    """A temporary database beside ``target``, renamed over it only on success."""
    target = target.resolve()
    if not target.parent.is_dir():
        raise BuildError(f"{target.parent}: cannot write the new database there (not a directory)")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        _remove_stale_temporaries(target)
        tmp.unlink(missing_ok=True)
        if copy_existing:
            _backup(target, tmp)
        db = sqlite_utils.Database(tmp)
        db.execute("select 1")
    except (OSError, sqlite3.Error) as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"{target.parent}: cannot write the new database there ({exc})") from exc
    try:
        db.execute("PRAGMA journal_mode = OFF" if not copy_existing else "PRAGMA journal_mode = DELETE")
        db.execute("PRAGMA synchronous = OFF")
        yield db
        db.execute("PRAGMA synchronous = FULL")
        db.close()
        _fsync(tmp)
        pause_point("before-rename")
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        db.close()
        tmp.unlink(missing_ok=True)
        raise


def _remove_stale_temporaries(target: Path) -> None:
    """Temporary files of builds that were killed (their process is gone)."""
    for path in target.parent.glob(f".{target.name}.tmp-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _backup(source: Path, dest: Path) -> None:
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        src.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise BuildError(f"{source}: not a readable SQLite database ({exc})") from exc
    dst = sqlite3.connect(dest)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        _fsync(path)
