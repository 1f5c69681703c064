"""The Spatial Identity Adapter as peft's LoRA on a diffusers UNet, and back to our adapter files.

Targets: ``attn1.to_q/to_k/to_v`` of every transformer block of the UNet's spatial
transformers (``down_blocks.*.attentions.*``, ``mid_block.attentions.0``,
``up_blocks.*.attentions.*``), exactly the layers :mod:`..sia.naming` names; never
``motion_modules`` (which have ``attn1.to_q`` too), never cross-attention (``attn2``).
peft's scale is ``lora_alpha / r``, the same as the file's ``alpha / rank``; the
file itself is written and read by :mod:`..sia.file_format`.
"""
from __future__ import annotations

import torch

from ..sia import naming
from ..sia.adapter import AdapterInfo, SIAAdapter
from .errors import EngineError

ADAPTER_NAME = "sia"


def target_names(unet: torch.nn.Module, res_blocks: int = 2) -> list:
    """Module names (diffusers) of the adapter's target layers in ``unet``, sorted."""
    names = []
    for name, module in unet.named_modules():
        linear = getattr(module, "base_layer", module)  # once the LoRA is on, peft's layer wraps the Linear
        if not isinstance(linear, torch.nn.Linear) or ".attn1.to_" not in name:
            continue
        try:
            naming.from_diffusers(name, res_blocks)
        except ValueError:
            continue  # motion modules, attn2 and everything else
        names.append(name)
    if not names:
        raise EngineError("the UNet has no spatial self-attention layers of the SD1.5 layout; the adapter works "
                          "with SD1.5-family models only.")
    return sorted(names)


def targets(unet: torch.nn.Module, res_blocks: int = 2) -> list:
    """The target layers as the nodes name them (:class:`..sia.targets.Target`: ldm path, in and out features)."""
    from ..sia.targets import Target

    modules = dict(unet.named_modules())
    out = []
    for name in target_names(unet, res_blocks):
        linear = getattr(modules[name], "base_layer", modules[name])
        out.append(Target(naming.from_diffusers(name, res_blocks), linear.in_features, linear.out_features, linear))
    return out


def attach(unet: torch.nn.Module, rank: int, alpha: float, res_blocks: int = 2, adapter=None) -> list:
    """Add the LoRA to ``unet`` (peft, adapter ``sia``); load ``adapter``'s weights when given, else peft's
    initialisation (down random, up zero: a no-op).  Returns the target names."""
    names = inject(unet, target_names(unet, res_blocks), rank, alpha)
    if adapter is not None:
        load_weights(unet, adapter, res_blocks)
    return names


def inject(model: torch.nn.Module, names: list, rank: int, alpha: float) -> list:
    """peft's LoRA (adapter ``sia``) on the layers ``names`` of ``model`` (any earlier one taken off first);
    only the LoRA's weights are trainable."""
    from peft import LoraConfig, inject_adapter_in_model

    detach(model)  # one adapter at a time
    if rank < 1:
        raise EngineError(f"rank must be at least 1 (got {rank}).")
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha), target_modules=names, lora_dropout=0.0,
                        init_lora_weights=True, bias="none")
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    for name, param in model.named_parameters():
        param.requires_grad_(".lora_" in name)
    return names


def lora_layers(unet: torch.nn.Module) -> dict:
    """Target name -> peft LoRA layer."""
    return {n: m for n, m in unet.named_modules() if hasattr(m, "lora_A") and ADAPTER_NAME in m.lora_A}


def load_weights(unet: torch.nn.Module, adapter: SIAAdapter, res_blocks: int = 2) -> None:
    copy_weights(unet, adapter, {naming.to_diffusers(p, res_blocks): p for p in adapter.paths}, "UNet")


def copy_weights(model: torch.nn.Module, adapter: SIAAdapter, wanted: dict, what: str) -> None:
    """``adapter``'s weights into the LoRA layers of ``model``; ``wanted``: {layer name in ``model``: the
    adapter's path for it}, every LoRA layer exactly once; ``what`` names the model in messages."""
    layers = lora_layers(model)
    if set(wanted) != set(layers):
        missing, extra = sorted(set(layers) - set(wanted)), sorted(set(wanted) - set(layers))
        raise EngineError(f"the adapter {adapter.source} does not fit this {what} ({len(missing)} of its layers "
                          f"missing from the file, e.g. {missing[:1]}; {len(extra)} file layers not in it, e.g. "
                          f"{extra[:1]}). It was made for another base model.")
    rank = int(layers[next(iter(layers))].r[ADAPTER_NAME])
    if adapter.rank != rank:
        raise EngineError(f"internal: the adapter {adapter.source} has rank {adapter.rank}, the LoRA layers rank {rank}.")
    with torch.no_grad():
        for name, layer in layers.items():
            down, up = adapter.down[wanted[name]], adapter.up[wanted[name]]
            a, b = layer.lora_A[ADAPTER_NAME].weight, layer.lora_B[ADAPTER_NAME].weight
            if tuple(a.shape) != tuple(down.shape) or tuple(b.shape) != tuple(up.shape):
                raise EngineError(f"the adapter {adapter.source} does not fit this {what}: layer {name} is "
                                  f"{a.shape[1]}->{b.shape[0]} here, {down.shape[1]}->{up.shape[0]} in the file.")
            a.copy_(down)
            b.copy_(up)
            layer.scaling[ADAPTER_NAME] = float(adapter.alpha) / adapter.rank


def extract(unet: torch.nn.Module, alpha: float, info: AdapterInfo, res_blocks: int = 2,
            embedding: torch.Tensor | None = None) -> SIAAdapter:
    """Our adapter (detached fp32 copies) from the LoRA in ``unet``, ready for :func:`..sia.save_adapter`."""
    info.num_res_blocks = res_blocks
    return extract_weights(unet, lambda name: naming.from_diffusers(name, res_blocks), alpha, info, embedding)


def extract_weights(model: torch.nn.Module, path_of, alpha: float, info: AdapterInfo,
                    embedding: torch.Tensor | None = None) -> SIAAdapter:
    """The LoRA in ``model`` as our adapter, each layer under ``path_of(layer name)`` (detached fp32 copies)."""
    down, up = {}, {}
    for name, layer in lora_layers(model).items():
        path = path_of(name)
        down[path] = layer.lora_A[ADAPTER_NAME].weight.detach().float().cpu().clone()
        up[path] = layer.lora_B[ADAPTER_NAME].weight.detach().float().cpu().clone()
    if not down:
        raise EngineError("internal: the model carries no SIA LoRA")
    return SIAAdapter(down, up, float(alpha), info,
                      embedding=None if embedding is None else embedding.detach().float().cpu().reshape(1, -1))


def parameters(unet: torch.nn.Module) -> list:
    return [p for n, p in unet.named_parameters() if ".lora_" in n and ADAPTER_NAME in n]


def set_enabled(unet: torch.nn.Module, on: bool) -> None:
    """Switch the adapter on or off for the next UNet calls (peft's own switch on every LoRA layer)."""
    for layer in lora_layers(unet).values():
        layer.enable_adapters(on)


def set_strength(unet: torch.nn.Module, scale: float) -> None:
    """The LoRA's output scale (strength * alpha / rank) on every layer."""
    for layer in lora_layers(unet).values():
        layer.scaling[ADAPTER_NAME] = float(scale)


def detach(unet: torch.nn.Module) -> None:
    """Take the LoRA off: every peft layer is replaced by the Linear it wraps (the UNet is as loaded)."""
    modules = dict(unet.named_modules())
    for name, layer in lora_layers(unet).items():
        parent, _, child = name.rpartition(".")
        setattr(modules[parent] if parent else unet, child, layer.get_base_layer())
