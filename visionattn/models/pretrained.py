"""``create_model(name, pretrained=True)``: a preset's timm twin's published weights, fetched by timm, converted.

The weights come through timm's own mechanism — ``timm.create_model(twin, pretrained=True)``, which resolves the
twin's ``pretrained_cfg`` (Hugging Face hub id, file name, timm's checkpoint filter) and caches the download
where timm and ``huggingface_hub`` always do. Its state dict then goes through the family's converter
(``convert_state_dict``) and a strict load. The classifier (``Backbone.classifier_names``) is kept only when it
fits: a twin published without a head (DINO) or with another class count leaves ours as initialised.

No network is needed anywhere else in the library; when the hub cannot be reached, :class:`PretrainedUnavailable`
says how to load the same weights from a file (``pretrained_path``).
"""

from __future__ import annotations

from torch import Tensor, nn

from .checkpoint import check_state_dict


class PretrainedUnavailable(OSError):
    """The twin's published weights could not be fetched (offline, hub unreachable, not in timm's cache)."""


def fetch_timm_state_dict(twin: str) -> dict[str, Tensor]:
    """The state dict of ``timm.create_model(twin, pretrained=True)``: timm downloads (or reads its cache) and
    applies its own checkpoint filter. Raises :class:`PretrainedUnavailable` when that fails."""
    import timm

    try:
        model = timm.create_model(twin, pretrained=True)
    except Exception as err:  # noqa: BLE001 - hub/network/cache errors come in many types
        raise PretrainedUnavailable(
            f"could not fetch the published weights of timm model {twin!r} ({type(err).__name__}: {err}). "
            f"Offline? On a machine that reaches the Hugging Face hub, save them with "
            f"torch.save(timm.create_model({twin!r}, pretrained=True).state_dict(), 'weights.pth') and build with "
            f"create_model(name, pretrained_path='weights.pth')"
        ) from err
    return model.state_dict()


def _keep_fitting_classifier(model: nn.Module, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Replace the checkpoint's classifier by the model's own where it is missing or does not fit."""
    own = model.state_dict()
    out = dict(state_dict)
    for name in getattr(model, "classifier_names", ()):
        prefix = name + "."
        ours = {k: v for k, v in own.items() if k.startswith(prefix)}
        theirs = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
        fits = ours.keys() == theirs.keys() and all(ours[k].shape == theirs[k].shape for k in ours)
        if not fits:
            for k in theirs:
                del out[k]
            out.update(ours)
    return out


def load_timm_twin(model: nn.Module, twin: str) -> nn.Module:
    """Fetch ``twin``'s published weights through timm, convert them for ``model`` and load them (strict except
    for a classifier that does not fit). Returns the model."""
    state_dict = fetch_timm_state_dict(twin)
    convert = getattr(model, "convert_state_dict", None)
    if callable(convert):
        state_dict = convert(state_dict)
    state_dict = _keep_fitting_classifier(model, state_dict)
    check_state_dict(model, state_dict, f"timm {twin!r} published weights")
    model.load_state_dict(state_dict, strict=True)
    return model


__all__ = ["PretrainedUnavailable", "fetch_timm_state_dict", "load_timm_twin"]
