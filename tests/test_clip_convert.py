"""An open_clip / OpenAI CLIP file imported as a visionattn checkpoint (``visionattn.tasks.clip.convert``):

* the checkpoint rebuilt by ``model_from_checkpoint`` gives open_clip's image and text embeddings (≤ 1e-5 relative)
  for an OpenAI-format file (QuickGELU inferred) and an open_clip state dict;
* ``predict_checkpoint`` on it ranks ``--text`` phrases with open_clip's own probabilities (open_clip's normalisation
  after the square resize), and without texts ranks the imported labels;
* bad input is named: an output that would overwrite the input, a file that is not a CLIP state dict, empty labels.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

open_clip = pytest.importorskip("open_clip")

from visionattn.tasks.base import PredictOptions  # noqa: E402
from visionattn.tasks.clip.convert import import_clip_checkpoint, main  # noqa: E402
from visionattn.train.evaluate import model_from_checkpoint, predict_checkpoint  # noqa: E402

SMALL = dict(embed_dim=48, vision_cfg=dict(image_size=32, layers=2, width=128, patch_size=8),
             text_cfg=dict(context_length=20, vocab_size=49408, width=128, heads=2, layers=2))
TEXTS = ["a red square", "a blue circle on white", "two birds"]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _openai_file(tmp_path, quick_gelu=True):
    from open_clip.model import CLIP

    torch.manual_seed(0)
    oc = CLIP(**SMALL, quick_gelu=quick_gelu).eval()
    with torch.no_grad():  # a non-trivial temperature, as a trained file has
        oc.logit_scale.fill_(3.0)
    state = dict(oc.state_dict())
    if quick_gelu:  # OpenAI's size entries mark the format (QuickGELU)
        state.update(input_resolution=torch.tensor(32), context_length=torch.tensor(20),
                     vocab_size=torch.tensor(49408))
    path = tmp_path / ("openai.pt" if quick_gelu else "open_clip.pt")
    torch.save(state, path)
    return oc, path


@pytest.mark.parametrize("quick_gelu", [True, False], ids=["openai", "open_clip"])
def test_imported_checkpoint_gives_open_clip_embeddings(tmp_path, quick_gelu):
    oc, src = _openai_file(tmp_path, quick_gelu)
    dst = import_clip_checkpoint(src, tmp_path / "clip.pt", labels=["cat", "dog"])
    restored = model_from_checkpoint(dst, task="clip")
    assert restored.model.text.spec.act == ("quick_gelu" if quick_gelu else "gelu")
    g = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, 32, 32, generator=g)
    ids = open_clip.get_tokenizer("ViT-B-32")(TEXTS, context_length=20)
    with torch.no_grad():
        got_i = restored.model.encode_image(images, normalize=False)
        got_t = restored.model.encode_text(ids, normalize=False)
        want_i, want_t = oc.encode_image(images), oc.encode_text(ids)
    assert _rel(got_i, want_i) <= 1e-5 and _rel(got_t, want_t) <= 1e-5, (_rel(got_i, want_i), _rel(got_t, want_t))
    assert restored.meta["known_classes"] == ["cat", "dog"] and restored.meta["img_size"] == 32


def test_predict_on_an_imported_file_ranks_like_open_clip(tmp_path):
    oc, src = _openai_file(tmp_path)
    dst = import_clip_checkpoint(src, tmp_path / "clip.pt", labels=["cat", "dog", "bird"])
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(paths[-1])
    out = predict_checkpoint(dst, [str(p) for p in paths], PredictOptions(top_k=3, texts=TEXTS), device="cpu")
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from torchvision.transforms import v2

    transform = v2.Compose([v2.Resize((32, 32), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
                            v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(OPENAI_DATASET_MEAN, OPENAI_DATASET_STD)])  # open_clip's, square resize
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        img = torch.nn.functional.normalize(oc.encode_image(x), dim=-1)
        txt = torch.nn.functional.normalize(oc.encode_text(open_clip.get_tokenizer("ViT-B-32")(TEXTS, 20)), dim=-1)
        want = (oc.logit_scale.exp() * img @ txt.t()).softmax(-1)
    for line, row in zip(out.lines, want, strict=True):
        found = re.finditer(r"((?:\w+ ?)+?) (\d+\.\d)%", line.split(": ", 1)[1])
        ranked = [(m.group(1), float(m.group(2))) for m in found]
        order = row.argsort(descending=True).tolist()
        assert [t for t, _ in ranked] == [TEXTS[j] for j in order], line
        assert [p for _, p in ranked] == pytest.approx([100 * float(row[j]) for j in order], abs=0.051), line
    labels = predict_checkpoint(dst, [str(paths[0])], PredictOptions(top_k=3), device="cpu").lines[0]
    assert sorted(re.findall(r"(cat|dog|bird) \d", labels)) == ["bird", "cat", "dog"], labels


def test_import_errors_are_named(tmp_path, capsys):
    _, src = _openai_file(tmp_path)
    with pytest.raises(ValueError, match="would overwrite the input"):
        import_clip_checkpoint(src, src)
    with pytest.raises(ValueError, match="labels must be non-empty"):
        import_clip_checkpoint(src, tmp_path / "x.pt", labels=["cat", " "])
    torch.save({"w": torch.zeros(2)}, tmp_path / "other.pt")
    assert main([str(tmp_path / "other.pt"), str(tmp_path / "y.pt")]) == 2
    assert "not an open_clip / OpenAI ViT CLIP state dict: missing ['visual.conv1.weight'" in capsys.readouterr().out
    assert not (tmp_path / "y.pt").exists()
