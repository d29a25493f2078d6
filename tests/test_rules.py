"""The Trainer-free rules the solo run and each model of a stack share (dllab.training.rules)."""

from __future__ import annotations

import math

import pytest

from dllab.training.rules import BestRule, diverged_message, epoch_loss, micro_batches


def test_micro_batches_weigh_the_last_smaller_group_exactly() -> None:
    # 10 samples, micro-batches of 3, 2 per step: groups [0, 6) and [6, 10)
    plan = list(micro_batches(10, 3, 2))
    assert plan == [(0, 3, 0.5, False), (3, 6, 0.5, True), (6, 9, 0.75, False), (9, 10, 0.25, True)]
    assert sum(1 for *_, ends in plan if ends) == 2  # optimizer steps
    assert list(micro_batches(4, 8, 1)) == [(0, 4, None, True)]  # a batch larger than the split
    assert list(micro_batches(0, 8, 1)) == []


@pytest.mark.parametrize(("samples", "batch", "accumulate"), [(100, 7, 3), (64, 8, 4), (5, 2, 5)])
def test_micro_batches_cover_every_sample_once_with_weights_summing_to_one(
    samples: int, batch: int, accumulate: int
) -> None:
    plan = list(micro_batches(samples, batch, accumulate))
    covered = [i for first, last, *_ in plan for i in range(first, last)]
    assert covered == list(range(samples))
    group: list[float] = []
    for first, last, weight, ends in plan:
        group.append(1.0 if weight is None else weight)
        assert last - first <= batch
        if ends:
            assert math.isclose(sum(group), 1.0)  # each micro-batch weighs its share of the group
            assert len(group) <= accumulate
            group = []
    assert group == []


def test_epoch_loss_weighs_each_micro_batch_by_its_size() -> None:
    assert epoch_loss([1.0, 4.0], [3, 1]) == (7.0, 4.0)
    with pytest.raises(ValueError):
        epoch_loss([1.0], [3, 1])


def test_best_rule_keeps_a_better_score_or_a_tie_with_a_lower_tie_breaker() -> None:
    rule = BestRule.of("val/acc", "max", "val/loss")
    assert rule.tie_breaker == "val/loss"
    assert rule.better(0.9, 0.8) and not rule.better(0.8, 0.8)
    assert rule.wins_tie(0.8, 0.1, 0.8, 0.2) and not rule.wins_tie(0.8, 0.3, 0.8, 0.2)
    assert not rule.wins_tie(0.9, 0.1, 0.8, 0.2)  # not a tie: better() decides
    assert rule.score(math.nan) == -math.inf  # NaN is the worst, as ModelCheckpoint counts it
    assert BestRule.of("val/loss", "min", None).score(math.nan) == math.inf
    assert rule.tie_value({"val/loss": 0.5}) == 0.5
    assert rule.tie_value({"val/loss": math.nan}) == math.inf == rule.tie_value({})


def test_best_rule_breaks_no_ties_on_its_own_monitor_or_a_running_best() -> None:
    assert BestRule.of("val/loss", "min", "val/loss").tie_breaker is None
    running = BestRule.of("val/acc_best", "max", "val/loss")
    assert running.tie_breaker is None
    assert not running.wins_tie(0.8, 0.1, 0.8, 0.2)


def test_the_best_checkpoint_applies_the_rule() -> None:
    from dllab.training.checkpointing import BestCheckpoint

    checkpoint = BestCheckpoint(dirpath="unused", monitor="val/acc", mode="max")
    assert checkpoint.rule == BestRule("val/acc", "max", "val/loss")
    assert checkpoint.tie_breaker == "val/loss"


def test_diverged_message_names_the_first_bad_step_and_the_learning_rate() -> None:
    message = diverged_message(math.nan, [0.5, 0.4, math.inf, math.nan], 10, 2, 3, 0.5)
    expected = "training diverged: loss is inf at optimizer step 12 (epoch 3); try a smaller optimizer.lr than 0.5"
    assert message == expected
    elsewhere = diverged_message(math.nan, [0.5, 0.4, 0.3], 10, 2, 3, 0.5)
    assert "on another process by optimizer step 12" in elsewhere
