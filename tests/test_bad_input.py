"""Bad input, table-driven, across config, data and environment: one clear line naming the
field, the value and what is allowed, a non-zero exit, no traceback, and no run dir left
that looks successful."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import run_cli, run_dirs
from tests.makedata import gray_png

BAD_INPUTS = [
    (["model.activation=swish"], "model.activation='swish': unknown; choose one of relu, sigmoid, tanh"),
    (["loss.name=focal"], "loss.name='focal': unknown loss; choose one of auto, cross_entropy, hinge"),
    (["loss.name=focal"], "or give loss._target_"),
    (["loss=hinge", "data=diabetes"], "loss=hinge does not fit data=diabetes, a regression task; valid"),
    (["loss=l1"], "loss=l1 does not fit data=digits, a classification task; valid for classification"),
    (["data.name=mnist2"], "data.name='mnist2': unknown scikit-learn set; choose one of iris, wine"),
    (
        ["+data.num_workers=0"],
        "data.num_workers: unknown key of data=digits; valid: name (dllab.data.sklearn_sets.SklearnSet), batch_size",
    ),
    (["data._target_=my_data.Nope"], "data._target_=my_data.Nope: cannot import my_data.Nope (No module named"),
    (["data._target_=dllab.catalog.AUTO"], "data._target_=dllab.catalog.AUTO: not a subclass of dllab.data.source"),
    (["model.hidden_sizes=[64,0]"], "model.hidden_sizes=[64, 0]: must be a list of positive integers"),
    (["data=circle", "data.n_samples=-5"], "data.n_samples=-5: must be an integer >= 10"),
    (["data.batch_size=0"], "data.batch_size=0: must be a positive integer"),
    (
        ["callbacks.model_checkpoint.save_last=true"],
        "callbacks.model_checkpoint.save_last=True: not with write_every_seconds > 0",
    ),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1: must be a positive number"),
    (["optimizer.lr=0"], "optimizer.lr=0: must be a positive number"),
    (["data.val_fraction=1.5"], "data.val_fraction=1.5: must be a fraction in (0, 1)"),
    (
        ["data.val_fraction=0.5", "data.test_fraction=0.5"],
        "data.val_fraction + data.test_fraction = 1: leaves no",
    ),
    (["data=circle", "data.noise=0.9"], "data.noise=0.9: must be a number in [0, 0.5]"),
    (["data=circle", "data.features=[x1,x3]"], "data.features='x3': unknown feature; choose from x1, x2"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs='abc': must be an integer >= -1"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0: must be a positive integer"),
    (["trainer=gpu"], "trainer.accelerator=gpu: no CUDA GPU on this machine; use trainer=cpu"),
    (["trainer=mps"], "trainer.accelerator=mps: Apple MPS needs a Mac with Apple silicon"),
    (
        ["optimized_metric=val/auc"],
        "optimized_metric=val/auc: not logged; choose one of val/acc",
    ),
    (["model.dropout=1.5"], "model.dropout=1.5: must be a number in [0, 1)"),
    (["data.batch_size=abc"], "data.batch_size='abc': must be a positive integer"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1: must be null or a positive number"),
    (["trainer.precision=8"], "trainer.precision=8: choose one of 32-true, 32, 64-true"),
    (["seed=-1"], "seed=-1: must be a non-negative integer"),
    (["loss=cross_entropy", "loss.label_smoothing=2"], "loss.label_smoothing=2: must be a number in [0, 1)"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay=-1: must be a number >= 0"),
    (["data.test_fraction=0"], "data.test_fraction=0: must be a fraction in (0, 1)"),
    (["data=circle", "data.features=[]"], "data.features=[]: must be a non-empty list of x1, x2"),
    (["trainer.devices=0"], "trainer.devices=0: must be 'auto', a positive integer or a list of device ids"),
    (["trainer.max_epochs=-1", "trainer.max_steps=-1"], "trainer.max_epochs=-1 and trainer.max_steps=-1: set at"),
    (["data=iris", "data.batch_size=200"], "data.batch_size=200: larger than the training split (105 samples)"),
    (["data=csv", "data.path={tmp}/nan.csv", "data.target=label"], "missing values in columns b (1 rows)"),
    (["data=csv", "data.path={tmp}/inf.csv", "data.target=label"], "data=csv: 1 rows hold NaN or inf values"),
    (
        ["data=csv", "data.path={tmp}/nan.csv", "data.target=y"],
        "data.target=y: no such column in {tmp}/nan.csv; columns found: a, b, label",
    ),
    (["data=csv", "data.path={tmp}/none.csv", "data.target=y"], "none.csv: no such file"),
    (["data=csv"], "data.path: required; set data.path=FILE"),
    (["data=image_folder", "data.root={tmp}/nowhere"], "nowhere: no such folder (one sub-folder per class"),
    (["data=image_folder", "data.root={tmp}/images"], "bad.png"),
    # data files (issues 15, 18)
    (
        ["data=csv", "data.path={tmp}/one_class.csv", "data.target=label"],
        "data.target=label: holds one class (x) in all 30 rows; classification needs 2 or more classes",
    ),
    (
        ["data=csv", "data.path={tmp}/ids.csv", "data.target=label"],
        "column id (30 distinct values in 30 rows, an ID or free text: one-hot encoding would make a feature of each)"
        " identifies rows rather than describing them; drop it with data.drop_columns=[id]",
    ),
    (
        ["data=csv", "data.path={tmp}/numbered.csv", "data.target=label"],
        "column n (the row number 1..30: it tells only where a row sits in the file, and leaks the label",
    ),
    (
        ["data=csv", "data.path={tmp}/ids.csv", "data.target=label", "data.drop_columns=[nope]"],
        "data.drop_columns=['nope']: no column nope in {tmp}/ids.csv; columns: id, a, label",
    ),
    (
        ["data=csv", "data.path={tmp}/twice.csv", "data.target=label"],
        "data.path={tmp}/twice.csv: duplicate column names in the header: label (columns 2 and 3);",
    ),
    (
        ["data=csv", "data.path={tmp}/query.csv", "data.target=label"],
        "data.path={tmp}/query.csv: column a is numbers but for 1 of 30 cells: '?' (line 8); correct those cells in "
        "the file, or read them as missing with data.na_values=['?'] and data.missing=drop (or mean)",
    ),
    (
        ["data=image_folder", "data.root={tmp}/huge"],
        "data.root={tmp}/huge: 1 image cannot be read: {tmp}/huge/dogs/huge.png (15000x15000 = 225000000 pixels; "
        "Pillow opens at most 178956970, a guard against decompression bombs: resize it)",
    ),
    (["data=iris", "augmentation=light"], "augmentation=light: data=iris holds no images"),
    # sizes that would fail late, and a table without rows (issue 30)
    (
        ["model.hidden_sizes=[1000000,1000000]"],
        "model.hidden_sizes=[1000000, 1000000]: needs at least 1e+12 parameters x 4 bytes x 4 (weights, gradients, "
        "2 Adam states each) = 16 TB, more than this machine's",
    ),
    (
        ["data=image_folder", "data.root={tmp}/images", "data.image_size=100000"],
        "data.image_size=100000: needs at least 13 images x 100000x100000x3 values x 4 bytes x 2",
    ),
    (
        ["data=csv", "data.path={tmp}/empty.csv", "data.target=label"],
        "data.path={tmp}/empty.csv: holds a header (a, b, label) and no rows; a table needs data rows",
    ),
    (["resume={tmp}/no_run"], "resume={tmp}/no_run: not a dllab run dir (no config.yaml)"),
    # the log dir, checked before Hydra makes the run dir (issue 18)
    (["paths.log_dir={tmp}/nan.csv/logs"], "paths.log_dir={tmp}/nan.csv/logs: cannot write there (Not a directory)"),
    (["paths.min_free_mb=1e12"], "MB free on its disk, below paths.min_free_mb=1e+12; free some space"),
    (["model=cnn", "data=circle"], "model=cnn: data=circle holds no images; a CNN needs image data (digits"),
    (["model=cnn", "model.channels=[16,0]"], "model.channels=[16, 0]: must be a non-empty list of positive integers"),
    (["model=cnn", "model.pooling=median"], "model.pooling='median': unknown; choose one of max, avg, none"),
    (["+model.width=3"], "model.width=3: unknown key of MLP; its keys: hidden_sizes, activation, dropout, batch_norm"),
    (["model._target_=my_nets.Nope"], "model._target_=my_nets.Nope: cannot import my_nets.Nope (No module named"),
    (["model._target_=torch.optim.SGD"], "model._target_=torch.optim.SGD: not a subclass of torch.nn"),
    (["loss=hinge", "loss._target_=torch.nn.CrossEntropyLoss"], "loss.name=hinge is torch.nn.MultiMarginLoss"),
    (["module=my_modules.Nope"], "module=my_modules.Nope: cannot import my_modules.Nope (No module named"),
    # config fields (issues 15, 18)
    (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size=0: must be an integer >= 1 (epochs between"),
    (["scheduler=cosine", "scheduler.T_max=0"], "scheduler.T_max=0: must be an integer >= 1 (epochs from optimizer.lr"),
    (["scheduler=plateau", "scheduler.mode=foo"], "scheduler.mode='foo': unknown; choose one of min, max"),
    (["scheduler=plateau", "scheduler.factor=2"], "scheduler.factor=2: must be a number in (0, 1)"),
    (
        ["scheduler=step", "scheduler.step_size=1", "scheduler.gamma=-1"],
        "scheduler.gamma=-1: must be a number in (0, 1]",
    ),
    (
        ["scheduler=step", "+scheduler.monitor=val/acc"],
        "scheduler.monitor='val/acc': unknown key of StepLR; its keys: step_size, gamma",
    ),
    (
        ["scheduler=plateau", "scheduler.monitor=val_loss"],
        "scheduler.monitor=val_loss: not logged; choose one of val/acc, val/f1, val/loss",
    ),
    (["optimizer.betas=[2,3]"], "optimizer.betas=[2, 3]: must be a list of two numbers in [0, 1), e.g. [0.9,0.999]"),
    (["optimizer.betas=abc"], "optimizer.betas='abc': must be a list of two numbers in [0, 1)"),
    (["optimizer.betas=[0.9]"], "optimizer.betas=[0.9]: must be a list of two numbers in [0, 1)"),
    (
        ["optimizer=rmsprop", "+optimizer.betas=[0.9,0.99]"],
        "optimizer.betas=[0.9, 0.99]: unknown key of RMSprop; its keys: lr, alpha",
    ),
    (["seed=99999999999999"], "seed=99999999999999: must be a non-negative integer up to 4294967295"),
    (["data.seed=-7"], "data.seed=-7: must be a non-negative integer up to 4294967295"),
    (
        ["model.batch_norm=true", "data.batch_size=1"],
        "data.batch_size=1: model.batch_norm=true needs training batches of 2 or more",
    ),
    (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch=0: must be an integer >= 1"),
    (["trainer.num_sanity_val_steps=abc"], "trainer.num_sanity_val_steps='abc': must be an integer >= -1"),
    (["trainer.fast_dev_run=abc"], "trainer.fast_dev_run='abc': must be true, false or a number of batches"),
    (["trainer.strategy=foo"], "trainer.strategy='foo': unknown or not supported by dllab; choose one of auto, ddp"),
    (
        ["trainer.strategy=ddp_spawn"],
        "trainer.strategy='ddp_spawn': its workers are started by spawn or fork and the run",
    ),
    (["trainer.num_nodes=0"], "trainer.num_nodes=0: must be an integer >= 1"),
    (
        ["trainer.accelerator=cpu", "trainer.devices=[5]"],
        "trainer.devices=[5]: a list of device ids is for GPUs; on the CPU",
    ),
    (["trainer.accelerator=cpu", "trainer.devices=100000"], "trainer.devices=100000: more processes than the"),
    (
        ["trainer.limit_train_batches=0"],
        "trainer.limit_train_batches=0: must be a fraction in (0, 1] or a positive number",
    ),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0: must be an integer >= -1 (-1: no epoch limit), not 0"),
    (["+trainer.val_check_interval=0.5"], "trainer.val_check_interval=0.5: dllab validates once per epoch"),
    (["+trainer.foo=1"], "trainer.foo=1: unknown key of Lightning's Trainer; its keys: accelerator, strategy"),
    (
        ["callbacks.early_stopping.monitor=val/foo"],
        "callbacks.early_stopping.monitor=val/foo: not logged; choose one of",
    ),
    (["callbacks.model_checkpoint.monitor=foo"], "callbacks.model_checkpoint.monitor=foo: not logged; choose one of"),
    (["callbacks.model_checkpoint.mode=foo"], "callbacks.model_checkpoint.mode='foo': unknown; choose one of min, max"),
    (["callbacks.model_checkpoint.mode=min"], "callbacks.model_checkpoint.mode=min: val/acc is maximized; use"),
    (["plots.dpi=20000"], "plots.dpi=20000: must be an integer in [20, 600] (dots per inch)"),
    (["task_name=../../escaped"], "task_name='../../escaped': must be a plain folder name"),
    (["+train=false"], "train=False: unknown top-level key; dllab-train reads data, model, loss"),
    # a sweep's own settings, refused before it makes anything (tests/test_command_checks.py: the other commands)
    (
        ["-m", "hydra/launcher=stacked", "seed=0,1", "hydra.launcher.max_stack=0"],
        "error: hydra.launcher.max_stack=0: must be an integer >= 1 (models in one stack)",
    ),
    (
        ["-m", "hparams_search=circle_optuna", "hydra.sweeper.pruner.n_warmup_steps=-1"],
        "error: hydra.sweeper.pruner.n_warmup_steps=-1: must be an integer >= 0",
    ),
    (
        ["-m", "hparams_search=circle_optuna", "hydra.sweeper.storage=sqlite://"],
        "error: hydra.sweeper.storage=sqlite://: an in-memory database lives in one process",
    ),
    # sbatch refuses (no such partition, no cluster configured, or no sbatch at all)
    (["-m", "hydra/launcher=slurm", "hydra.launcher.partition=nosuch"], "error: the sweep was not submitted ("),
]


def bad_files(root: Path) -> None:
    """A table with a missing value, one with inf, one without rows, and an image folder with a corrupt file; tables
    with one class, an ID, the row number, a duplicate column name, a '?' among numbers; an
    image folder with an image over Pillow's pixel limit."""
    rows = "".join(f"{i},{i * 2},{'xy'[i % 2]}\n" for i in range(20))
    (root / "nan.csv").write_text("a,b,label\n1,,x\n" + rows)
    (root / "inf.csv").write_text("a,b,label\n1,inf,x\n" + rows)
    (root / "empty.csv").write_text("a,b,label\n")
    for name in ("cats", "dogs"):
        (root / "images" / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / "images" / name / f"{i}.png")
    (root / "images" / "cats" / "bad.png").write_bytes(b"not a png")
    # tables that would train but give a wrong result, and an image Pillow refuses to open
    labels = ["xy"[i % 2] for i in range(30)]
    (root / "one_class.csv").write_text("a,b,label\n" + "".join(f"{i * 3 % 7},{i % 4},x\n" for i in range(30)))
    (root / "ids.csv").write_text("id,a,label\n" + "".join(f"u{i},{i * 3 % 7},{y}\n" for i, y in enumerate(labels)))
    (root / "numbered.csv").write_text(
        "n,a,label\n" + "".join(f"{i + 1},{i * 3 % 7},{y}\n" for i, y in enumerate(labels))
    )
    (root / "twice.csv").write_text("a,label,label\n" + "".join(f"{i * 3 % 7},{y},{y}\n" for i, y in enumerate(labels)))
    (root / "query.csv").write_text(
        "a,b,label\n" + "".join(f"{'?' if i == 6 else i * 3 % 7},{i % 4},{y}\n" for i, y in enumerate(labels))
    )
    for name in ("cats", "dogs"):
        (root / "huge" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / "huge" / name / f"{i}.png")
    (root / "huge" / "dogs" / "huge.png").write_bytes(gray_png(15000, 15000, 1))  # 225 Mpixels of zeros: a few KB


def test_the_table_is_long_enough() -> None:
    assert len(BAD_INPUTS) >= 30


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_line(overrides: list[str], message: str, tmp_path: Path) -> None:
    bad_files(tmp_path)
    args = [o.replace("{tmp}", str(tmp_path)) for o in overrides]
    result = run_cli("dllab-train", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip().removeprefix('error: ')}"]
    assert message.replace("{tmp}", str(tmp_path)) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert run_dirs(tmp_path) == []  # nothing trained, nothing left
    assert not list(tmp_path.glob("**/metrics.json"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer=lbfgs"], "Available options in 'optimizer':\n\tadagrad\n\tadam"),
        (["data=mnist2"], "Available options in 'data':"),
        (["model.activaton=relu"], "Could not override 'model.activaton'"),
    ],
)
def test_unknown_names_and_keys_list_the_choices(overrides: list[str], message: str, tmp_path: Path) -> None:
    result = run_cli("dllab-train", *overrides, cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr and run_dirs(tmp_path) == []


def test_verbose_errors_show_the_traceback(tmp_path: Path) -> None:
    result = run_cli("dllab-train", "optimizer.lr=-1", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_eval_of_a_missing_or_corrupt_checkpoint(tmp_path: Path) -> None:
    result = run_cli("dllab-eval", "ckpt_path=missing.ckpt", cwd=tmp_path)
    assert result.returncode == 2 and "error: ckpt_path=missing.ckpt: no such file" in result.stderr
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("data: {}\n")
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"PK\x03\x04 truncated")
    result = run_cli("dllab-eval", f"ckpt_path={run_dir}/checkpoints/best.ckpt", cwd=tmp_path)
    assert result.returncode == 2 and "cannot read the checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_checkpoint_of_another_network_is_refused_naming_the_weight_and_both_shapes(tmp_path: Path) -> None:
    import torch

    from dllab.training.module import ClassificationModule
    from tests.conftest import mlp

    trained = ClassificationModule(input_size=2, output_size=2, net=mlp([16, 16]))  # data=circle's sizes
    path = tmp_path / "other.ckpt"
    checkpoint = {"state_dict": trained.state_dict(), "hyper_parameters": dict(trained.hparams)}
    torch.save(checkpoint | {"dllab_task": "classification", "epoch": 1}, path)
    result = run_cli(
        "dllab-train", "data=circle", "threads=1", "model.hidden_sizes=[32,32]", f"ckpt_path={path}", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"error: ckpt_path={path}: net.layers.1.weight is [16, 2] in the checkpoint (trained with "
        "model._target_=dllab.models.mlp.MLP) but [32, 2] in the model config; give the model config it was trained "
        "with (its run's config.yaml), or a checkpoint of this network"
    ]
    assert run_dirs(tmp_path) == []
