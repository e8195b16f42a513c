"""The one trainer: a recipe, converted data and a strategy name in; checkpoints and logs out.

    yt8m-keras train --recipe cdiscount_xception --data DATA --model-dir MODEL --strategy mirrored

MODEL (local or gs://) holds everything export and evaluation need: `recipe.yaml` (the resolved recipe),
`classes.csv`, `best.weights.h5` (best epoch on the task's metric), `final.weights.h5`,
`backup/` (preemption), `logs/` (TensorBoard) and `training_log.csv`.

Preemption: the run restarts where it stopped, to the micro-batch. The backup holds the
weights, the optimizer (with its gradient accumulators) and the step; the input stream is
a deterministic function of the recipe's seed, and a restart skips the images already
consumed without decoding them. So a restarted run ends with the weights of an
uninterrupted one.
"""

import csv
import json
import os
import warnings
from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf
import yaml

from tfrecords import UserError
from tfrecords.manifest import read_classes, write_classes, write_text_atomic
from yt8m_keras.accumulation import GradientAccumulationOptimizer
from yt8m_keras.recipes import Recipe, TrainingConfig, read_yaml, recipe_from_dict
from yt8m_keras.competitions import get_task

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
RECIPE_FILE = "recipe.yaml"
BEST_WEIGHTS = "best.weights.h5"
FINAL_WEIGHTS = "final.weights.h5"
OPTIMIZERS = {
    "adam": (keras.optimizers.Adam, {}),
    "adamw": (keras.optimizers.AdamW, {}),
    "sgd": (keras.optimizers.SGD, {"momentum": 0.9, "nesterov": True}),
}


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Rises linearly from 0 to `peak` over `warmup_steps`, then falls linearly to 0 at `total_steps`.

    Args:
        peak: the rate at the end of the warmup.
        warmup_steps: optimizer updates of warmup.
        total_steps: optimizer updates of the whole run.

    Example:
        >>> schedule = WarmupLinearDecay(1e-3, warmup_steps=100, total_steps=1000)
        >>> float(schedule(50))  # 5e-4
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak, self.warmup_steps, self.total_steps = peak, warmup_steps, total_steps

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = step / max(self.warmup_steps, 1)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        return self.peak * keras.ops.clip(keras.ops.minimum(warmup, decay), 0.0, 1.0)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Rises linearly from `start` x `peak` to `peak` over `warmup_steps`, then a cosine to 0 at `total_steps`.

    The SIIM-ISIC 2020 winners' schedule: one warmup epoch from a tenth of the rate, then cosine.

    Args:
        peak: the rate at the end of the warmup.
        warmup_steps: optimizer updates of warmup.
        total_steps: optimizer updates of the whole run.
        start: the first rate as a fraction of `peak`.

    Example:
        >>> schedule = WarmupCosineDecay(3e-5, warmup_steps=100, total_steps=1500, start=0.1)
        >>> float(schedule(0))  # 3e-6
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, start: float = 0.0):
        self.peak, self.warmup_steps, self.total_steps, self.start = peak, warmup_steps, total_steps, start

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = self.start + (1.0 - self.start) * step / max(self.warmup_steps, 1)
        progress = keras.ops.clip((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
        cosine = 0.5 * (1.0 + keras.ops.cos(np.pi * progress))
        return self.peak * keras.ops.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "start": self.start}


class SlantedTriangular(keras.optimizers.schedules.LearningRateSchedule):
    """ULMFiT's slanted triangular rate: a short linear rise to `peak`, then a long linear fall.

    Howard & Ruder (2018): the rise takes `cut_fraction` of the run; the rate goes from and
    back to `peak / ratio`.

    Args:
        peak: the highest rate.
        total_steps: optimizer updates of the whole run.
        cut_fraction: the share of the run spent rising.
        ratio: how much smaller than `peak` the lowest rate is.

    Example:
        >>> schedule = SlantedTriangular(1e-2, total_steps=1000)
        >>> float(schedule(100))  # 1e-2, the peak at 10 % of the run
    """

    def __init__(self, peak: float, total_steps: int, cut_fraction: float = 0.1, ratio: float = 32.0):
        self.peak, self.total_steps, self.cut_fraction, self.ratio = peak, total_steps, cut_fraction, ratio

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        cut = max(self.total_steps * self.cut_fraction, 1.0)
        rising = step / cut
        falling = 1.0 - (step - cut) / max(cut * (1.0 / max(self.cut_fraction, 1e-6) - 1.0), 1.0)
        p = keras.ops.clip(keras.ops.where(step < cut, rising, falling), 0.0, 1.0)
        return self.peak * (1.0 + p * (self.ratio - 1.0)) / self.ratio

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "cut_fraction": self.cut_fraction,
                "ratio": self.ratio}


def with_lr_multipliers(optimizer: keras.optimizers.Optimizer, multipliers: Dict[str, float]):
    """Gives the variables whose path starts with a prefix their own learning rate.

    Keras optimizers pass the rate to `update_step` once per variable, so scaling it
    there is exact for every optimizer (Adam's update is invariant to gradient scale:
    scaling gradients instead would change nothing) and works under tf.distribute.
    """
    if not multipliers:
        return optimizer
    plain_update_step = optimizer.update_step
    prefixes = sorted(multipliers.items(), key=lambda kv: -len(kv[0]))  # longest prefix wins

    def update_step(gradient, variable, learning_rate):
        # Under the TensorFlow backend `variable` is the backend variable: find the
        # Keras variable (and its path) the optimizer was built with.
        path = optimizer._trainable_variables[optimizer._get_variable_index(variable)].path
        for prefix, multiplier in prefixes:
            if path.startswith(prefix):
                return plain_update_step(gradient, variable, learning_rate * multiplier)
        return plain_update_step(gradient, variable, learning_rate)

    optimizer.update_step = update_step
    return optimizer


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """`default` (one device), `mirrored` (all local GPUs), `multi_worker` (TF_CONFIG), `tpu`."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError, RuntimeError) as e:
            raise UserError(f"no TPU found ({e}); run on a TPU VM or pass --tpu NAME") from None
        return tf.distribute.TPUStrategy(resolver)
    raise UserError(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")


def make_optimizer(training: TrainingConfig) -> keras.optimizers.Optimizer:
    """The recipe's optimizer with its step-decay schedule, wrapped to accumulate if asked.

    Schedule boundaries are in optimizer updates (the wrapped optimizer's iterations), so
    "decay at epoch 6" means the same with or without accumulation.
    """
    if training.optimizer not in OPTIMIZERS:
        raise UserError(f"recipe key training.optimizer: one of {', '.join(OPTIMIZERS)}, got {training.optimizer!r}")
    rate = training.learning_rate
    updates_per_epoch = training.steps_per_epoch / training.accumulation_steps
    if training.schedule == "warmup_linear":
        rate = WarmupLinearDecay(rate, round(training.warmup_epochs * updates_per_epoch),
                                 round(training.epochs * updates_per_epoch))
    elif training.schedule == "warmup_cosine":
        rate = WarmupCosineDecay(rate, round(training.warmup_epochs * updates_per_epoch),
                                 round(training.epochs * updates_per_epoch), training.warmup_start)
    elif training.schedule == "slanted_triangular":
        # The rise is warmup_epochs of the run (ULMFiT's cut_frac; 0.1 of the run when unset).
        cut = training.warmup_epochs / training.epochs if training.warmup_epochs else 0.1
        rate = SlantedTriangular(rate, round(training.epochs * updates_per_epoch), min(cut, 1.0))
    elif training.lr_decay_epochs:
        rate = keras.optimizers.schedules.PiecewiseConstantDecay(
            [round(e * updates_per_epoch) for e in sorted(training.lr_decay_epochs)],
            [rate * training.lr_decay_factor ** i for i in range(len(training.lr_decay_epochs) + 1)])
    cls, kwargs = OPTIMIZERS[training.optimizer]
    if training.clipnorm:
        kwargs = {**kwargs, "global_clipnorm": training.clipnorm}
    optimizer = with_lr_multipliers(cls(learning_rate=rate, **kwargs), training.lr_multipliers)
    if training.accumulation_steps > 1:
        optimizer = GradientAccumulationOptimizer(optimizer, training.accumulation_steps)
    return optimizer


def stage_at(stages: Dict[int, str], epoch: int) -> str:
    return stages[max(e for e in stages if e <= epoch)]


class StageSchedule(keras.callbacks.Callback):
    """Switches the trainable stage at the recipe's epochs, keeping the optimizer's state.

    The optimizer was built over every variable, so unfreezing only changes which
    gradients reach it; the train function is re-traced for the new variable list.
    """

    def __init__(self, stages: Dict[int, str], set_stage, current: str):
        super().__init__()
        self.stages, self.set_stage, self.current = stages, set_stage, current

    def on_epoch_begin(self, epoch, logs=None):
        stage = stage_at(self.stages, epoch)
        if stage != self.current:
            self.set_stage(self.model, stage)
            self.model.make_train_function(force=True)
            self.current = stage
            print(f"\nepoch {epoch + 1}: training stage {stage}")


WEIGHTS_SUFFIX = ".weights.h5"


def save_weights_atomic(model: keras.Model, path: str) -> None:
    """`model.save_weights(path)` that a kill leaves either complete or not there at all.

    Keras writes the .h5 file in place; a kill mid-write leaves a file that no rerun can
    load. This writes a temporary name (Keras insists on the suffix) and renames it.
    """
    tmp = path[: -len(WEIGHTS_SUFFIX)] + ".tmp" + WEIGHTS_SUFFIX
    model.save_weights(tmp, overwrite=True)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def load_weights_checked(model: keras.Model, path: str) -> None:
    """`model.load_weights(path)`, with a damaged or mismatched file as one UserError naming it."""
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"cannot load weights from {path} (damaged, or written for another model): "
                        f"{type(e).__name__}: {e}") from None


class Backup(keras.callbacks.Callback):
    """Preemption backups that resume at the exact micro-batch, each written as a complete unit.

    A unit is `step-N.weights.h5` (the weights, the optimizer with its accumulators) and
    `step-N.json` (the step and the layers' random seed states, which `save_weights`
    leaves out: dropout would draw other masks after a restart). The JSON is written
    last, under a temporary name renamed into place, so its presence marks a complete
    unit; a kill at any moment leaves the previous unit intact, and the two newest units
    are kept so a damaged one falls back to the one before.

    Keras' own `BackupAndRestore` is not used: it writes in place, restores the epoch
    only, and sets `model._initial_epoch`, which Keras 3.15 `fit` prefers over its
    `initial_epoch` argument, so a second `fit` call would rerun an old epoch.

    The batch-level backup skips an epoch's last batch: the epoch-end backup, taken after
    validation and the epoch's log row, commits the epoch (so put this callback last).

    Args:
        backup_dir: where the units go.
        steps_per_epoch: micro-batches per epoch.
        every_steps: back up every this many micro-batches (and at every epoch end).
        keep: complete units kept (at least 2, so a damaged newest one can fall back).

    Example:
        >>> backup = Backup("model/backup", steps_per_epoch=1000, every_steps=100)
        >>> step = backup.restore(model)  # 0 on a fresh run
    """

    def __init__(self, backup_dir: str, steps_per_epoch: int, every_steps: int, keep: int = 2):
        super().__init__()
        self.backup_dir, self.steps_per_epoch, self.every_steps = backup_dir, steps_per_epoch, every_steps
        self.keep = max(keep, 2)
        self.step = 0

    def _path(self, step: int, suffix: str) -> str:
        return os.path.join(self.backup_dir, f"step-{step:010d}{suffix}")

    def _complete_steps(self):
        if not tf.io.gfile.isdir(self.backup_dir):
            return []
        names = tf.io.gfile.listdir(self.backup_dir)
        return sorted((int(n[5:-5]) for n in names if n.startswith("step-") and n.endswith(".json")
                       and n[5:-5].isdigit()), reverse=True)

    def restore(self, model: keras.Model) -> int:
        """Loads the newest readable backup into `model`; returns the micro-batches done (0: none)."""
        self.set_model(model)
        damaged = []
        for step in self._complete_steps():
            try:
                with tf.io.gfile.GFile(self._path(step, ".json")) as f:
                    metadata = json.load(f)
                model.load_weights(self._path(step, WEIGHTS_SUFFIX))
                seed_states = _seed_states(model)
                if int(metadata["step"]) != step or len(metadata["seed_states"]) != len(seed_states):
                    raise ValueError("metadata does not match the model")
                for variable, value in zip(seed_states, metadata["seed_states"]):
                    variable.assign(value)
            except (OSError, ValueError, KeyError, TypeError, tf.errors.OpError) as e:
                damaged.append(f"{self._path(step, WEIGHTS_SUFFIX)} ({type(e).__name__}: {e})")
                print(f"warning: backup at step {step} cannot be read, trying an older one: {damaged[-1]}")
                continue
            self.step = step
            return step
        if damaged:
            raise UserError(f"no readable backup in {self.backup_dir}: {'; '.join(damaged)} "
                            "(move the directory away to start over)")
        return 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every_steps == 0 and self.step % self.steps_per_epoch != 0:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        self._save()

    def _save(self):
        tf.io.gfile.makedirs(self.backup_dir)
        save_weights_atomic(self.model, self._path(self.step, WEIGHTS_SUFFIX))
        metadata = {"step": self.step, "epoch": self.step // self.steps_per_epoch,
                    "seed_states": [v.numpy().tolist() for v in _seed_states(self.model)]}
        write_text_atomic(self._path(self.step, ".json"), json.dumps(metadata))
        self._prune()

    def _prune(self):
        """Removes units beyond the newest `keep`, and leftovers of units a kill interrupted."""
        kept = set(self._complete_steps()[: self.keep])
        for name in tf.io.gfile.listdir(self.backup_dir):
            step = name[5:].split(".", 1)[0]
            if not (name.startswith("step-") and step.isdigit() and int(step) in kept):
                _remove(os.path.join(self.backup_dir, name))


def _remove(path: str) -> None:
    try:
        tf.io.gfile.remove(path)
    except tf.errors.NotFoundError:
        pass


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training with one UserError naming the step when the loss is NaN or infinite.

    Keras' `TerminateOnNaN` only sets `stop_training`, so the run would end "successfully"
    (exit 0) with NaN weights. Put it before `Backup`, so the NaN weights are never backed up.
    """

    def __init__(self, backup: "Backup"):
        super().__init__()
        self.backup = backup

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.all(np.isfinite(np.asarray(loss))):
            step = self.backup.step + 1
            epoch, batch = divmod(step - 1, self.backup.steps_per_epoch)
            raise UserError(f"loss became {float(np.asarray(loss).reshape(-1)[0])} at step {step} "
                            f"(epoch {epoch + 1}, batch {batch + 1}): training stopped; "
                            "lower training.learning_rate, or check the data")


class BestWeights(keras.callbacks.Callback):
    """Saves the weights (atomically) at each epoch whose `monitor` beats every earlier one.

    Args:
        path: the weights file.
        monitor: the logs key, e.g. `val_accuracy`.
        mode: `max` or `min`.
        best: the best value of earlier processes of the same run (from the training log).
    """

    def __init__(self, path: str, monitor: str, mode: str, best: Optional[float] = None):
        super().__init__()
        self.path, self.monitor, self.mode, self.best = path, monitor, mode, best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"{self.monitor} is not in the logs: no best checkpoint for epoch {epoch + 1}")
            return
        value = float(np.asarray(value).reshape(-1)[0])
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
            save_weights_atomic(self.model, self.path)


def _seed_states(model: keras.Model):
    """The layers' random seed states: the model's variables that are not weights."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class MultiWorkerModel(keras.Model):
    """A functional model whose `fit` works under MultiWorkerMirroredStrategy in Keras 3.15.

    Works around keras-team/keras#20585: `fit` builds the model symbolically from a
    distributed batch with `strategy.reduce`, which fails (our models are built by
    their constructors, so there is nothing to build), and it reduces each step's
    logs across workers along axis 0, which fails for scalars (the logs get one).
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        pass

    def train_step(self, data):
        return {name: keras.ops.reshape(value, (1,)) for name, value in super().train_step(data).items()}

    def test_step(self, data):
        return {name: keras.ops.reshape(value, (1,)) for name, value in super().test_step(data).items()}


def _worker() -> tuple:
    """(is_chief, index) from TF_CONFIG; a single process is the chief."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    kind, index = task.get("type", "chief"), int(task.get("index", 0))
    has_chief = "chief" in config.get("cluster", {})
    return (kind == "chief" or (kind == "worker" and index == 0 and not has_chief)), index


def _best_so_far(log_path: str, monitor: str, mode: str) -> Optional[float]:
    if not tf.io.gfile.exists(log_path):
        return None
    with tf.io.gfile.GFile(log_path) as f:
        values = [float(row[monitor]) for row in csv.DictReader(f) if row.get(monitor)]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def save_recipe(model_dir: str, recipe: Recipe) -> None:
    write_text_atomic(os.path.join(model_dir, RECIPE_FILE), yaml.safe_dump(recipe.to_dict(), sort_keys=False))


def _keep_log_rows_before(log_path: str, epoch: int) -> None:
    """Drops the training log's rows of epochs >= `epoch` (committed by no backup).

    A kill between an epoch's log row and its backup reruns that epoch's tail, which
    would write the row again; one row per epoch is kept by dropping it on resume.
    """
    if not tf.io.gfile.exists(log_path):
        return
    with tf.io.gfile.GFile(log_path) as f:
        lines = f.read().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if _log_epoch(line) < epoch]
    if kept != lines:
        write_text_atomic(log_path, "".join(kept) if len(kept) > 1 else "")


def _log_epoch(line: str) -> float:
    """The epoch of a CSVLogger row (its first column); infinite for a row a kill cut short."""
    first = line.split(",", 1)[0]
    return int(first) if first.isdigit() and line.endswith("\n") else float("inf")


def _read_recipe(model_dir: str) -> Recipe:
    path = os.path.join(model_dir, RECIPE_FILE)
    if not tf.io.gfile.exists(path):
        raise UserError(f"no {RECIPE_FILE} in {model_dir}: is it a directory written by `yt8m-keras train`?")
    return recipe_from_dict(read_yaml(path))


def trained_task(model_dir: str) -> str:
    """The task a training run's directory was trained for."""
    return _read_recipe(model_dir).task


def build_model(task, recipe: Recipe, classes, assets_dir: str) -> keras.Model:
    """The task's model; a task with ASSETS (e.g. a tokenizer) builds it from those files in `assets_dir`."""
    if task_assets(task, recipe):
        return task.build_model(recipe, len(classes), assets_dir=assets_dir)
    return task.build_model(recipe, len(classes))


def task_assets(task, recipe: Recipe):
    """The task's ASSETS: a tuple of paths relative to the data, or a function of the recipe giving one."""
    assets = getattr(task, "ASSETS", ())
    return tuple(assets(recipe) if callable(assets) else assets)


def copy_assets(task, recipe: Recipe, data_dir: str, model_dir: str) -> None:
    """Copies the task's assets (files or directories) from the data to the run, so export needs only the run."""
    for name in task_assets(task, recipe):
        source, target = os.path.join(data_dir, name), os.path.join(model_dir, name)
        if not tf.io.gfile.exists(source):
            raise UserError(f"no {name} in {data_dir}: convert the data again")
        tmp = f"{target}.tmp"
        if tf.io.gfile.exists(tmp):
            (tf.io.gfile.rmtree if tf.io.gfile.isdir(tmp) else tf.io.gfile.remove)(tmp)
        tf.io.gfile.makedirs(os.path.dirname(target))
        _copy_tree(source, tmp)
        if tf.io.gfile.isdir(target):
            tf.io.gfile.rmtree(target)
        tf.io.gfile.rename(tmp, target, overwrite=True)


def _copy_tree(source: str, target: str) -> None:
    if not tf.io.gfile.isdir(source):
        tf.io.gfile.copy(source, target, overwrite=True)
        return
    for root, _, files in tf.io.gfile.walk(source):
        folder = os.path.join(target, os.path.relpath(root, source))
        tf.io.gfile.makedirs(folder)
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(folder, name), overwrite=True)


def load_trained(model_dir: str):
    """(recipe, classes, model with its best weights) from a training run's directory."""
    recipe = _read_recipe(model_dir)
    classes = read_classes(model_dir)
    model = build_model(get_task(recipe.task), recipe, classes, model_dir)
    for name in (BEST_WEIGHTS, FINAL_WEIGHTS):
        if tf.io.gfile.exists(os.path.join(model_dir, name)):
            load_weights_checked(model, os.path.join(model_dir, name))
            return recipe, classes, model
    raise UserError(f"no {BEST_WEIGHTS} or {FINAL_WEIGHTS} in {model_dir}: has training finished an epoch?")


def train(recipe: Recipe, data_dir: str, model_dir: str, strategy: str = "default",
          verbose="auto") -> Dict:
    """Trains `recipe` on `data_dir`, resuming from `model_dir/backup` if a run was cut off.

    Returns:
        A dict: `history` (metrics per epoch of this process), `step` (micro-batches done),
        `model_dir`.
    """
    task = get_task(recipe.task)
    task.read_manifest(data_dir)
    classes = task.read_classes(data_dir)
    t = recipe.training
    distribution = make_strategy(strategy)
    is_chief, index = _worker()
    out_dir = model_dir if is_chief else os.path.join(model_dir, "workers", f"worker{index}")
    tf.io.gfile.makedirs(out_dir)
    if is_chief:
        save_recipe(model_dir, recipe)
        write_classes(model_dir, classes)
        copy_assets(task, recipe, data_dir, model_dir)

    keras.utils.set_random_seed(t.seed)
    keras.mixed_precision.set_global_policy(t.precision)
    global_batch = t.batch_size * distribution.num_replicas_in_sync
    backup = Backup(os.path.join(out_dir, "backup"), t.steps_per_epoch, t.backup_every_steps)
    with distribution.scope():
        model = build_model(task, recipe, classes, data_dir)
        if isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy):
            model = MultiWorkerModel(model.inputs, model.outputs, name=model.name)
        model.compile(optimizer=make_optimizer(t), **task.compile_args())
        # Built over every variable while all are trainable: later stages reuse its state.
        model.optimizer.build(model.trainable_variables)
        step = backup.restore(model)
    epoch, batch = divmod(step, t.steps_per_epoch)
    stage = stage_at(t.stages, min(epoch, t.epochs - 1))
    task.set_stage(model, stage)

    log_path = os.path.join(out_dir, "training_log.csv")
    _keep_log_rows_before(log_path, epoch)
    # Order matters: the NaN check runs before anything saves, and the backup runs last,
    # so an epoch is committed only once its log row and best checkpoint are written.
    callbacks = [
        StopOnNonFiniteLoss(backup),
        StageSchedule(t.stages, task.set_stage, stage),
        BestWeights(os.path.join(out_dir, BEST_WEIGHTS), task.MONITOR, task.MONITOR_MODE,
                    _best_so_far(log_path, task.MONITOR, task.MONITOR_MODE)),
        keras.callbacks.TensorBoard(os.path.join(out_dir, "logs")),
        keras.callbacks.CSVLogger(log_path, append=True),
        backup,
    ]
    val = task.val_dataset(recipe, data_dir, global_batch)
    history: Dict = {}

    def fit(first_epoch: int, last_epoch: int, steps: int) -> None:
        # Keras 3.15 `fit` takes `self._initial_epoch or initial_epoch`; nothing here sets
        # it, but a restored Keras BackupAndRestore would, and rerun an old epoch.
        model._initial_epoch = None
        result = model.fit(
            task.train_dataset(recipe, data_dir, global_batch, skip_batches=backup.step),
            initial_epoch=first_epoch, epochs=last_epoch, steps_per_epoch=steps,
            validation_data=val, validation_steps=t.validation_steps, callbacks=callbacks, verbose=verbose,
            shuffle=False)  # the stream is shuffled, with the recipe's seed
        for key, values in result.history.items():
            history.setdefault(key, []).extend(values)

    # The validation stream's length is unknown until it ends (products flatten to images);
    # Keras warns at every end of it as if training had run out of data.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    if epoch < t.epochs and batch:
        fit(epoch, epoch + 1, t.steps_per_epoch - batch)  # the rest of the interrupted epoch
        epoch += 1
    if epoch < t.epochs:
        fit(epoch, t.epochs, t.steps_per_epoch)
    save_weights_atomic(model, os.path.join(out_dir, FINAL_WEIGHTS))
    return {"history": history, "step": backup.step, "model_dir": model_dir, "model": model}
