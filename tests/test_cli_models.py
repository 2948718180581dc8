"""``visionattn models``: one row per preset with taxonomy axes, params and GMACs, as JSON or a table."""

from __future__ import annotations

import json

import pytest
import torch

from visionattn.cli import main
from visionattn.models import create_model, get_preset, list_models
from visionattn.models.summary import COLUMNS, format_table
from visionattn.models.taxonomy import BLOCK, FORM, GEOMETRY, PURITY, SCALES

FIELDS = {"name", "purity", "form", "scales", "geometry", "block", "params", "params_m", "gmacs", "gflops",
          "attn_gmacs", "img_size", "tiny", "paper"}


def _run(capsys, argv: list[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_models_json_tiny_variants(capsys):
    rows = json.loads(_run(capsys, ["models", "--format", "json", "--all", "*_test"]))
    expected = list_models("*_test")
    assert [r["name"] for r in rows] == expected
    if not rows:
        pytest.skip("no *_test preset registered yet")
    for row in rows:
        assert set(row) == FIELDS, sorted(set(row) ^ FIELDS)
        assert row["purity"] in PURITY and row["form"] in FORM and row["scales"] in SCALES
        assert row["geometry"] in GEOMETRY and row["block"] in BLOCK
        assert row["img_size"] == get_preset(row["name"]).img_size
        assert row["params"] > 0 and row["gmacs"] > 0 and 0 <= row["attn_gmacs"] <= row["gmacs"]
        assert row["gflops"] == pytest.approx(2 * row["gmacs"], rel=1e-3)
        if row["form"] == "none":
            assert row["attn_gmacs"] == 0
    row = rows[0]
    model = create_model(row["name"])
    assert row["params"] == sum(p.numel() for p in model.parameters())
    assert row["params_m"] == pytest.approx(row["params"] / 1e6, rel=1e-3)


def test_tiny_hidden_without_all(capsys):
    names = list_models("*_test")
    if not names:
        pytest.skip("no *_test preset registered yet")
    assert json.loads(_run(capsys, ["models", "--format", "json", "*_test"])) == []
    out = _run(capsys, ["models", names[0], "--all"])  # table of one preset
    lines = out.splitlines()
    assert lines[0].split() == list(COLUMNS) and lines[2].startswith(names[0])


def test_no_match_and_table_format(capsys):
    out = _run(capsys, ["models", "no_such_model_*"])
    assert "no registered model matches" in out
    table = format_table([{c: (1.5 if c == "gmacs" else "x") for c in COLUMNS}])
    assert table.splitlines()[0].split() == list(COLUMNS) and "1.50" in table


def test_attention_share_of_a_vit(capsys):
    """ViT-Ti's attention share is its analytic pair count: 12 layers x 3 heads x 2·197²·64 x 2 (QK and AV)."""
    if "vit_tiny_patch16_224" not in list_models():
        pytest.skip("vit_tiny_patch16_224 not registered yet")
    torch.manual_seed(0)
    (row,) = json.loads(_run(capsys, ["models", "--format", "json", "vit_tiny_patch16_224"]))
    expected = 12 * 3 * 2 * 197 * 197 * 64 * 2 / 2e9  # GMACs
    assert row["attn_gmacs"] == pytest.approx(expected, rel=1e-3)
    assert row["gmacs"] == pytest.approx(1.26, rel=0.01)
