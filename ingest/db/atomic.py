"""Writing kb.db atomically: a temporary file beside the target, renamed over it only on success.

A build never modifies kb.db in place. It writes ``.kb.db.tmp-PID`` beside the target and
renames it over the target only once everything has been written and committed, so a
crash or a bad input leaves the previous kb.db exactly as it was.

Writers take turns: each holds an exclusive lock (``kb.db.lock``, beside the target) from
before it reads kb.db until after its rename, so two imports cannot each copy the same kb.db
and have the later rename lose the other's studies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import sqlite3
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils


class BuildError(RuntimeError):
    """The build cannot complete; kb.db has not been touched."""


DEFAULT_LOCK_WAIT = 600.0  # seconds a writer waits for another to finish before giving up
LOCK_POLL = 0.1  # seconds between attempts to take the lock while waiting


def pause_point(name: str) -> None:
    """Debug aid for crash tests: with KB_PAUSE_AT=name the process announces itself and waits.

    The crash-safety tests kill the build with SIGKILL at such points. With KB_PAUSE_UNTIL=path
    the wait ends as soon as that file exists (tests of concurrent writers release it).
    """
    if os.environ.get("KB_PAUSE_AT") != name:
        return
    print(f"kb: paused at {name}", file=sys.stderr, flush=True)
    release = os.environ.get("KB_PAUSE_UNTIL")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (release and os.path.exists(release)):
        time.sleep(0.05)


def lock_path(target: Path) -> Path:
    return target.with_name(f"{target.name}.lock")


@contextlib.contextmanager
def writer_lock(target: Path, wait: float = DEFAULT_LOCK_WAIT) -> Iterator[None]:
    """Hold the exclusive writer lock of ``target``; wait up to ``wait`` seconds (0: refuse at once).

    The lock file is left in place: removing it would let a waiting writer lock a file
    that no longer has a name while a third one creates and locks a new one.
    """
    path = lock_path(target)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise BuildError(f"{path}: cannot create the writer lock ({exc.strerror or exc})") from exc
    try:
        _acquire(fd, target, wait)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _acquire(fd: int, target: Path, wait: float) -> None:
    if _try_lock(fd):
        return
    holder = _holder(fd)
    if wait <= 0:
        raise BuildError(f"{target}: another kb writer{holder} is changing it; try again once it has finished")
    print(f"waiting for another kb writer on {target.name}{holder}…", file=sys.stderr, flush=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        time.sleep(LOCK_POLL)
        if _try_lock(fd):
            return
    raise BuildError(f"{target}: another kb writer{_holder(fd)} still holds it after {wait:g} s; "
                     "try again once it has finished")


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(fd: int) -> str:
    """" (pid N)" from the lock file, as its holder wrote it."""
    try:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


@contextlib.contextmanager
def atomic_database(target: Path, copy_existing: bool, wait: float = DEFAULT_LOCK_WAIT,
                    compact: bool = False) -> Iterator[sqlite_utils.Database]:
    """A temporary database beside ``target``, renamed over it only on success.

    The writer lock is held throughout: from before ``target`` is read (copied, or its run
    history read by the caller inside the block) until after the rename. ``compact``: the
    finished database is copied into a second temporary file by ``VACUUM INTO`` and that file
    renamed instead: every table and index written anew in key order, its pages full and no free
    pages (a fresh build's indexes, filled in no order, leave about a tenth of their pages unused).
    """
    target = target.resolve()
    if not target.parent.is_dir():
        raise BuildError(f"{target.parent}: cannot write the new database there (not a directory)")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    packed = tmp.with_name(f"{tmp.name}-packed")
    with writer_lock(target, wait):
        _refuse_foreign(target, "import into" if copy_existing else "replace")
        db = _open_temporary(target, tmp, copy_existing)
        try:
            db.execute("PRAGMA journal_mode = OFF" if not copy_existing else "PRAGMA journal_mode = DELETE")
            db.execute("PRAGMA synchronous = OFF")
            yield db
            if compact:
                _remove_temporary(packed)
                db.execute("VACUUM INTO ?", [str(packed)])
                pause_point("packed")
                db.close()
                os.replace(packed, tmp)
            else:
                db.execute("PRAGMA synchronous = FULL")
                db.close()
            _keep_mode(target, tmp)
            _fsync(tmp)
            pause_point("before-rename")
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except (OSError, sqlite3.Error) as exc:
            _discard(db, tmp, packed)
            raise BuildError(f"{target}: could not write the new database ({_reason(exc)}); "
                             "kb.db is unchanged") from exc
        except BaseException:
            _discard(db, tmp, packed)
            raise


KB_TABLES = {"studies", "ingest_runs"}  # what makes an SQLite file a kb database


def _refuse_foreign(target: Path, action: str) -> None:
    """BuildError if ``target`` is another program's SQLite database: it has tables, none of them kb's.

    A file that is not SQLite at all is left to the caller: an import cannot read it, and a
    build may replace a damaged kb.db.
    """
    try:
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        try:
            names = {row[0] for row in conn.execute("select name from sqlite_master where type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error:
        return
    if names and not KB_TABLES <= names:
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        raise BuildError(f"{target}: not a kb database (its tables are {shown}); refusing to {action} it")


def _open_temporary(target: Path, tmp: Path, copy_existing: bool) -> sqlite_utils.Database:
    try:
        _remove_stale_temporaries(target)
        _remove_temporary(tmp)
        if copy_existing:
            _backup(target, tmp)
        db = sqlite_utils.Database(tmp)
        db.execute("select 1")
        return db
    except (OSError, sqlite3.Error) as exc:
        _remove_temporary(tmp)
        raise BuildError(f"{target.parent}: cannot write the new database there ({_reason(exc)})") from exc
    except BaseException:
        _remove_temporary(tmp)
        raise


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return "disk full"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _discard(db: sqlite_utils.Database, *temporaries: Path) -> None:
    with contextlib.suppress(sqlite3.Error):
        db.close()
    for tmp in temporaries:
        _remove_temporary(tmp)


# SQLite's files beside a database: its rollback journal and, in WAL mode, the log and shared memory.
SIDE_SUFFIXES = ("", "-journal", "-wal", "-shm")


def _remove_temporary(tmp: Path) -> None:
    for suffix in SIDE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{tmp}{suffix}")


def _remove_stale_temporaries(target: Path) -> None:
    """Temporary files (and their journals) of builds that were killed (their process is gone)."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.tmp-(\d+)(?:-packed)?(?:-journal|-wal|-shm)?")
    for path in target.parent.glob(f".{target.name}.tmp-*"):
        match = pattern.fullmatch(path.name)
        if match and not alive(int(match.group(1))):
            path.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _keep_mode(target: Path, tmp: Path) -> None:
    """The new file gets the permissions of the one it replaces (a private 0600 kb.db stays private)."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))


def _backup(source: Path, dest: Path) -> None:
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        src.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise BuildError(f"{source}: not a readable SQLite database ({exc})") from exc
    dst = sqlite3.connect(dest)
    try:
        with dst:
            src.backup(dst)
    finally:
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
