"""Where an Optuna study lives (``hydra.sweeper.storage``), and the lock its sweepers share.

Three kinds: a SQLite file (one machine's disk), a PostgreSQL server (many nodes) and
Optuna's journal file (a shared file system such as NFS, where SQLite's locking breaks).
The URL is checked before anything is made, so a typo costs one line, not a traceback;
the storage object is built here only, by the sweeper and by the pruning callback in
each job alike. Database storages get Optuna's heartbeat, which lets any sweeper tell a
trial whose sweeper stopped from a live one on another host.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dllab.errors import ConfigError

FIELD = "hydra.sweeper.storage"
FORMS = (
    "give sqlite:///<file>, postgresql://<user>@<host>[:<port>]/<db> or journal://<file>, "
    "or null for <sweep dir>/optuna.db"
)
JOURNAL = "journal://"
CONNECT_TIMEOUT_S = 10  # a server that does not answer: an error, not a hang


def kind(storage: str) -> str:
    """``sqlite``, ``postgresql`` or ``journal`` (the storage is checked already)."""
    if storage.startswith(JOURNAL):
        return "journal"
    from sqlalchemy.engine import make_url

    return make_url(storage).get_backend_name()


def journal_path(storage: str) -> Path:
    return Path(storage[len(JOURNAL) :]).absolute()


def check_storage(storage: str) -> None:
    """A storage URL of a known kind, whose folder exists and whose driver is installed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    if storage.startswith(JOURNAL):
        file = journal_path(storage)
        if not storage[len(JOURNAL) :] or file.is_dir():
            raise ConfigError(f"{FIELD}={storage}: journal:// needs a file, e.g. journal:///shared/study.log")
        if not file.parent.is_dir():
            raise ConfigError(f"{FIELD}={storage}: no such folder {file.parent}; make it first")
        check_writable(storage, file)
        return
    try:
        url = make_url(storage)
    except ArgumentError:
        raise ConfigError(f"{FIELD}={storage}: not a storage URL; {FORMS}") from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"{FIELD}={storage}: unknown kind {url.drivername}://; {FORMS}")
    try:
        url.get_dialect().import_dbapi()
    except (ImportError, NoSuchModuleError):
        hint = ""
        if backend == "postgresql":  # the extra installs psycopg 3, SQLAlchemy's postgresql:// driver
            ours = url.drivername in ("postgresql", "postgresql+psycopg")
            hint = " (pip install 'dllab[postgres]')" if ours else " (use postgresql://; pip install 'dllab[postgres]')"
        raise ConfigError(f"{FIELD}={storage}: no driver {url.drivername} installed{hint}") from None
    if backend == "sqlite" and (not url.database or url.database == ":memory:"):
        raise ConfigError(
            f"{FIELD}={storage}: an in-memory database lives in one process, and the jobs (other processes) "
            "cannot share it; give sqlite:///<file>, or null for <sweep dir>/optuna.db"
        )
    if backend == "sqlite":
        file = Path(str(url.database)).absolute()
        if not file.parent.is_dir():
            raise ConfigError(f"{FIELD}={storage}: no such folder {file.parent}; make it first")
        check_writable(storage, file)


def check_writable(storage: str, file: Path) -> None:
    """A storage file the sweepers can write, with its lock file beside it (a read-only mount:
    one line, not an OSError on the lock)."""
    for path in (file, file.parent) if file.exists() else (file.parent,):
        if not os.access(path, os.W_OK):
            why = "read-only file system" if read_only(path) else "no permission to write"
            raise ConfigError(f"{FIELD}={storage}: {path}: cannot write there ({why}); give a writable place")


def read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def make_storage(storage: str, heartbeat_interval: int | None = None, grace_period: int | None = None) -> Any:
    """Optuna's storage object for the URL; a server that cannot be reached is a ConfigError
    naming the reason. ``heartbeat_interval`` only matters to the sweeper, which records them."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    if storage.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(journal_path(storage))))
    engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}} if kind(storage) == "postgresql" else {}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9; they are what we need
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                storage, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval, grace_period=grace_period
            )
    except (ImportError, SQLAlchemyError) as err:  # no driver, server not there, not a database
        raise ConfigError(f"{FIELD}={storage}: cannot open it ({reason(err)})") from err


def reason(err: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's wrapping."""
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def lock_key(name: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock``, the same in every process."""
    return int.from_bytes(hashlib.blake2b(f"dllab optuna {name}".encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def storage_lock(storage: str, sweep_dir: Path, *names: str) -> Iterator[None]:
    """An exclusive lock shared by every sweeper on this storage, wherever it runs; released on
    exit and, since the system holds it for the process, also when the process dies. PostgreSQL:
    the server's advisory locks for ``names`` (a study's name: sweepers of other studies go on),
    taken in order; SQLite: ``<file>.lock``; journal: ``<file>.sweep.lock`` (``<file>.lock`` is
    Optuna's own); else ``optuna.lock`` in the sweep dir. Files lock the whole storage."""
    storage_kind = kind(storage)
    if storage_kind == "postgresql":
        with advisory_lock(storage, [lock_key(name) for name in names]):
            yield
        return
    if storage_kind == "journal":
        path = Path(f"{journal_path(storage)}.sweep.lock")
    else:
        from sqlalchemy.engine import make_url

        database = make_url(storage).database
        path = Path(f"{database}.lock") if database and database != ":memory:" else sweep_dir / "optuna.lock"
    try:
        lock = path.open("a")
    except OSError as err:  # a place made read-only or full since the check
        raise ConfigError(f"{FIELD}={storage}: {path}: cannot write the lock file ({err.strerror})") from err
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also if the process dies
        yield


@contextmanager
def advisory_lock(storage: str, keys: list[int]) -> Iterator[None]:
    """PostgreSQL's session advisory lock on a connection of its own (which the server releases
    if this process dies); waits for another sweeper holding it."""
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(storage, poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    try:
        connection = engine.connect()
    except SQLAlchemyError as err:
        raise ConfigError(f"{FIELD}={storage}: cannot open it ({reason(err)})") from err
    try:
        for key in keys:
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock_all()"))
    finally:
        connection.close()
        engine.dispose()
