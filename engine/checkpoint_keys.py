"""Key names of the files ComfyUI users have, mapped to diffusers' module names (and shapes read from them).

- SD1.5 single-file checkpoints (ldm layout): ``model.diffusion_model.*`` (UNet),
  ``first_stage_model.*`` (VAE), ``cond_stage_model.transformer.*`` (CLIP-L text model).
- AnimateDiff / AnimateLCM motion-module files (``down_blocks.0.motion_modules.0.
  temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight`` ...).

The UNet layout facts used: level ``l`` of the encoder holds ``input_blocks``
``1 + l*(R+1) + j`` (residual block j, then its spatial transformer) and its
downsampler at ``(l+1)*(R+1)``; decoder level ``k`` (deepest first, as diffusers
counts ``up_blocks``) holds ``output_blocks`` ``k*(R+1) + j`` with the upsampler
last in the final one; R residual blocks per level (2 in SD1.5).
"""
from __future__ import annotations

import re

from .errors import EngineError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

_RESNET = (("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("emb_layers.1.", "time_emb_proj."),
           ("out_layers.0.", "norm2."), ("out_layers.3.", "conv2."), ("skip_connection.", "conv_shortcut."))
_VAE_RESNET = (("nin_shortcut.", "conv_shortcut."),)
_VAE_ATTENTION = (("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."),
                  ("proj_out.", "to_out.0."))
_TOP = {"time_embed.0.": "time_embedding.linear_1.", "time_embed.2.": "time_embedding.linear_2.",
        "input_blocks.0.0.": "conv_in.", "out.0.": "conv_norm_out.", "out.2.": "conv_out."}


def _rename(rest: str, table) -> str:
    for old, new in table:
        if rest.startswith(old):
            return new + rest[len(old):]
    return rest


def split(state_dict: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


# ---- UNet ----

def unet_layout(sd: dict) -> dict:
    """What an ldm UNet state dict (no prefix) tells about its layout."""
    if "input_blocks.0.0.weight" not in sd:
        raise EngineError("the checkpoint has no SD1.5 UNet (no model.diffusion_model.input_blocks.0.0.weight); "
                          "give an SD1.5-family checkpoint.")
    downs = sorted(int(m[1]) for k in sd if (m := re.match(r"input_blocks\.(\d+)\.0\.op\.weight$", k)))
    per_level = downs[0] if downs else max(int(k.split(".")[1]) for k in sd if k.startswith("input_blocks.")) + 1
    levels = len(downs) + 1
    widths, attention = [], []
    for level in range(levels):
        first = 1 + level * per_level
        widths.append(int(sd[f"input_blocks.{first}.0.out_layers.3.weight"].shape[0]))
        attention.append(f"input_blocks.{first}.1.proj_in.weight" in sd)
    probe = next((k for k in sorted(sd) if k.endswith("transformer_blocks.0.attn2.to_k.weight")), None)
    if probe is None:
        raise EngineError("the checkpoint's UNet has no cross-attention layers: it is not an SD1.5-family model.")
    depth = 1 + max(int(m[1]) for k in sd if (m := re.search(r"\.transformer_blocks\.(\d+)\.", k)))
    proj_in = next(v for k, v in sorted(sd.items()) if k.endswith(".1.proj_in.weight"))
    return {"per_level": per_level, "res_blocks": per_level - 1, "levels": levels, "widths": widths,
            "attention": attention, "context_dim": int(sd[probe].shape[1]), "depth": depth,
            "linear_projection": proj_in.dim() == 2, "in_channels": int(sd["input_blocks.0.0.weight"].shape[1])}


def unet_config(layout: dict, base: dict) -> dict:
    config = dict(base)
    config.update(
        block_out_channels=list(layout["widths"]), layers_per_block=layout["res_blocks"],
        in_channels=layout["in_channels"], cross_attention_dim=layout["context_dim"],
        use_linear_projection=layout["linear_projection"],
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in layout["attention"]],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(layout["attention"])])
    if layout["depth"] != 1:
        config["transformer_layers_per_block"] = layout["depth"]
    return config


def unet_to_diffusers(sd: dict, layout: dict) -> dict:
    """ldm UNet keys (no prefix) -> UNet2DConditionModel keys."""
    per, levels = layout["per_level"], layout["levels"]
    up_attention = list(reversed(layout["attention"]))
    out = {}
    for key, value in sd.items():
        new = None
        for old, top in _TOP.items():
            if key.startswith(old):
                new = top + key[len(old):]
        m = re.match(r"(?:(input_blocks|output_blocks)\.(\d+)|(middle_block))\.(\d+)\.(.*)$", key)
        if new is None and m:
            kind, n, part, rest = m[1] or m[3], int(m[2] or 0), int(m[4]), m[5]
            if kind == "middle_block":
                new = (f"mid_block.attentions.0.{rest}" if part == 1
                       else f"mid_block.resnets.{part // 2}.{_rename(rest, _RESNET)}")
            elif kind == "input_blocks":
                level, j = divmod(n - 1, per)
                if j == per - 1:
                    new = f"down_blocks.{level}.downsamplers.0.conv.{rest[len('op.'):]}"
                elif part == 0:
                    new = f"down_blocks.{level}.resnets.{j}.{_rename(rest, _RESNET)}"
                else:
                    new = f"down_blocks.{level}.attentions.{j}.{rest}"
            elif kind == "output_blocks":
                level, j = divmod(n, per)
                if part == 0:
                    new = f"up_blocks.{level}.resnets.{j}.{_rename(rest, _RESNET)}"
                elif part == 1 and up_attention[level]:
                    new = f"up_blocks.{level}.attentions.{j}.{rest}"
                elif level < levels - 1:
                    new = f"up_blocks.{level}.upsamplers.0.{rest}"
        if new is None:
            raise EngineError(f"the checkpoint's UNet has a key outside the SD1.5 layout: {key}")
        out[new] = value
    return out


# ---- VAE ----

def vae_layout(sd: dict) -> dict:
    if "decoder.conv_in.weight" not in sd:
        raise EngineError("the checkpoint has no VAE (no first_stage_model.decoder.conv_in.weight); give a "
                          "checkpoint with its VAE baked in.")
    levels = 1 + max(int(m[1]) for k in sd if (m := re.match(r"encoder\.down\.(\d+)\.", k)))
    blocks = 1 + max(int(m[1]) for k in sd if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k)))
    widths = [int(sd[f"encoder.down.{i}.block.{blocks - 1}.conv2.weight"].shape[0]) for i in range(levels)]
    return {"levels": levels, "blocks": blocks, "widths": widths,
            "latent_channels": int(sd["decoder.conv_in.weight"].shape[1])}


def vae_config(layout: dict, base: dict) -> dict:
    config = dict(base)
    config.update(block_out_channels=list(layout["widths"]), layers_per_block=layout["blocks"],
                  latent_channels=layout["latent_channels"],
                  down_block_types=["DownEncoderBlock2D"] * layout["levels"],
                  up_block_types=["UpDecoderBlock2D"] * layout["levels"])
    return config


def vae_to_diffusers(sd: dict, layout: dict) -> dict:
    levels = layout["levels"]
    out = {}
    for key, value in sd.items():
        new = key
        m = re.match(r"(encoder|decoder)\.(down|up)\.(\d+)\.(block\.(\d+)|downsample|upsample)\.(.*)$", key)
        mid = re.match(r"(encoder|decoder)\.mid\.(block_1|block_2|attn_1)\.(.*)$", key)
        if m:
            side, i, rest = m[1], int(m[3]), m[6]
            index = i if side == "encoder" else levels - 1 - i
            group = "down_blocks" if side == "encoder" else "up_blocks"
            if m[5] is not None:
                new = f"{side}.{group}.{index}.resnets.{m[5]}.{_rename(rest, _VAE_RESNET)}"
            else:
                new = f"{side}.{group}.{index}.{'downsamplers' if side == 'encoder' else 'upsamplers'}.0.{rest}"
        elif mid:
            side, part, rest = mid[1], mid[2], mid[3]
            if part == "attn_1":
                new = f"{side}.mid_block.attentions.0.{_rename(rest, _VAE_ATTENTION)}"
                if value.dim() == 4:          # 1x1 convolutions in ldm, linear layers in diffusers
                    value = value.reshape(value.shape[0], value.shape[1])
            else:
                new = f"{side}.mid_block.resnets.{0 if part == 'block_1' else 1}.{_rename(rest, _VAE_RESNET)}"
        elif key.startswith(("encoder.norm_out.", "decoder.norm_out.")):
            new = key.replace(".norm_out.", ".conv_norm_out.")
        out[new] = value
    return out


# ---- CLIP text model ----

def clip_to_transformers(sd: dict) -> dict:
    """``cond_stage_model.transformer.*`` keys (no prefix) -> CLIPTextModel keys (``text_model.*``)."""
    return {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in sd.items()
            if not k.endswith(("position_ids", "text_projection.weight", "logit_scale"))}  # not in the text model


def clip_config(sd: dict, base: dict) -> dict:
    if "text_model.embeddings.token_embedding.weight" not in sd:
        raise EngineError("the checkpoint has no CLIP text encoder (cond_stage_model.transformer.*); give a "
                          "full SD1.5 checkpoint.")
    vocab, hidden = sd["text_model.embeddings.token_embedding.weight"].shape
    layers = 1 + max(int(m[1]) for k in sd if (m := re.match(r"text_model\.encoder\.layers\.(\d+)\.", k)))
    config = dict(base)
    config.update(vocab_size=int(vocab), hidden_size=int(hidden), num_hidden_layers=layers,
                  num_attention_heads=max(int(hidden) // 64, 1),
                  intermediate_size=int(sd["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
                  max_position_embeddings=int(sd["text_model.embeddings.position_embedding.weight"].shape[0]))
    return config


# ---- AnimateDiff motion modules ----

_MOTION = ((".norms.0", ".norm1"), (".norms.1", ".norm2"), (".ff_norm", ".norm3"),
           (".attention_blocks.0", ".attn1"), (".attention_blocks.1", ".attn2"))


def motion_to_diffusers(sd: dict) -> dict:
    """AnimateDiff motion-module keys -> MotionAdapter keys (positional-encoding tables are dropped:
    diffusers computes its own)."""
    out = {}
    for key, value in sd.items():
        if "pos_encoder" in key:
            continue
        for old, new in _MOTION:
            key = key.replace(old, new)
        out[key.replace(".temporal_transformer", "")] = value
    return out


def motion_from_diffusers(sd: dict) -> dict:
    """MotionAdapter keys -> the AnimateDiff file layout (what ComfyUI's motion-model loaders read)."""
    out = {}
    for key, value in sd.items():
        if key.endswith(".pe"):
            continue
        key = re.sub(r"(motion_modules\.\d+)\.", r"\1.temporal_transformer.", key, count=1)
        for new, old in _MOTION:
            key = key.replace(old + ".", new + ".")
        out[key] = value
    return out


def motion_positions(raw: dict) -> int | None:
    """Frame positions of an AnimateDiff file's positional-encoding tables (AnimateLCM files have none)."""
    return next((int(v.shape[1]) for k, v in sorted(raw.items()) if k.endswith("pos_encoder.pe")), None)


def motion_layout(sd: dict, base: dict, positions: int | None = None) -> dict:
    """MotionAdapter config from motion-module keys already in diffusers naming."""
    widths = {}
    for key, value in sd.items():
        m = re.match(r"down_blocks\.(\d+)\.motion_modules\.0\.proj_in\.weight$", key)
        if m:
            widths[int(m[1])] = int(value.shape[1])
    if not widths:
        raise EngineError("the motion-module file has no down_blocks.*.motion_modules.*: it is not an AnimateDiff "
                          "/ AnimateLCM motion model for SD1.5.")
    per_level = 1 + max(int(m[1]) for k in sd if (m := re.match(r"down_blocks\.0\.motion_modules\.(\d+)\.", k)))
    config = dict(base)
    config.update(block_out_channels=[widths[i] for i in sorted(widths)], motion_layers_per_block=per_level,
                  use_motion_mid_block=any(k.startswith("mid_block.") for k in sd))
    if positions:
        config["motion_max_seq_length"] = positions
    return config
