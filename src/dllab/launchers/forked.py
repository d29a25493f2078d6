"""Jobs written side by side by forked copies of the sweep's process.

Once a stack has trained, writing each of its jobs (TensorBoard events, checkpoints, the test,
the pictures, ``metrics.json``) is the larger part of a small sweep, and it runs on one core.
A forked copy already holds every job's model, data and results (copy-on-write, nothing is
pickled), so :func:`map_forked` splits the jobs between this process and ``workers - 1``
children, each writing its share, and hands the results back in order. A child that fails or
dies leaves its jobs to this process, which writes them itself. Where forking is unsafe (CUDA
initialised, no ``fork`` on the platform) everything runs here, one job after another.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def can_fork() -> bool:
    """Whether a child forked now can write (no CUDA context, which a fork cannot carry)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    torch = sys.modules.get("torch")
    return torch is None or not torch.cuda.is_initialized()


def map_forked(function: Callable[[int], T], items: Sequence[int], workers: int) -> dict[int, T]:
    """``{item: function(item)}``, the items shared round-robin between this process and up to
    ``workers - 1`` forked children. Each child ignores Ctrl-C (its share is a few files and
    finishes) and sends its results back pickled; anything a child did not send back is done
    here. A KeyboardInterrupt here waits for the children before it goes on."""
    workers = min(workers, len(items))
    if workers <= 1 or not can_fork():
        return {item: function(item) for item in items}
    shares = [list(items[k::workers]) for k in range(workers)]
    context = multiprocessing.get_context("fork")
    children = []
    for share in shares[1:]:
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_child, args=(function, share, send), daemon=False)
        child.start()
        send.close()
        children.append((child, receive, share))
    results: dict[int, T] = {}
    try:
        for item in shares[0]:
            results[item] = function(item)
    finally:
        for child, receive, _share in children:
            sent: dict[int, T] = {}
            try:
                sent = pickle.loads(receive.recv_bytes())
            except (EOFError, OSError, pickle.UnpicklingError) as err:
                log.debug(f"a writer process sent nothing back ({type(err).__name__}); its jobs are written here")
            receive.close()
            child.join()
            results.update(sent)
    for _, _, share in children:
        for item in share:
            if item not in results:  # the child failed or died before this one
                results[item] = function(item)
    return {item: results[item] for item in items}


def _child(function: Callable[[int], Any], share: list[int], send: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt stops
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)  # the parent's thread pool did not come along: never ask for one
    results: dict[int, Any] = {}
    try:
        for item in share:
            results[item] = function(item)
    except BaseException as err:  # the parent writes what is left, and reports the error itself
        log.debug(f"a writer process stopped: {type(err).__name__}: {err}")
    try:
        send.send_bytes(pickle.dumps(results))
    except Exception as err:  # results that do not pickle: the parent writes them again
        log.debug(f"a writer process could not send its results: {type(err).__name__}: {err}")
    send.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
