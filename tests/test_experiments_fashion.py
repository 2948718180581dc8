"""The Fashion-MNIST experiment files (issue 18) and ``data.val_subset``: every file follows the schema and its
train configs build (no training here: the runs take minutes to hours, see docs/experiments.md)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FASHION = sorted((ROOT / "experiments").glob("*_fashion*.yaml"))


def test_val_subset_is_a_seeded_stratified_subset_of_validation():
    from visionattn.data import DataConfig, build_datasets

    full = build_datasets(DataConfig(name="digits", img_size=8))
    part = build_datasets(DataConfig(name="digits", img_size=8, val_subset=0.5))
    again = build_datasets(DataConfig(name="digits", img_size=8, val_subset=0.5, train_fraction=0.5, subset_seed=9))
    other = build_datasets(DataConfig(name="digits", img_size=8, val_subset=0.5, seed=1))
    assert len(part.train) == len(full.train)  # training set untouched
    counts, full_counts = Counter(part.val.targets), Counter(full.val.targets)
    for label, n in full_counts.items():  # per class n - round(0.5 n)
        assert counts[label] == n - round(0.5 * n)
    assert part.val.indices == again.val.indices  # seeded by data.seed, not by the training subset's seed
    assert len(again.train) < len(full.train)
    image, label = part.val[3]
    original = full.val[part.val.indices[3]]
    assert label == original[1] and (image == original[0]).all()
    assert other.val.targets != full.val.targets or len(other.val) < len(full.val)
    with pytest.raises(ValueError, match=r"DataConfig.val_subset: expected a number in \(0, 1\], got 0"):
        DataConfig(val_subset=0)
    with pytest.raises(ValueError, match=r"DataConfig.val_subset: expected a number in \(0, 1\], got True"):
        DataConfig(val_subset=True)


def test_there_are_fashion_experiments():
    names = {p.stem for p in FASHION}
    assert {"posenc_ablation_fashion", "data_regimes_fashion", "data_regimes_fashion_epochs",
            "local_vs_global_fashion"} <= names, names


@pytest.mark.parametrize("path", FASHION, ids=[p.stem for p in FASHION])
def test_fashion_experiment_files_are_valid(path, tmp_path):
    from visionattn.experiments.runner import check_plans
    from visionattn.experiments.spec import load_spec, plan_runs

    spec = load_spec(path)
    assert spec.name == path.stem and spec.kind == "train"
    assert spec.base["data"]["name"] == "fashion_mnist"
    assert len(spec.seeds) >= 3
    assert "expected" in path.read_text() and spec.expected.strip()
    for chosen in (spec, spec.with_quick()):
        plans = plan_runs(chosen)
        check_plans(chosen, plans, tmp_path)  # every variant's train config builds
        for plan in plans:
            assert plan.params["data"]["img_size"] >= 28  # a resolution where position matters
