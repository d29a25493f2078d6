"""dllab.launchers.forked: jobs written side by side by forked copies of this process, their
results handed back in order, and what a child could not do done here."""

from __future__ import annotations

import os

import pytest

from dllab.launchers import forked


def test_every_item_is_done_once_and_comes_back_in_order(tmp_path) -> None:
    def write(item: int) -> tuple[int, int]:
        (tmp_path / f"{item}.{os.getpid()}").write_text("done")
        return item * item, os.getpid()

    results = forked.map_forked(write, [3, 1, 4, 0, 2], workers=3)
    assert list(results) == [3, 1, 4, 0, 2] and [v for v, _ in results.values()] == [9, 1, 16, 0, 4]
    pids = {pid for _, pid in results.values()}
    assert len(pids) == 3 and os.getpid() in pids  # this process wrote its share, two children theirs
    assert sorted(int(p.name.split(".")[0]) for p in tmp_path.iterdir()) == [0, 1, 2, 3, 4]  # each once


def test_what_a_child_fails_at_or_dies_in_is_done_here(tmp_path) -> None:
    parent = os.getpid()

    def write(item: int) -> int:
        if os.getpid() != parent and item == 1:
            raise RuntimeError("a child that fails")
        if os.getpid() != parent and item == 2:
            os._exit(9)  # a child that dies (killed for memory, say)
        return item + 10

    assert forked.map_forked(write, [0, 1, 2, 3, 4, 5], workers=3) == {0: 10, 1: 11, 2: 12, 3: 13, 4: 14, 5: 15}


def test_one_worker_or_no_fork_runs_everything_here(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = os.getpid()
    assert forked.map_forked(lambda i: os.getpid(), [0, 1, 2], workers=1) == {0: parent, 1: parent, 2: parent}
    monkeypatch.setattr(forked, "can_fork", lambda: False)
    assert forked.map_forked(lambda i: os.getpid(), [0, 1, 2], workers=4) == {0: parent, 1: parent, 2: parent}
