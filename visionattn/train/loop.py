"""The training loop: :class:`Trainer` (``visionattn train``).

``Trainer(cfg).fit()`` builds the data (``visionattn.data``), the model (``visionattn.models.create_model``), wraps
it for torchrun (DDP or FSDP2, ``visionattn.train.distributed``), and runs epochs of optimizer updates (each
``schedule.accum_steps`` micro-batches, :func:`visionattn.train.step.run_update`), evaluating, reporting and
checkpointing at every epoch end. It returns the run summary.

Resuming: ``Trainer(cfg, resume_state=load_checkpoint(path))`` continues exactly where that checkpoint was taken,
mid-epoch included: the sampler skips the batches already consumed, and the RNG states (every rank's), optimizer,
schedule, EMA and scaler are restored, so on CPU the final weights equal an uninterrupted run's bit for bit.

Stopping: SIGTERM / SIGINT finish the current update, write a checkpoint and raise :class:`Interrupted` (exit code
128 + signal). ``recipe.max_nonfinite`` updates in a row with a non-finite loss or gradient raise
:class:`NonFiniteLoss`. Under torchrun both decisions are taken by all ranks together.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import torch

from ..data import DataBundle, build_datasets
from . import distributed as D
from .checkpoint import CheckpointManager, atomic_write_text
from .config import TrainConfig, check_config, config_to_yaml, spec_overrides
from .evaluate import EvalResult, evaluate
from .loader import EpochTagged, SeededItems, make_loader
from .optim import build_optimizer, build_scheduler
from .results import Meter, finish_report, log_window, make_reporter, run_summary
from .state import gather_state, restore_state, seed_everything
from .step import DeiTLoss, TrainModule, run_update

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


def _set_threads(threads: int | None, num_workers: int, device: torch.device) -> None:
    """``run.threads``, or by default (CPU training, OMP_NUM_THREADS unset) leave a core to each loader worker:
    on a busy machine, more compute threads than free cores makes every parallel op wait for a time slice."""
    if threads:
        torch.set_num_threads(threads)
    elif device.type == "cpu" and num_workers and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - num_workers)))


def default_run_dir(model_name: str) -> Path:
    return Path("runs") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{model_name}"


class Trainer:
    """One training run. ``cfg``: the resolved :class:`TrainConfig`. ``run_dir``: overrides ``cfg.run.dir``.
    ``resume_state``: a loaded checkpoint (:func:`~visionattn.train.checkpoint.load_checkpoint`) to continue.
    ``data``: a ready :class:`~visionattn.data.DataBundle` (default: ``build_datasets(cfg.data)``).
    ``info``: a :class:`~visionattn.train.distributed.DistInfo` (default: ``init_distributed()``).
    ``log``: where messages go (rank 0 only)."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path | None = None, resume_state: dict | None = None,
                 data: DataBundle | None = None, info: D.DistInfo | None = None, log=print):
        check_config(cfg)
        self.cfg = cfg
        run = cfg.run
        self.info = info or D.init_distributed(device=None if run.device == "auto" else run.device)
        self.device = self.info.device
        self.is_main = self.info.is_main
        self._log = log
        if run.precision == "fp16" and self.device.type != "cuda":
            raise ValueError(f"run.precision: fp16 needs a CUDA device (GradScaler), got {self.device}; use bf16")
        if run.fsdp and cfg.recipe.ema:
            raise ValueError("run.fsdp with recipe.ema is not supported (the EMA copy would not be sharded); set "
                             "recipe.ema=false")
        self.precision = run.precision

        # -- data --------------------------------------------------------------------------------------------
        self.data = data if data is not None else build_datasets(cfg.data)
        self.classes = list(self.data.classes)
        if getattr(self.data, "in_chans", 3) != 3:
            raise ValueError(f"the models take 3-channel images, the data gives {self.data.in_chans} "
                             f"(set data.grayscale_to_rgb=true)")
        world = self.info.world_size
        bs = cfg.schedule.batch_size
        if bs % world:
            raise ValueError(f"schedule.batch_size {bs} is the global batch: expected a multiple of the world size "
                             f"{world}")
        self.batch_size = bs // world  # per rank, per micro-batch
        if cfg.recipe.mixup or cfg.recipe.cutmix:
            if self.batch_size % 2:
                raise ValueError(f"Mixup/CutMix pairs images within a batch: expected an even per-rank batch, got "
                                 f"{self.batch_size}")

        # -- model, teacher, wrapping ----------------------------------------------------------------------------
        seed_everything(run.seed)  # identical initial weights on every rank
        from ..models import create_model

        self.model = create_model(cfg.model.name, num_classes=len(self.classes), img_size=self.data.img_size,
                                  pretrained_path=cfg.model.pretrained_path, **spec_overrides(cfg.model))
        self.teacher = None
        if cfg.recipe.teacher:
            self.teacher = create_model(cfg.recipe.teacher, num_classes=len(self.classes),
                                        img_size=self.data.img_size, pretrained_path=cfg.recipe.teacher_checkpoint)
            self.teacher.requires_grad_(False).eval().to(self.device)
        self.train_module = D.wrap_model(TrainModule(self.model, distill=self.teacher is not None), self.info,
                                         fsdp=run.fsdp)
        if run.compile:
            self.train_module = torch.compile(self.train_module)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.criterion = DeiTLoss(cfg.recipe.label_smoothing, cfg.recipe.distill_weight)
        self.scaler = torch.amp.GradScaler(self.device.type) if run.precision == "fp16" else None
        self.ema = None
        if cfg.recipe.ema:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=cfg.recipe.ema_decay, use_warmup=True)
        self.mixup = None
        if cfg.recipe.mixup or cfg.recipe.cutmix:
            from timm.data import Mixup

            self.mixup = Mixup(mixup_alpha=cfg.recipe.mixup, cutmix_alpha=cfg.recipe.cutmix,
                               prob=cfg.recipe.mixup_prob, switch_prob=cfg.recipe.mixup_switch_prob,
                               label_smoothing=cfg.recipe.label_smoothing, num_classes=len(self.classes))

        # -- loaders and schedule ---------------------------------------------------------------------------
        self.train_items = SeededItems(self.data.train, run.seed)
        self.sampler = D.make_sampler(self.train_items, self.info, shuffle=True, seed=run.seed,
                                      batch_size=self.batch_size, drop_last=True)
        pin = self.device.type == "cuda"
        self.tagged = EpochTagged(self.sampler)  # (epoch, index) keys: the epoch reaches persistent workers
        self.loader = make_loader(self.train_items, self.tagged, self.batch_size, run.num_workers, True, pin)
        self.val_sampler = D.make_sampler(self.data.val, self.info, shuffle=False, seed=run.seed,
                                          batch_size=run.eval_batch_size, even=True)
        self.val_valid = len(range(self.info.rank, len(self.data.val), world))  # real items of this rank's shard
        self.val_loader = make_loader(self.data.val, self.val_sampler, run.eval_batch_size, run.num_workers, False,
                                      pin)
        accum = cfg.schedule.accum_steps
        self.updates_per_epoch = (len(self.sampler) // self.batch_size) // accum
        if self.updates_per_epoch < 1:
            raise ValueError(f"{len(self.data.train)} training images give no full update of schedule.batch_size "
                             f"{bs} x accum_steps {accum}; expected at least {bs * accum} images")
        self.total_steps = self.updates_per_epoch * cfg.schedule.epochs
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, self.updates_per_epoch)
        self.scheduler.step_update(0)

        # -- progress state ---------------------------------------------------------------------------------
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer updates done (skipped non-finite ones included)
        self.batch = 0  # micro-batches of the current epoch done
        self.best_metric: float | None = None
        self.nonfinite_total = 0
        self.nonfinite_consecutive = 0
        self.last_metrics: dict[str, float] = {}
        self.eval_weights = "model"
        self._last_eval: dict[str, EvalResult] = {}
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
        self.reporter = make_reporter(self.run_dir, self.classes, self.is_main and run.report)
        if resume_state is not None:
            self.load_state_dict(resume_state)

    # -- messages -------------------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if self.is_main:
            self._log(message)

    def all_reduce_any(self, flag: bool) -> bool:
        return D.all_reduce_any(flag, self.info)

    # -- state ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a bit-exact resume needs (collective under torchrun: call it on every rank)."""
        return gather_state(self)

    def _sampler_state(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.batch * self.batch_size, "world_size": self.info.world_size}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint's state (every rank loads the same file)."""
        restore_state(self, state)

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
            stop = self.all_reduce_any(stop)
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
        _set_threads(self.cfg.run.threads, self.cfg.run.num_workers, self.device)  # scoped to fit()
        params = sum(p.numel() for p in self.model.parameters())
        self.log(f"training {self.cfg.model.name} ({params / 1e6:.3f}M params) on {self.cfg.data.name}: "
                 f"{len(self.data.train)} train / {len(self.data.val)} val images, {len(self.classes)} classes, "
                 f"{self.cfg.schedule.epochs} epochs x {self.updates_per_epoch} updates, device {self.device}"
                 f"{f' x {self.info.world_size} processes' if self.info.distributed else ''}, "
                 f"{torch.get_num_threads()} threads, run dir {self.run_dir}")
        if self.step:
            self.log(f"resumed at epoch {self.epoch + 1}, update {self.step}/{self.total_steps}")
        try:
            while self.epoch < self.cfg.schedule.epochs:
                if (until_step is not None and self.step >= until_step) or self._train_epoch(until_step):
                    where = self.ckpts.path_for(self.step) if self.is_main else None
                    self.log(f"paused at update {self.step} (--max-steps {until_step}); checkpoint {where}; continue "
                             f"with --resume")
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

    def _train_epoch(self, until_step: int | None) -> bool:
        """The rest of the current epoch; True if paused at ``until_step``."""
        from tqdm import tqdm

        cfg = self.cfg
        accum = cfg.schedule.accum_steps
        total_batches = self.updates_per_epoch * accum
        self.sampler.load_state_dict(self._sampler_state())  # start where this epoch stands (resume, re-entry)
        self.tagged.epoch = self.epoch
        batches = iter(self.loader)
        self.model.train()
        bar = tqdm(total=self.updates_per_epoch, initial=self.batch // accum, desc=f"epoch {self.epoch + 1}",
                   leave=False, dynamic_ncols=True, disable=not (self.is_main and sys.stdout.isatty()))
        window, epoch_meter = Meter(), Meter()
        try:
            while self.batch < total_batches:
                t_step = time.perf_counter()
                micro = [next(batches) for _ in range(accum)]
                result = run_update(self, micro)
                self.batch += accum
                self.step += 1
                self.train_time += time.perf_counter() - t_step
                if result.skipped:
                    self.nonfinite_total += 1
                    self.nonfinite_consecutive += 1
                    self.log(f"warning: update {self.step}: non-finite loss or gradient (loss {result.loss}, grad "
                             f"norm {result.grad_norm}); update skipped ({self.nonfinite_consecutive} in a row, "
                             f"{self.nonfinite_total} in all)")
                    if self.nonfinite_consecutive >= cfg.recipe.max_nonfinite:
                        raise NonFiniteLoss(
                            f"stopping: {self.nonfinite_consecutive} updates in a row had a non-finite loss or "
                            f"gradient (recipe.max_nonfinite={cfg.recipe.max_nonfinite}) at epoch "
                            f"{self.epoch + 1}, update {self.step}; try a lower optim.lr, optim.clip_grad, or "
                            f"run.precision=fp32. Last checkpoint: {self._latest_checkpoint()}")
                else:
                    self.nonfinite_consecutive = 0
                    if self.ema is not None:
                        self.ema.update(self.model, step=self.step)
                    window.add(result)
                    epoch_meter.add(result)
                self.scheduler.step_update(self.step)
                bar.update(1)
                if self.step % cfg.run.log_every == 0 or self.batch == total_batches:
                    log_window(self, window, bar)
                    window = Meter()
                if cfg.run.ckpt_every and self.step % cfg.run.ckpt_every == 0:
                    self.save_checkpoint()
                if until_step is not None and self.step >= until_step:
                    if self._saved_at_step != self.step:
                        self.save_checkpoint()
                    return True
                if self.batch < total_batches:
                    self._check_signal()
        finally:
            bar.close()
        totals = epoch_meter.reduced(self.info)
        self._epoch_train = {"train_loss": totals["loss"], "train_acc": totals["acc"]}
        return False

    def _latest_checkpoint(self) -> str:
        if not self.is_main:
            return "(rank 0 knows)"
        from .checkpoint import resume_candidates

        found = resume_candidates(self.run_dir)
        return str(found[0]) if found else "none yet"

    def evaluate(self) -> dict[str, EvalResult]:
        """Validation of the trained weights and (if kept) their EMA."""
        results = {"model": evaluate(self.train_module, self.val_loader, len(self.classes), self.device,
                                     self.precision, self.info, self.val_valid)}
        if self.ema is not None:
            results["ema"] = evaluate(self.ema.module, self.val_loader, len(self.classes), self.device,
                                      self.precision, self.info, self.val_valid)
        return results

    def _end_epoch(self) -> None:
        self.epoch += 1
        self.batch = 0
        metrics = dict(getattr(self, "_epoch_train", {}))
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        is_best = False
        last = self.epoch == self.cfg.schedule.epochs
        if self.epoch % self.cfg.run.eval_every == 0 or last:
            self._last_eval = self.evaluate()
            metrics.update(self._last_eval["model"].metrics("val_"))
            if "ema" in self._last_eval:
                metrics.update(self._last_eval["ema"].metrics("val_ema_"))
            self.eval_weights = max(self._last_eval, key=lambda k: self._last_eval[k].top1)  # model on ties
            score = self._last_eval[self.eval_weights].top1
            is_best = self.best_metric is None or score > self.best_metric
            if is_best:
                self.best_metric = score
        metrics["non_finite_steps"] = self.nonfinite_total
        self.last_metrics = {k: float(v) for k, v in metrics.items()}
        self.reporter.log_epoch(self.epoch, metrics)
        text = "  ".join(f"{k} {100 * v:.2f}%" if k.endswith(("top1", "top5", "acc")) else f"{k} {v:.4g}"
                         for k, v in metrics.items() if k != "non_finite_steps")
        self.log(f"epoch {self.epoch}/{self.cfg.schedule.epochs}  {text}")
        self.save_checkpoint(is_best=is_best)

    def summary(self, paused: bool = False) -> dict:
        return run_summary(self, paused)

    def _finish_report(self, summary: dict) -> None:
        finish_report(self, summary)
