"""``create_model(name, pretrained=True)``: the preset's timm twin's published weights come through timm's own
loader (``timm.create_model(twin, pretrained=True)``: its pretrained_cfg, hub id, safetensors preference and
checkpoint filter) and the family's converter. No network here: the hub download
(``timm.models._hub.hf_hub_download``) is replaced by one that returns a file written from a random-init timm
model, or that fails as it does offline."""

from __future__ import annotations

import pytest
import timm
import timm.models._hub as timm_hub
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors.torch import save_file

from visionattn.models import create_model, get_preset, list_models
from visionattn.models.pretrained import PretrainedUnavailable


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _random_timm(name: str, seed: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


@pytest.fixture()
def fake_hub(tmp_path, monkeypatch):
    """Serve ``model.safetensors`` for any hub request (as the hub would), recording the requests."""
    requests = []

    def serve(model: torch.nn.Module):
        path = tmp_path / "model.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))

        def download(repo_id, filename, revision=None, cache_dir=None, **kwargs):
            requests.append((repo_id, filename))
            return str(path)

        monkeypatch.setattr(timm_hub, "hf_hub_download", download)
        return requests

    return serve


def _images(size: int = 224) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(4))


def test_pretrained_vit_equals_the_twin(fake_hub):
    twin = _random_timm("vit_tiny_patch16_224")
    requests = fake_hub(twin)
    ours = create_model("vit_tiny_patch16_224", pretrained=True).eval()
    assert requests and requests[0] == ("timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k", "model.safetensors")
    x = _images()
    with torch.no_grad():
        ref = twin(x)
        torch.testing.assert_close(ours(x), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    assert ref.abs().max() > 0.1


def test_pretrained_with_other_classes_keeps_the_backbone_and_a_fresh_head(fake_hub):
    twin = _random_timm("vit_tiny_patch16_224")
    fake_hub(twin)
    ours = create_model("vit_tiny_patch16_224", pretrained=True, num_classes=10).eval()
    assert ours.head.weight.shape == (10, 192)
    torch.testing.assert_close(ours.patch_embed.proj.weight, twin.patch_embed.proj.weight, rtol=0, atol=0)
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(ours.forward_head(ours.forward_features(x), pre_logits=True),
                                   twin.forward_head(twin.forward_features(x), pre_logits=True), rtol=1e-5, atol=1e-5)


def test_pretrained_resnet_through_the_converter(fake_hub):
    twin = _random_timm("resnet26")
    requests = fake_hub(twin)
    ours = create_model("resnet26", pretrained=True).eval()
    assert requests[0][0] == "timm/resnet26.bt_in1k"
    x = _images(64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), twin(x), rtol=1e-4, atol=1e-4)


def test_offline_is_a_clear_error_naming_pretrained_path(monkeypatch):
    def offline(repo_id, filename, **kwargs):
        raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache and outgoing traffic has "
                                      "been disabled")

    monkeypatch.setattr(timm_hub, "hf_hub_download", offline)
    with pytest.raises(PretrainedUnavailable, match=r"'vit_tiny_patch16_224'.*Offline\?.*pretrained_path") as err:
        create_model("vit_tiny_patch16_224", pretrained=True)
    assert isinstance(err.value, OSError) and "LocalEntryNotFoundError" in str(err.value)


def test_presets_without_twin_or_with_both_sources_refuse():
    with pytest.raises(ValueError, match=r"'swin_nano_patch4_window7_224' has none.*pretrained_path=FILE"):
        create_model("swin_nano_patch4_window7_224", pretrained=True)
    with pytest.raises(ValueError, match="not both"):
        create_model("vit_tiny_patch16_224", pretrained=True, pretrained_path="w.pth")


def test_every_twin_is_a_timm_model_with_published_weights():
    twins = {n: get_preset(n).timm_twin for n in list_models() if get_preset(n).timm_twin}
    assert {"vit_tiny_patch16_224", "deit_small_distilled_patch16_224", "dino_vit_small_patch16",
            "swin_tiny_patch4_window7_224", "resnet50"} <= set(twins)
    for name, twin in twins.items():
        cfg = timm.models.get_pretrained_cfg(twin)
        assert cfg is not None and cfg.hf_hub_id, f"{name}: timm has no published weights for {twin!r}"
        assert get_preset(name).num_classes in (cfg.num_classes, 1000), (name, twin)
    assert not any(get_preset(n).timm_twin for n in list_models("*_test"))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in list_models() if get_preset(n).timm_twin])
def test_every_twin_loads_and_matches(fake_hub, name):
    twin_name = get_preset(name).timm_twin
    twin = _random_timm(twin_name)
    fake_hub(twin)
    ours = create_model(name, pretrained=True).eval()
    x = _images()
    with torch.no_grad():
        ref, got = twin(x), ours(x)
    if ours.num_classes == twin.num_classes:
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
