"""The training loop: :class:`Trainer` (``visionattn train``), the same for every task.

``Trainer(cfg).fit()`` asks the task named by ``cfg.task`` (:mod:`visionattn.tasks`) for its data and model, wraps
the model for torchrun (DDP or FSDP2, ``visionattn.train.distributed``), and runs epochs of optimizer updates (each
``schedule.accum_steps`` micro-batches, :func:`visionattn.train.step.run_update` summing the task's loss terms),
evaluating through the task, reporting and checkpointing at every epoch end. It returns the run summary. The trainer
knows no task by name: a new task needs no edit here.

Resuming: ``Trainer(cfg, resume_state=load_checkpoint(path))`` continues exactly where that checkpoint was taken,
mid-epoch included: the sampler skips the batches already consumed, and the RNG states (every rank's), optimizer,
schedule, EMA, scaler and the task's own state are restored, so on CPU the final weights equal an uninterrupted
run's bit for bit.

Stopping: SIGTERM / SIGINT finish the current update, write a checkpoint and raise :class:`Interrupted` (exit code
128 + signal). ``recipe.max_nonfinite`` updates in a row with a non-finite loss or gradient raise
:class:`NonFiniteLoss`. Under torchrun both decisions are taken by all ranks together.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import torch

from ..tasks import Evaluation, Progress, StepContext, TaskData, task_of_options
from . import distributed as D
from .checkpoint import CheckpointManager, atomic_write_text
from .config import TrainConfig, check_config, config_to_yaml
from .devices import resolve_precision, resolve_workers, set_threads, tf32_scope
from .loader import EpochTagged, SeededItems, make_loader
from .optim import build_optimizer, build_scheduler
from .results import Meter, format_metric, log_window, make_reporter
from .state import Counters, capture_weights, gather_rng, restore_rank_rng, restore_weights, seed_everything
from .step import run_update

__all__ = ["Trainer", "TrainingStopped", "Interrupted", "NonFiniteLoss", "seed_everything", "default_run_dir"]


class TrainingStopped(RuntimeError):
    """Training ended early; ``exit_code`` is what ``visionattn train`` exits with."""

    exit_code = 1


class Interrupted(TrainingStopped):
    """SIGTERM / SIGINT: the current update was finished and a checkpoint written (``checkpoint``)."""

    def __init__(self, signum: int, checkpoint: Path | None):
        self.signum = signum
        self.checkpoint = checkpoint
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        where = f"; checkpoint {checkpoint} (resume with --resume {checkpoint} or --resume auto)" if checkpoint else ""
        super().__init__(f"stopped by {name} after finishing the current step{where}")


class NonFiniteLoss(TrainingStopped):
    exit_code = 3


def default_run_dir(model_name: str) -> Path:
    return Path("runs") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{model_name}"


class Trainer:
    """One training run. ``cfg``: the resolved :class:`TrainConfig`. ``run_dir``: overrides ``cfg.run.dir``.
    ``resume_state``: a loaded checkpoint (:func:`~visionattn.train.checkpoint.load_checkpoint`) to continue.
    ``data``: ready :class:`~visionattn.tasks.TaskData` (default: the task's ``build_data(cfg.data)``).
    ``info``: a :class:`~visionattn.comm.DistInfo` (default: ``init_distributed()``).
    ``log``: where messages go (rank 0 only)."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path | None = None, resume_state: dict | None = None,
                 data: TaskData | None = None, info: D.DistInfo | None = None, log=print):
        check_config(cfg)
        self.cfg = cfg
        run = cfg.run
        self.info = info or D.init_distributed(device=None if run.device == "auto" else run.device)
        self.device = self.info.device
        self.is_main = self.info.is_main
        self._log = log
        self.precision = resolve_precision(run.precision, self.device)
        if run.fsdp and cfg.recipe.ema:
            raise ValueError("run.fsdp with recipe.ema is not supported (the EMA copy would not be sharded); set "
                             "recipe.ema=false")
        self.task = task_of_options(cfg.task)(cfg.task)

        # -- data --------------------------------------------------------------------------------------------
        self.data = data if data is not None else self.task.build_data(cfg.data, run.seed)
        world = self.info.world_size
        bs = cfg.schedule.batch_size
        if bs % world:
            raise ValueError(f"schedule.batch_size {bs} is the global batch: expected a multiple of the world size "
                             f"{world}")
        self.batch_size = bs // world  # per rank, per micro-batch
        self.task.check_batch_size(self.batch_size)

        # -- model, task extras, wrapping --------------------------------------------------------------------------
        seed_everything(run.seed)  # identical initial weights on every rank
        self.model = self.task.build_model(cfg.model, self.data.meta)
        self.task.setup(self.model, self.device)
        self.train_module = D.wrap_model(self.task.train_module(self.model), self.info, fsdp=run.fsdp)
        if run.compile:
            self.train_module = torch.compile(self.train_module)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self.ema = None
        if cfg.recipe.ema:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=cfg.recipe.ema_decay, use_warmup=True)

        # -- loaders and schedule ---------------------------------------------------------------------------
        self.num_workers = resolve_workers(run.num_workers, self.device)
        self.train_items = SeededItems(self.data.train, run.seed)
        self.sampler = D.make_sampler(self.train_items, self.info, shuffle=True, seed=run.seed,
                                      batch_size=self.batch_size, drop_last=True)
        self.tagged = EpochTagged(self.sampler)  # (epoch, index) keys: the epoch reaches persistent workers
        self.loader = make_loader(self.train_items, self.tagged, self.batch_size, self.num_workers, True,
                                  self.device.type == "cuda", collate=self.data.collate)
        self._eval_loaders: dict[int, tuple] = {}
        accum = cfg.schedule.accum_steps
        self.updates_per_epoch = (len(self.sampler) // self.batch_size) // accum
        if self.updates_per_epoch < 1:
            raise ValueError(f"{len(self.data.train)} training samples give no full update of schedule.batch_size "
                             f"{bs} x accum_steps {accum}; expected at least {bs * accum} samples")
        self.total_steps = self.updates_per_epoch * cfg.schedule.epochs
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, self.updates_per_epoch)
        self.scheduler.step_update(0)

        # -- progress state ---------------------------------------------------------------------------------
        self.counters = Counters()
        self._last_eval: dict[str, Evaluation] = {}
        self._epoch_train: dict[str, float] = {}
        self._signal: int | None = None
        self._saved_at_step: int | None = None
        self.train_time = 0.0

        if self.info.rank:
            seed_everything(run.seed + self.info.rank)  # different dropout / drop-path noise per rank

        # -- run directory ----------------------------------------------------------------------------------
        chosen = run_dir or run.dir or default_run_dir(cfg.model.name)
        self.run_dir = Path(D.broadcast_object(str(chosen), self.info))
        self.ckpts = CheckpointManager(self.run_dir, run.keep_last) if self.is_main else None
        if self.is_main:
            atomic_write_text(self.run_dir / "config.yaml", config_to_yaml(cfg))
        self.reporter = make_reporter(self.run_dir, self.is_main and run.report)
        if resume_state is not None:
            self.load_state_dict(resume_state)

    # -- progress (read-only views of the counters, for callers and tests) --------------------------------------
    @property
    def epoch(self) -> int:
        return self.counters.epoch

    @property
    def step(self) -> int:
        return self.counters.step

    @property
    def batch(self) -> int:
        return self.counters.batch

    @property
    def best_metric(self) -> float | None:
        return self.counters.best_metric

    @property
    def eval_weights(self) -> str:
        return self.counters.eval_weights

    @property
    def classes(self) -> list[str]:
        return list(self.data.meta.get("classes") or [])

    # -- messages -------------------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if self.is_main:
            self._log(message)

    # -- state ------------------------------------------------------------------------------------------------
    def _fsdp(self) -> bool:
        return self.cfg.run.fsdp and self.info.distributed

    def _sampler_state(self) -> dict:
        c = self.counters
        return {"epoch": c.epoch, "consumed": c.batch * self.batch_size, "world_size": self.info.world_size}

    def state_dict(self) -> dict:
        """Everything a bit-exact resume needs (collective under torchrun: call it on every rank)."""
        weights, optim = capture_weights(self.train_module, self.model, self.optimizer, self._fsdp())
        ema = None if self.ema is None else {k: v.detach().cpu() for k, v in self.ema.module.state_dict().items()}
        return {
            "task": self.task.name,
            "task_state": self.task.state_dict(),
            "meta": dict(self.data.meta),
            "model": weights,
            "ema": ema,
            "optimizer": optim,
            "scheduler": self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": gather_rng(self.info),
            "sampler": self._sampler_state(),
            **self.counters.to_state(),
            "config": config_to_yaml(self.cfg),
            "classes": self.classes,
            "model_name": self.cfg.model.name,
            "world_size": self.info.world_size,
            "torch_version": str(torch.__version__),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint's state (every rank loads the same file)."""
        if state.get("task", self.task.name) != self.task.name:
            raise ValueError(f"the checkpoint was trained for task {state['task']!r}; the config is for task "
                             f"{self.task.name!r}")
        if state.get("model_name", self.cfg.model.name) != self.cfg.model.name:
            raise ValueError(f"checkpoint holds a {state['model_name']!r} model, the config builds "
                             f"{self.cfg.model.name!r}")
        saved = state.get("meta") or {}
        if "classes" in saved and list(saved["classes"]) != self.classes:
            raise ValueError(f"checkpoint classes {list(saved['classes'])} differ from the data's {self.classes}")
        restore_weights(self.train_module, self.model, self.optimizer, state["model"], state["optimizer"],
                        self._fsdp())
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.module.load_state_dict(state["ema"])
            else:
                self.log("note: the checkpoint has no EMA weights; the EMA restarts from the current weights")
                self.ema.set(self.model)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.task.load_state_dict(state.get("task_state") or {})
        self.counters = Counters.from_state(state)
        self.sampler.load_state_dict(dict(state["sampler"]))
        # the learning rate is a function of the update count and the (possibly overridden) schedule config; the
        # scheduler's saved state is kept in the checkpoint for inspection only
        self.scheduler.step_update(self.step)
        # last: nothing above may draw from the restored streams
        if not restore_rank_rng(state["rng"], self.info, reseed=self.cfg.run.seed + 7919 * self.step):
            self.log(f"note: the checkpoint was written by {len(state['rng'])} process(es), this run has "
                     f"{self.info.world_size}: RNG streams are reseeded, so the continuation is not bit-identical")

    def save_checkpoint(self, is_best: bool = False) -> Path | None:
        """Write the current state (rank 0 writes; every rank must call). Returns the path on rank 0."""
        state = self.state_dict()
        path = None
        if self.is_main:
            path = self.ckpts.save(state, self.step, is_best=is_best)
        D.barrier(self.info)
        self._saved_at_step = self.step
        return path

    # -- signals ----------------------------------------------------------------------------------------------
    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}

        def handler(signum, frame):
            if self._signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now
            self._signal = signum
            if self.is_main:
                print(f"\n{signal.Signals(signum).name} received: finishing the current step, then writing a "
                      f"checkpoint", file=sys.stderr, flush=True)

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
        return previous

    def _check_signal(self) -> None:
        stop = self._signal is not None
        if self.info.distributed:
            stop = D.all_reduce_any(stop, self.info)
        if stop:
            signum = self._signal or signal.SIGTERM
            path = None
            if self._saved_at_step != self.step:
                path = self.save_checkpoint()
            elif self.is_main:
                path = self.ckpts.path_for(self.step)
            raise Interrupted(signum, path)

    # -- training ------------------------------------------------------------------------------------------------
    def fit(self, until_step: int | None = None) -> dict:
        """Train to the end of ``schedule.epochs`` (or pause at update ``until_step``, writing a checkpoint) and
        return the run summary."""
        previous = self._install_signal_handlers()
        threads = torch.get_num_threads()
        set_threads(self.cfg.run.threads, self.num_workers, self.device)  # scoped to fit()
        params = sum(p.numel() for p in self.model.parameters())
        self.log(f"training {self.cfg.model.name} ({params / 1e6:.3f}M params) for {self.task.name} on "
                 f"{self.data.description or self.cfg.data.name}: {len(self.data.train)} train / {len(self.data.val)} "
                 f"val samples, {self.cfg.schedule.epochs} epochs x {self.updates_per_epoch} updates, device "
                 f"{self.device}{f' x {self.info.world_size} processes' if self.info.distributed else ''}, "
                 f"{self.precision}{', TF32' if self.device.type == 'cuda' and self.cfg.run.tf32 else ''}, "
                 f"{torch.get_num_threads()} threads, {self.num_workers} loader workers, run dir {self.run_dir}")
        if self.step:
            self.log(f"resumed at epoch {self.epoch + 1}, update {self.step}/{self.total_steps}")
        try:
            with tf32_scope(self.device.type == "cuda" and self.cfg.run.tf32):
                while self.epoch < self.cfg.schedule.epochs:
                    if (until_step is not None and self.step >= until_step) or self._train_epoch(until_step):
                        where = self.ckpts.path_for(self.step) if self.is_main else None
                        self.log(f"paused at update {self.step} (--max-steps {until_step}); checkpoint {where}; "
                                 f"continue with --resume")
                        return self.summary(paused=True)
                    self._end_epoch()
                    self._check_signal()
                summary = self.summary()
                self._finish_report(summary)
            self.close()
            return summary
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
            torch.set_num_threads(threads)

    def close(self) -> None:
        """Flush and close the reporter (TensorBoard); a finished ``fit`` does it itself."""
        self.reporter.close()

    def _context(self) -> StepContext:
        progress = Progress(self.step, self.total_steps, self.epoch, self.updates_per_epoch)
        return StepContext(progress, self.device, self.precision, self.info)

    def _train_epoch(self, until_step: int | None) -> bool:
        """The rest of the current epoch; True if paused at ``until_step``."""
        from tqdm import tqdm

        cfg, c = self.cfg, self.counters
        accum = cfg.schedule.accum_steps
        total_batches = self.updates_per_epoch * accum
        self.sampler.load_state_dict(self._sampler_state())  # start where this epoch stands (resume, re-entry)
        self.tagged.epoch = c.epoch
        batches = iter(self.loader)
        self.model.train()
        params = list(self.model.parameters())
        bar = tqdm(total=self.updates_per_epoch, initial=c.batch // accum, desc=f"epoch {c.epoch + 1}",
                   leave=False, dynamic_ncols=True, disable=not (self.is_main and sys.stdout.isatty()))
        window, epoch_meter = Meter(), Meter()
        try:
            while c.batch < total_batches:
                t_step = time.perf_counter()
                micro = [next(batches) for _ in range(accum)]
                ctx = self._context()
                result = run_update(self.train_module, params, self.optimizer, micro,
                                    lambda module, batch, ctx=ctx: self.task.loss(module, batch, ctx),
                                    device=self.device, precision=self.precision, info=self.info,
                                    scaler=self.scaler, clip_grad=cfg.optim.clip_grad,
                                    before_step=lambda ctx=ctx: self.task.before_step(self.model, ctx))
                c.batch += accum
                c.step += 1
                self.train_time += time.perf_counter() - t_step
                if result.skipped:
                    c.nonfinite_total += 1
                    c.nonfinite_consecutive += 1
                    self.log(f"warning: update {c.step}: non-finite loss or gradient (loss {float(result.loss)}, "
                             f"grad norm {float(result.grad_norm)}); update skipped ({c.nonfinite_consecutive} in a "
                             f"row, {c.nonfinite_total} in all)")
                    if c.nonfinite_consecutive >= cfg.recipe.max_nonfinite:
                        raise NonFiniteLoss(
                            f"stopping: {c.nonfinite_consecutive} updates in a row had a non-finite loss or "
                            f"gradient (recipe.max_nonfinite={cfg.recipe.max_nonfinite}) at epoch "
                            f"{c.epoch + 1}, update {c.step}; try a lower optim.lr, optim.clip_grad, or "
                            f"run.precision=fp32. Last checkpoint: {self._latest_checkpoint()}")
                else:
                    c.nonfinite_consecutive = 0
                    if self.ema is not None:
                        self.ema.update(self.model, step=c.step)
                    self.task.after_update(self.model, ctx)
                    window.add(result)
                    epoch_meter.add(result)
                self.scheduler.step_update(c.step)
                bar.update(1)
                if c.step % cfg.run.log_every == 0 or c.batch == total_batches:
                    log_window(window, self.info, self.reporter, c.step, self.total_steps, c.epoch,
                               c.epoch + c.batch / total_batches, self.optimizer.param_groups[0]["lr"], bar,
                               self.log)
                    window = Meter()
                if cfg.run.ckpt_every and c.step % cfg.run.ckpt_every == 0:
                    self.save_checkpoint()
                if until_step is not None and c.step >= until_step:
                    if self._saved_at_step != c.step:
                        self.save_checkpoint()
                    return True
                if c.batch < total_batches:
                    self._check_signal()
        finally:
            bar.close()
        totals = epoch_meter.reduced(self.info)
        self._epoch_train = {f"train_{k}": v for k, v in totals.items() if k not in ("updates", "img_per_s")}
        return False

    def _latest_checkpoint(self) -> str:
        if not self.is_main:
            return "(rank 0 knows)"
        from .checkpoint import resume_candidates

        found = resume_candidates(self.run_dir)
        return str(found[0]) if found else "none yet"

    # -- evaluation -----------------------------------------------------------------------------------------------
    def _eval_loader(self, dataset) -> tuple:
        """A loader over this rank's shard of ``dataset`` and how many of its items are real (cached per dataset)."""
        key = id(dataset)
        if key not in self._eval_loaders:
            run = self.cfg.run
            sampler = D.make_sampler(dataset, self.info, shuffle=False, seed=run.seed,
                                     batch_size=run.eval_batch_size, even=True)
            valid = len(range(self.info.rank, len(dataset), self.info.world_size))
            loader = make_loader(dataset, sampler, run.eval_batch_size, self.num_workers, False,
                                 self.device.type == "cuda", collate=self.data.collate)
            self._eval_loaders[key] = (dataset, loader, valid)  # the dataset is kept so its id is not reused
        _, loader, valid = self._eval_loaders[key]
        return loader, valid

    def evaluate(self) -> dict[str, Evaluation]:
        """Validation of the trained weights and (if kept) their EMA, through the task."""
        from ..tasks import EvalContext

        ctx = EvalContext(self.device, self.precision, self.info, self._eval_loader)
        results = {"model": self.task.evaluate(self.train_module, self.data, ctx)}
        if self.ema is not None:
            results["ema"] = self.task.evaluate(self.ema.module, self.data, ctx)
        return results

    def _better(self, a: float, b: float | None) -> bool:
        """Whether primary-metric value ``a`` beats ``b`` (None: nothing yet) in the task's direction."""
        if b is None:
            return True
        return a > b if self.task.higher_is_better else a < b

    def _end_epoch(self) -> None:
        c = self.counters
        c.epoch += 1
        c.batch = 0
        metrics = dict(self._epoch_train)
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        is_best = False
        last = c.epoch == self.cfg.schedule.epochs
        if c.epoch % self.cfg.run.eval_every == 0 or last:
            self._last_eval = self.evaluate()
            for which, prefix in (("model", "val_"), ("ema", "val_ema_")):
                if which in self._last_eval:
                    metrics.update({f"{prefix}{k}": v for k, v in self._last_eval[which].metrics.items()})
            primary = self.task.primary_metric
            scores = {k: e.metrics[primary] for k, e in self._last_eval.items()}
            best_name = "model"  # the trained weights on ties
            for name, score in scores.items():
                if self._better(score, scores[best_name]):
                    best_name = name
            c.eval_weights = best_name
            is_best = self._better(scores[best_name], c.best_metric)
            if is_best:
                c.best_metric = scores[best_name]
        metrics["non_finite_steps"] = c.nonfinite_total
        c.metrics = {k: float(v) for k, v in metrics.items()}
        self.reporter.log_epoch(c.epoch, metrics)
        text = "  ".join(f"{k} {format_metric(k, v)}" for k, v in metrics.items() if k != "non_finite_steps")
        self.log(f"epoch {c.epoch}/{self.cfg.schedule.epochs}  {text}")
        self.save_checkpoint(is_best=is_best)

    # -- the end ------------------------------------------------------------------------------------------------
    def summary(self, paused: bool = False) -> dict:
        """Run facts for the report and ``summary.json``: sizes, steps, time, throughput, best and final
        validation metrics."""
        params = sum(p.numel() for p in self.model.parameters())
        images = self.step * self.cfg.schedule.batch_size * self.cfg.schedule.accum_steps
        out = {
            "task": self.task.name,
            "model": self.cfg.model.name,
            "params_m": round(params / 1e6, 4),
            "dataset": self.cfg.data.name,
            "train_images": len(self.data.train),
            "val_images": len(self.data.val),
            "epochs": self.epoch,
            "steps": self.step,
            "paused": paused,
            "train_time_s": round(self.train_time, 2),
            "train_img_per_s": round(images / self.train_time, 1) if self.train_time else None,
            f"best_val_{self.task.primary_metric}": self.best_metric,
            "eval_weights": self.eval_weights,
            "non_finite_steps": self.counters.nonfinite_total,
            "skipped_files": len(self.data.skipped or []),
            "device": str(self.device),
            "precision": self.precision,
            "world_size": self.info.world_size,
            "threads": torch.get_num_threads(),
            "run_dir": str(self.run_dir),
        }
        out.update({k: v for k, v in self.counters.metrics.items() if k.startswith("val")})
        return out

    def _finish_report(self, summary: dict) -> None:
        """report.html with the task's sections and attention maps of the weights that evaluated better, and
        ``summary.json`` (rank 0 writes; FSDP runs skip the pictures, whose forward would need every rank)."""
        items = []
        if self.is_main and self.cfg.run.report and not (self.cfg.run.fsdp and self.info.distributed):
            from .attention_report import attention_items

            model = self.ema.module if self.eval_weights == "ema" else self.model
            items = self.task.report(model, self.data, self._last_eval.get(self.eval_weights), self.device)
            inputs = self.task.report_inputs(self.data, 4)
            if inputs is not None:
                items += attention_items(self.task.attention_model(model), inputs[0], inputs[1], self.device)
        self.reporter.finish(summary, config_to_yaml(self.cfg), items)
        if self.is_main:
            atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
            primary = self.task.primary_metric
            final = "  ".join(f"{name} {format_metric(primary, e.metrics.get(primary))}"
                              for name, e in self._last_eval.items())
            self.log(f"done: final val {primary} {final}; best {format_metric(primary, self.best_metric)} "
                     f"(best.pt); {self.step} updates in {self.train_time:.1f}s of training; report "
                     f"{self.run_dir / 'report.html'}")
