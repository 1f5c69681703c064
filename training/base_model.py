"""The MODEL the trainer is given: the one SD1.5 check, and a fingerprint of what it samples with.

The fingerprint says whether two runs trained on the same base model: ComfyUI's
MODEL does not carry the checkpoint's file name, so the weights themselves are
sampled (:mod:`.weights_digest`: a few evenly spaced values of every tensor; the
checkpoint's own values where ComfyUI has LoRA patches written into a loaded
model).  It covers, each as its own digest:

- ``weights``: the UNet as loaded from the checkpoint;
- ``patches``: the weight patches on the MODEL (LoRAs): keys, strengths and a sample of each patch's tensors;
- ``motion``: AnimateDiff-Evolved's motion models attached to it (their weights and their own patches);
- ``sampling``: the noise schedule it samples with (the ``model_sampling`` patch, which is how
  AnimateDiff-Evolved's beta schedule and ModelSamplingDiscrete apply, or the model's own).

Reading the samples copies a few MB at most; nothing is changed.
"""
from __future__ import annotations

import hashlib

import torch

from .errors import TrainingError
from .weights_digest import NONE, fingerprint as weights_fingerprint, motion_digest, schedule_digest, value_digest


NATIVE_MODULES = ("comfy.", "torch.")   # where the classes of a ComfyUI UNet's own modules come from


def check_sd15(model, what: str):
    """The targets of an SD1.5-family MODEL (``discover_targets``), or a TrainingError naming the input."""
    import comfy.supported_models

    from ..sia import discover_targets

    diffusion_model = getattr(getattr(model, "model", None), "diffusion_model", None)
    if diffusion_model is None:
        raise TrainingError(f"the {what} input is not a diffusion MODEL; connect an SD1.5 MODEL.")
    from ..sia import families

    if families.family_of(diffusion_model) == families.WAN:
        raise TrainingError(f"the {what} input is a Wan model ({families.describe(diffusion_model)}): train it with "
                            "'Train PersonalVideo Identity (Wan)'; this node trains SD1.5 / AnimateDiff models.")
    config = getattr(model.model, "model_config", None)
    if config is not None and not isinstance(config, comfy.supported_models.SD15):
        raise TrainingError(f"the {what} input is not an SD1.5-family model (it is {type(config).__name__}). "
                            "PersonalVideo trains on SD1.5 / AnimateDiff models only: load an SD1.5 checkpoint.")
    found = discover_targets(diffusion_model)
    if not found.targets:
        raise TrainingError(f"the {what} input is not an SD1.5-family model ({found.summary()}). PersonalVideo "
                            "trains on SD1.5 / AnimateDiff models only: load an SD1.5 checkpoint.")
    return found


def _unpatched(patcher, key: str, t: torch.Tensor) -> torch.Tensor:
    """The weight as loaded from its file: while ComfyUI has a model loaded, patches (LoRAs) are written into
    its weights in place and the originals kept in ``backup`` (a tensor, or a tuple whose ``weight`` is one)."""
    kept = (getattr(patcher, "backup", None) or {}).get(key)
    if kept is None:
        return t
    return getattr(kept, "weight", kept)


def _unet_weights(model):
    """The UNet's own tensors, as loaded. Modules another pack injected into it (AnimateDiff-Evolved's motion
    modules stay in a loaded UNet after sampling, also under the clones that share it) are left out: they are
    not the checkpoint's, and the motion model is fingerprinted on its own."""
    diffusion_model = model.model.diffusion_model
    injected = tuple(name + "." for name, module in diffusion_model.named_modules()
                     if name and not type(module).__module__.startswith(NATIVE_MODULES))
    for name, t in diffusion_model.state_dict(keep_vars=True).items():
        if not name.startswith(injected):
            yield _unpatched(model, "diffusion_model." + name, t)


def patches_digest(patcher) -> str:
    """Digest of the weight patches on a ModelPatcher: keys, strengths and a sample of every patch tensor."""
    patches = getattr(patcher, "patches", None) or {}
    if not patches:
        return NONE
    digest = hashlib.sha256()
    for key in sorted(patches):
        digest.update(key.encode())
        for entry in patches[key]:
            # (strength_patch, value, strength_model[, offset, function]): all of it, the value's tensors sampled
            value_digest(tuple(entry), digest)
    return digest.hexdigest()[:16]


def _motion(model) -> str:
    """Digest of AnimateDiff-Evolved's motion models on ``model``: their weights (as loaded) and their own
    patches (motion LoRAs)."""
    from .motion_model import motion_models

    return motion_digest([({name: _unpatched(patcher, name, t)
                            for name, t in patcher.model.state_dict(keep_vars=True).items()}, patches_digest(patcher))
                          for patcher in motion_models(model)])


def model_sampling_of(model):
    """The noise schedule ``model`` samples with: its ``model_sampling`` object patch (AnimateDiff-Evolved's
    beta schedule, ModelSamplingDiscrete ...) where it has one, else the model's own."""
    if hasattr(model, "get_model_object"):
        return model.get_model_object("model_sampling")
    return (getattr(model, "object_patches", None) or {}).get("model_sampling", model.model.model_sampling)


def prediction_kind(model_sampling) -> str:
    """"eps", "v_prediction", "lcm", ...: the prediction class the schedule is combined with (ComfyUI's model
    sampling is a module class mixed with one; the nearest class in its MRO that is not a module)."""
    for cls in type(model_sampling).__mro__:
        if cls is not object and not issubclass(cls, torch.nn.Module):
            return cls.__name__.lower()
    return type(model_sampling).__name__.lower()


def _sampling(model) -> str:
    ms = model_sampling_of(model)
    sigmas = getattr(ms, "sigmas", None)
    if not torch.is_tensor(sigmas):
        return prediction_kind(ms)
    return schedule_digest(prediction_kind(ms), sigmas)


def _model_class(model) -> str:
    """The ComfyUI model class of the checkpoint (``SD15`` ...): the nearest one of comfy.supported_models."""
    config = getattr(model.model, "model_config", None)
    for cls in type(config).__mro__:
        if cls.__module__ == "comfy.supported_models":
            return cls.__name__
    return type(config).__name__


def fingerprint(model) -> dict:
    """The MODEL's fingerprint (:func:`.weights_digest.fingerprint`): the same for the same checkpoint, LoRAs,
    motion model and noise schedule, whether ComfyUI has it loaded (patches applied) or not."""
    with torch.no_grad():
        return weights_fingerprint(_model_class(model), _unet_weights(model),
                                   patches=patches_digest(model), motion=_motion(model), sampling=_sampling(model))
