"""The video task's data: ``data.name`` = ``moving_digits`` (built in, composed), ``video_folder``,
``frame_folder`` or ``video_csv`` (:mod:`visionattn.data.video`), as :class:`VideoClips` datasets of dict samples
``{"video": (3, T, S, S) train | (K, 3, T, S, S) val, "label": int}``.

Folders without a ``val/`` subfolder and CSVs are split per class by ``data.val_fraction`` (seeded by ``data.seed``);
``data.train_fraction`` keeps a stratified share of the training videos. Files that cannot be used are skipped with
a one-line warning each and listed in ``TaskData.skipped``; videos shorter than a clip are looped or padded (counted
in the description and warned once) or skipped, as ``task.short_videos`` says.
"""

from __future__ import annotations

import warnings

from ...data import DataConfig
from ...data.builtin import stratified_split
from ...data.config import SkippedImageWarning, warn_skipped
from ...data.subset import TargetSubset, subset_indices
from ...data.video import (
    VIDEO_DATASETS,
    ClipSampling,
    FileVideos,
    VideoClips,
    VideoItem,
    build_video_transform,
    index_csv,
    index_folder,
    moving_digits_videos,
)
from ..base import TaskData
from .options import VideoOptions

__all__ = ["VIDEO_DATASETS", "build_video_data", "clip_transform"]


def clip_transform(cfg: DataConfig, train: bool):
    """The clip transform of ``cfg`` (``img_size``, crop, flip, mean/std) for training or evaluation."""
    return build_video_transform(cfg.img_size, train, random_resized_crop=cfg.random_resized_crop,
                                 crop_scale=cfg.crop_scale, hflip=cfg.hflip, mean=cfg.mean, std=cfg.std)


def _check_config(cfg: DataConfig) -> None:
    if cfg.name not in VIDEO_DATASETS:
        raise ValueError(f"the video task trains on data.name in {VIDEO_DATASETS}, got {cfg.name!r}")
    if cfg.randaugment is not None:
        raise ValueError(f"data.randaugment is an image augmentation; the video task takes crop/flip only, got "
                         f"{cfg.randaugment!r}")


def _file_sources(cfg: DataConfig, opts: VideoOptions, sampling: ClipSampling, skipped: list):
    classes = cfg.classes
    if cfg.name == "video_csv":
        items, classes = index_csv(cfg.path, classes, skipped, opts.verify_videos)
        val = None
    else:
        items, val, classes = index_folder(cfg.path, cfg.name, classes, skipped, opts.verify_videos)
    if sampling.short == "skip":
        span = sampling.span
        keep = [it for it in items + (val or []) if it.frames >= span]
        skipped += [(it.path, f"{it.frames} frames, shorter than a clip ({sampling.num_frames} frames every "
                              f"{sampling.stride}: {span}); task.short_videos=skip") for it in items + (val or [])
                    if it.frames < span]
        items, val = [it for it in items if it in keep], None if val is None else [it for it in val if it in keep]
    if val is None and items:
        if not 0 < cfg.val_fraction < 1:
            raise ValueError(f"{cfg.name} {cfg.path!r} has no val/ split; expected data.val_fraction in (0, 1), got "
                             f"{cfg.val_fraction}")
        train_idx, val_idx = stratified_split([it.label for it in items], cfg.val_fraction, cfg.seed)
        items, val = [items[i] for i in train_idx], [items[i] for i in val_idx]
    return FileVideos(items, classes), FileVideos(val or [], classes)


def _short_note(items: list[VideoItem], sampling: ClipSampling) -> str:
    short = [it for it in items if sampling.is_short(it.frames)]
    if not short:
        return ""
    how = "looped from their start" if sampling.short == "loop" else "padded with their last frame"
    note = (f"{len(short)} videos shorter than a clip ({sampling.span} frames) are {how} "
            f"(task.short_videos={sampling.short}); e.g. {short[0].path} ({short[0].frames} frames)")
    with warnings.catch_warnings():
        warnings.simplefilter("always", SkippedImageWarning)
        warnings.warn(note, SkippedImageWarning, stacklevel=3)
    return note


def build_video_data(cfg: DataConfig, opts: VideoOptions) -> TaskData:
    """Train / val clip datasets for ``cfg`` with the sampling of ``opts`` (module docstring)."""
    _check_config(cfg)
    sampling = opts.clip_sampling()
    skipped: list[tuple[str, str]] = []
    if cfg.name == "moving_digits":
        common = dict(task=opts.digits_task, frames=opts.digits_frames, size=cfg.img_size, speed=opts.digits_speed,
                      noise=opts.digits_noise, seed=cfg.seed)
        train = moving_digits_videos("train", opts.digits_train, **common)
        val = moving_digits_videos("val", opts.digits_val, **common)
        where, note = f"moving digits ({opts.digits_task}, {opts.digits_frames} frames)", ""
        if sampling.is_short(opts.digits_frames):
            note = (f"moving-digit videos of {opts.digits_frames} frames are shorter than a clip ({sampling.span}); "
                    f"they are {'looped' if sampling.short == 'loop' else 'padded'}")
    else:
        train, val = _file_sources(cfg, opts, sampling, skipped)
        where = f"{cfg.name} {cfg.path!r}"
        warn_skipped(where, skipped)
        note = _short_note(train.items + val.items, sampling)
    if len(train) == 0 or len(set(train.targets)) < 2:
        example = f"; e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise ValueError(f"{where} has {len(train)} usable training videos of {len(set(train.targets))} classes "
                         f"({len(skipped)} skipped{example}); expected videos of at least 2 classes")
    if len(val) == 0:
        raise ValueError(f"{where} has no validation videos; expected a val/ folder or data.val_fraction > 0")
    train_set = VideoClips(train, sampling, clip_transform(cfg, train=True), train=True)
    val_set = VideoClips(val, sampling, clip_transform(cfg, train=False), train=False)
    if cfg.train_fraction < 1:
        seed = cfg.seed if cfg.subset_seed is None else cfg.subset_seed
        train_set = TargetSubset(train_set, subset_indices(train_set.targets, cfg.train_fraction, seed))
    meta = {"classes": list(train.classes), "img_size": int(cfg.img_size), "in_chans": 3,
            "num_frames": sampling.num_frames, "frame_stride": sampling.stride, "sampling": sampling.mode,
            "test_clips": sampling.clips, "short_videos": sampling.short, "mean": list(cfg.mean),
            "std": list(cfg.std)}
    description = (f"{where}: {len(train_set)} train / {len(val_set)} val videos, clips of {sampling.num_frames} "
                   f"frames ({sampling.mode} sampling, stride {sampling.stride}), {sampling.clips} clip(s) per val "
                   f"video" + (f"; {note}" if note else ""))
    return TaskData(train=train_set, val=val_set, meta=meta, skipped=list(skipped), description=description)
