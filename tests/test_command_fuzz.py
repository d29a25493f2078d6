"""Seeded fuzzing of every command's own settings, as tests/test_config_fuzz.py fuzzes the
training config: the launchers' (stacked, joblib, SLURM, submitit local), the Optuna sweeper's
(its sampler, pruner and storage included), and the options of dllab-eval, dllab-landscape,
dllab-data and dllab-summary.

Each setting is listed here with values that must be refused and values that must pass (what the
docs promise, written independently of the rules in src/). Every setting gets its first bad
value and a few more drawn at random, in Hydra's override syntax where the command takes one:
a bad value must raise one line that starts with that field, and write nothing; a good one must
pass. The checks are called in-process (nothing trains); the command-line end of the same
checks is in tests/test_command_checks.py.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from dllab import landscape
from dllab.data_report import check_out
from dllab.errors import ConfigError
from dllab.evaluate import check_options
from dllab.runs.config import config_dir
from dllab.sweeps import settings, summary

CONF = Path(config_dir())
PARSER = OverridesParser.create()
SEED = 30
DRAWN = 3  # bad values drawn per setting, besides its first
WRONG_TYPES = ("abc", "[1,2]", "{a:1}", "true")


def parsed(value: str) -> Any:
    """A value as Hydra's override parser gives it to the config (``1.5`` a float, ``''`` a text)."""
    return PARSER.parse_override(f"k={value}").value()


def integer(low: int, null: bool = False, high: int | None = None) -> tuple[list[str], list[str]]:
    bad = [str(low - 1), str(low - 7), "1.5", "''", *WRONG_TYPES, *([] if null else ["null"])]
    bad += [str(high + 1)] if high is not None else []
    return bad, [str(low), str(low + 3), *(["null"] if null else [])]


def choice(*choices: str, null: bool = False) -> tuple[list[str], list[str]]:
    return ["nope", "1", "[1,2]", "''", *([] if null else ["null"])], [*choices, *(["null"] if null else [])]


def positive(null: bool = False) -> tuple[list[str], list[str]]:
    return ["0", "-1", "nan", "inf", *WRONG_TYPES, *([] if null else ["null"])], [
        "0.5",
        "3",
        *(["null"] if null else []),
    ]


BOOL = (["abc", "1", "null", "[1,2]"], ["true", "false"])
TEXT = (["''", "1", "[1,2]", "null"], ["abc"])
TEXT_OR_NULL = (["''", "1", "[1,2]"], ["abc", "null"])

STACKED = {"max_stack": (["0", "''", "1.5", "-3", "abc", "null", "true"], ["1", "64"])}
JOBLIB = {
    "n_jobs": (["0", "1.5", "''", *WRONG_TYPES, "null"], ["-1", "2"]),
    "backend": choice("loky", "threading", "multiprocessing", null=True),
    "prefer": choice("processes", "threads", null=True),
    "require": choice("sharedmem", null=True),
    "verbose": integer(0),
    "timeout": positive(null=True),
    "pre_dispatch": (["0", "-1", "abc", "''", "1.5", "[1,2]"], ["all", "2*n_jobs", "4", "n_jobs"]),
    "batch_size": (["0", "-1", "abc", "''", "1.5"], ["auto", "8"]),
    "temp_folder": TEXT_OR_NULL,
    "max_nbytes": (["-1", "abc", "1.5", "''", "[1,2]"], ["null", "1M", "0"]),
    "mmap_mode": choice("r+", "r", "w+", "c", null=True),
}
SUBMITIT = {
    "timeout_min": integer(1),
    "nodes": integer(1),
    "tasks_per_node": integer(1),
    "gpus_per_node": integer(0, null=True),
    "cpus_per_task": integer(1, null=True),
    "mem_gb": positive(null=True),
    "name": TEXT,
    "stderr_to_stdout": BOOL,
    "submitit_folder": TEXT,
}
SLURM = {
    **SUBMITIT,
    "partition": TEXT_OR_NULL,
    "signal_delay_s": integer(0),
    "max_num_timeout": integer(0),
    "array_parallelism": integer(1),
}
# the launchers' base settings (conf/hydra/launcher/*.yaml, their interpolations given plain values)
LAUNCHERS = {
    "stacked": (STACKED, {}),
    "joblib": (JOBLIB, {}),
    "slurm": (SLURM, {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0}),
    "submitit_local": (SUBMITIT, {"submitit_folder": "x/%j", "name": "train"}),
}
SWEEPER = {
    "direction": choice("maximize", "minimize"),
    "study_name": TEXT,
    "n_trials": integer(1),
    "n_jobs": integer(1),
    "heartbeat_interval": integer(1),
    "grace_period": (["0", "-1", "1.5", "abc", "60"], ["null", "121"]),  # more than heartbeat_interval (60)
    "storage": (
        ["sqlite://", "sqlite:///:memory:", "optuna.db", "mysql://a@b/c", "''", "sqlite:///{tmp}/nowhere/x.db"],
        ["null", "sqlite:///{tmp}/x.db", "journal://{tmp}/study.log"],
    ),
    "sampler.name": choice("tpe", "random"),
    "sampler.seed": (["-1", "4294967296", "1.5", "abc"], ["null", "0", "42"]),
    "sampler.n_startup_trials": integer(0),
    "pruner.enabled": BOOL,
    "pruner.n_startup_trials": integer(0),
    "pruner.n_warmup_steps": integer(0),
    "pruner.interval_steps": integer(1),
}
EVAL = {
    "accelerator": (["foo", "1", "null", "[1,2]", "true"], ["cpu", "auto"]),
    "verbose": (["2", "abc", "null", "[1,2]"], ["true", "false"]),
    "threads": (["0", "-1", "1.5", "abc", "true"], ["null", "1"]),
    "ckpt_path": (["''", "1", "[1,2]", "null"], ["run/checkpoints/best.ckpt"]),
}
# dllab-landscape's options as typed on its command line (key=value, no Hydra)
LANDSCAPE = {
    "two_param": {
        "seed": (["-1", "abc", "1.5", "4294967296"], ["0", "7"]),
        "resolution": (["1", "0", "abc", "1.5", "1000000"], ["2", "40"]),
        "steps": (["0", "-1", "abc", "1.5"], ["1", "10"]),
        "sgd_lr": (["0", "-1", "abc", "nan", "inf"], ["0.01", "1"]),
        "adam_lr": (["0", "-0.1", "abc", "nan"], ["0.1"]),
        "momentum": (["2", "1", "-0.1", "nan", "abc"], ["0", "0.5", "0.99"]),
        "threads": (["0", "-1", "abc", "1.5"], ["1"]),
        "out": (["{file}", "{file}/below"], ["{tmp}/pictures"]),
    },
    "ckpt": {
        "span": (["0", "-1", "abc", "inf"], ["0.5", "2"]),
        "split": (["foo", "TRAIN", ""], ["train", "val", "test"]),
        "resolution": (["1", "abc", "1000000"], ["3", "31"]),
    },
    "activations": {"out": (["{file}"], ["{tmp}/pictures"]), "threads": (["0", "x"], ["1"])},
}
DATA_OUT = (["x.pdf", "", "{dir}.png", "{file}/x.png", "x"], ["x.png", "{tmp}/new/x.PNG"])


def draws(bad: list[str], rng: random.Random) -> list[str]:
    """The first bad value (the rule's edge) and a few drawn at random."""
    return [bad[0], *rng.sample(bad[1:], min(DRAWN, len(bad) - 1))]


def filled(value: str, tmp: Path) -> str:
    return value.replace("{tmp}", str(tmp)).replace("{file}", str(tmp / "a_file")).replace("{dir}", str(tmp / "d"))


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working dir holding a file and a folder (for paths that must not be one), and nothing else."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    (tmp_path / "d.png").mkdir()
    return tmp_path


def contents(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def refused(check: Any, field: str, value: Any, root: Path) -> str:
    """The check's one line for ``field=value``; it must start with the field, and write nothing."""
    before = contents(root)
    with pytest.raises((ConfigError, ValueError)) as caught:
        check()
    message = str(caught.value)
    assert message.startswith(f"{field}="), (field, value, message)
    assert "\n" not in message, message
    assert contents(root) == before, (field, value)
    return message


def cases(table: dict[str, tuple[list[str], list[str]]], rng: random.Random) -> list[tuple[str, str, bool]]:
    """(setting, value, whether it must pass) for every setting of a table."""
    return [(key, v, False) for key, (bad, _) in table.items() for v in draws(bad, rng)] + [
        (key, v, True) for key, (_, good) in table.items() for v in good
    ]


def launcher_node(name: str, plain: dict[str, Any]) -> dict[str, Any]:
    node = OmegaConf.to_container(OmegaConf.load(CONF / "hydra" / "launcher" / f"{name}.yaml"), resolve=False)
    assert isinstance(node, dict)
    node.pop("defaults", None)
    return {**{str(k): v for k, v in node.items()}, **plain}


@pytest.mark.parametrize("name", list(LAUNCHERS))
def test_every_launcher_setting_is_checked(name: str, place: Path) -> None:
    rules, plain = LAUNCHERS[name]
    base = launcher_node(name, plain)
    settings.check_launcher(OmegaConf.create(base))  # the shipped settings pass
    rng = random.Random(f"{SEED}-{name}")
    for key, value, good in cases(rules, rng):
        node = OmegaConf.create({**base, key: parsed(value)})
        if good:
            settings.check_launcher(node)
        else:
            refused(lambda node=node: settings.check_launcher(node), f"hydra.launcher.{key}", value, place)


def test_every_launcher_of_conf_has_its_rules() -> None:
    """A launcher config added to conf/ without rules here and in dllab.sweeps.settings fails."""
    shipped = {p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml")}
    assert shipped == set(LAUNCHERS)
    for name in shipped:
        target = str(launcher_node(name, {})["_target_"])
        assert settings.launcher_rules(target), target


def sweeper_base() -> dict[str, Any]:
    from hydra_plugins.dllab_optuna_sweeper.dllab_optuna_sweeper import DllabOptunaSweeperConf

    base = OmegaConf.to_container(OmegaConf.structured(DllabOptunaSweeperConf))
    assert isinstance(base, dict)
    return {str(k): v for k, v in base.items() if k != "_target_"}


def with_setting(base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    settings_ = {**base, "sampler": dict(base["sampler"]), "pruner": dict(base["pruner"])}
    node, _, leaf = key.rpartition(".")
    (settings_[node] if node else settings_)[leaf] = value
    return settings_


def test_every_sweeper_setting_is_checked(place: Path) -> None:
    from dllab.sweeps.optuna_search import OptunaSearch

    base = sweeper_base()
    settings.check_sweeper(base)
    rng = random.Random(f"{SEED}-sweeper")
    for key, value, good in cases(SWEEPER, rng):
        chosen = with_setting(base, key, parsed(filled(value, place)))
        if good:
            settings.check_sweeper(chosen)
            OptunaSearch(**chosen)  # the sweeper's own constructor takes it, too
        else:
            refused(lambda chosen=chosen: settings.check_sweeper(chosen), f"hydra.sweeper.{key}", value, place)
            refused(lambda chosen=chosen: OptunaSearch(**chosen), f"hydra.sweeper.{key}", value, place)


def eval_config(**options: Any) -> DictConfig:
    cfg = OmegaConf.load(CONF / "eval.yaml")
    assert isinstance(cfg, DictConfig)
    for key in ("defaults", "hydra"):
        cfg.pop(key)
    cfg.ckpt_path = "run/checkpoints/best.ckpt"
    for key, value in options.items():
        cfg[key] = value
    return cfg


def test_every_eval_option_is_checked(place: Path) -> None:
    check_options(eval_config())
    rng = random.Random(f"{SEED}-eval")
    for key, value, good in cases(EVAL, rng):
        cfg = eval_config(**{key: parsed(value)})
        if good:
            check_options(cfg)
        elif key == "ckpt_path" and not parsed(value):  # '' or null: the required option missing
            with pytest.raises(ConfigError, match=r"^ckpt_path: required"):
                check_options(cfg)
        else:
            refused(lambda cfg=cfg: check_options(cfg), key, value, place)
    with pytest.raises(ConfigError, match=r"^data: not an option of dllab-eval"):
        check_options(eval_config(data="digits"))


@pytest.mark.parametrize("command", list(LANDSCAPE))
def test_every_landscape_option_is_checked(command: str, place: Path) -> None:
    rng = random.Random(f"{SEED}-{command}")
    base = {"ckpt_path": "run/checkpoints/best.ckpt"} if command == "ckpt" else {}
    landscape.options_of(command, base)
    for key, value, good in cases(LANDSCAPE[command], rng):
        options = {**base, key: filled(value, place)}
        if good:
            landscape.options_of(command, options)
        else:
            refused(lambda options=options: landscape.options_of(command, options), key, value, place)


def test_every_data_out_is_checked(place: Path) -> None:
    bad, good = DATA_OUT
    for value in bad:
        refused(lambda value=value: check_out(filled(value, place)), "out", value, place)
    for value in good:
        check_out(filled(value, place))
    check_out(None)  # the default picture path


def fake_sweep(root: Path, jobs: int = 2) -> Path:
    """A sweep dir as a finished basic sweep leaves it (no TensorBoard events)."""
    sweep = root / "sweep"
    for job in range(jobs):
        (sweep / str(job) / ".hydra").mkdir(parents=True)
        (sweep / str(job) / ".hydra" / "overrides.yaml").write_text(f"- seed={job}\n")
        metrics = f'{{"status": "completed", "optimized_metric": "val/acc", "objective": 0.{job + 5}}}'
        (sweep / str(job) / "metrics.json").write_text(metrics)
    return sweep


def test_every_summary_argument_is_checked(place: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (place / "empty").mkdir()
    for value, why in (("nowhere", "not a directory"), ("a_file", "not a directory"), ("empty", "no job dirs")):
        before = contents(place)
        with pytest.raises(SystemExit) as caught:
            summary.main([value])
        assert caught.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: sweep_dir={value}: {why}") and "\n" not in err, err
        assert contents(place) == before
    summary.main([str(fake_sweep(place))])
    out = capsys.readouterr().out
    assert "sweep: 2 jobs, 0 failed" in out and (place / "sweep" / "summary.csv").is_file()


def test_the_fuzz_covers_every_setting_with_a_rule() -> None:
    """The tables above name every setting dllab.sweeps.settings has a rule for."""
    for name, (rules, _) in LAUNCHERS.items():
        target = str(launcher_node(name, {})["_target_"])
        assert set(settings.launcher_rules(target)) <= set(rules), name
    sweeper = (
        set(settings.OPTUNA) | {f"sampler.{k}" for k in settings.SAMPLER} | {f"pruner.{k}" for k in settings.PRUNER}
    )
    assert sweeper <= set(SWEEPER)
    assert os.environ.get("HYDRA_FULL_ERROR") != "1"  # the checks' one-line errors are what is tested
