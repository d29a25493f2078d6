"""Where a run's files go, decided by resolvers in conf/hydra/default.yaml before Hydra makes
any dir: a run id per process, ``resume=`` running in its own dir, the log dir checked writable
with space free, ``task_name`` kept a plain folder under it, and a dir that holds another run
left untouched (:func:`dllab.train.run` refuses it)."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dllab.errors import ConfigError

_RUN_ID = uuid.uuid4().hex[:6]
# cached: every job of a multirun (also in joblib workers) gets the id its sweep dir was made with
OmegaConf.register_new_resolver("dllab.run_id", lambda: _RUN_ID, replace=True, use_cache=True)
# resume=<run dir> continues in that dir, and leaves its .hydra/ (the original overrides) alone.
PREEXISTING: set[str] = set()  # resume dirs that existed before Hydra made the run dir


def _run_dir(resume: str | None, new: str) -> str:
    if resume and Path(resume).exists() and not Path(resume).is_dir():  # Hydra would try to make it a dir
        print(
            f"error: resume={resume}: a file, not a run dir; give a dir under logs/*/runs/ "
            "(a checkpoint file goes to ckpt_path=)",
            file=sys.stderr,
        )
        sys.exit(2)
    if resume and Path(resume).exists():
        PREEXISTING.add(str(Path(resume)))
    return resume or new


TAKEN: list[str] = []  # a run dir that already held another run when Hydra made this one's


def _hydra_subdir(resume: str | None, output_dir: str | None = None) -> str | None:
    """Hydra's own files of the run (.hydra/), resolved just before Hydra writes them: none
    for a resume (the run's own stay), and none in a dir that holds another run, which
    :func:`run` then refuses (two runs given one ``hydra.run.dir`` must not mix)."""
    if resume:
        return None
    if output_dir and holds_a_run(Path(output_dir)):
        TAKEN.append(output_dir)
        return None
    return ".hydra"


def holds_a_run(directory: Path) -> bool:
    return any((directory / name).exists() for name in ("config.yaml", "metrics.json", "checkpoints", ".hydra"))


_WRITABLE: dict[str, str] = {}


def _writable(log_dir: str, min_free_mb: Any = 0) -> str:
    """``paths.log_dir``, checked once before Hydra makes a run or sweep dir in it: it can be
    made and written to, with ``paths.min_free_mb`` free; else one line and exit 2, before
    anything is written (a read-only or full disk would otherwise fail mid-run)."""
    if log_dir in _WRITABLE:
        return log_dir
    try:
        min_free_mb = float(min_free_mb or 0)
    except (TypeError, ValueError):
        print(f"error: paths.min_free_mb={min_free_mb!r}: must be a number >= 0 (megabytes)", file=sys.stderr)
        sys.exit(2)
    path = Path(log_dir).absolute()
    try:
        free_mb = _probe(path)
    except OSError as err:
        print(
            f"error: paths.log_dir={log_dir}: cannot write there ({err.strerror or err}); "
            "set DLLAB_LOG_DIR or paths.log_dir to a writable dir",
            file=sys.stderr,
        )
        sys.exit(2)
    if free_mb < min_free_mb:
        print(
            f"error: paths.log_dir={log_dir}: only {free_mb:.0f} MB free on its disk, below "
            f"paths.min_free_mb={min_free_mb:g}; free some space, "
            "or set DLLAB_LOG_DIR or paths.log_dir elsewhere",
            file=sys.stderr,
        )
        sys.exit(2)
    _WRITABLE[log_dir] = log_dir
    return log_dir


def _probe(path: Path) -> float:
    """Make ``path``, write a file in it, and return the MB free there; the folders it made are
    removed again."""
    import tempfile

    for attempt in range(5):
        made = [p for p in (path, *path.parents) if not p.exists()]
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path) as probe:
                probe.write(b"dllab")
                probe.flush()
                os.fsync(probe.fileno())
        except FileNotFoundError:
            # another dllab-train started at the same moment removed the folders its probe made
            # before this one's probe got into them: probe again
            if attempt == 4:
                raise
            continue
        free_mb = shutil.disk_usage(path).free / 2**20
        for folder in made:  # Hydra makes them again for the run; an error leaves nothing behind
            with suppress(OSError):  # not empty: another run started meanwhile and uses it
                folder.rmdir()
        return free_mb
    raise AssertionError("unreachable")


def _folder(name: Any, *, _root_: DictConfig) -> Any:
    """``task_name`` in the run and sweep dir paths, checked before Hydra makes the dir: a name
    with ``/`` or ``..`` would put the run outside ``paths.log_dir`` (one line and exit 2)."""
    from dllab.checks import check_task_name

    try:
        check_task_name(_root_)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return name


OmegaConf.register_new_resolver("dllab.folder", _folder, replace=True)
OmegaConf.register_new_resolver("dllab.run_dir", _run_dir, replace=True)
OmegaConf.register_new_resolver("dllab.hydra_subdir", _hydra_subdir, replace=True)
OmegaConf.register_new_resolver("dllab.writable", _writable, replace=True)
