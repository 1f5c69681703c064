"""Wan model files: diffusion models (which Wan variant each is), the umT5-XXL text encoder and the Wan VAEs.

Only the safetensors headers are read (a few kilobytes per file, never a
tensor), so a folder of 14B models is checked in a moment.  Wan is optional:
with no Wan file the line is OK and says so; with Wan diffusion models it warns
when what they need beside them (umT5, the matching VAE, the other Wan 2.2
A14B expert) is missing or a file is damaged.
"""
from __future__ import annotations

import os
import re

from .model_files import DamagedFile, find_files, folders, safetensors_header
from .result import ok, warn

NAME = "Wan models"
_PREFIXES = ("", "model.diffusion_model.", "diffusion_model.")
UMT5_VOCAB = 256384      # umT5's vocabulary; T5-XXL (Flux, SD3) has 32128
DOWNLOAD = ("Hugging Face Comfy-Org/Wan_2.2_ComfyUI_Repackaged (split_files/diffusion_models, text_encoders, vae) "
            "or Comfy-Org/Wan_2.1_ComfyUI_repackaged")


def _shape(header: dict, key: str):
    entry = header.get(key)
    return entry.get("shape") if isinstance(entry, dict) else None


def wan_diffusion_variant(header: dict, file_name: str = "") -> str | None:
    """The Wan variant of a diffusion model file's weights, or None if it is not one."""
    from ..sia.wan_variants import variant_name   # lazily: the doctor runs even when the pack does not import

    for prefix in _PREFIXES:
        modulation = _shape(header, prefix + "head.modulation")
        patch = _shape(header, prefix + "patch_embedding.weight")
        if modulation and patch and _shape(header, prefix + "blocks.0.self_attn.q.weight"):
            blocks = {int(m.group(1)) for k in header
                      for m in [re.match(re.escape(prefix) + r"blocks\.(\d+)\.", k)] if m}
            return variant_name(int(modulation[-1]), len(blocks), int(patch[1]),
                                prefix + "img_emb.proj.0.bias" in header, file_name)
    return None


def is_umt5(header: dict) -> bool:
    shared = _shape(header, "shared.weight") or _shape(header, "encoder.embed_tokens.weight")
    return bool(shared) and int(shared[0]) == UMT5_VOCAB and int(shared[1]) == 4096


def wan_vae_kind(header: dict) -> str | None:
    """'Wan 2.2 VAE' (48 latent channels, TI2V 5B), 'Wan 2.1 VAE' (16; Wan 2.1 and the 2.2 A14B experts), or None."""
    if "decoder.middle.0.residual.0.gamma" not in header:
        return None
    return "Wan 2.2 VAE" if "decoder.upsamples.0.upsamples.0.residual.2.weight" in header else "Wan 2.1 VAE"


def _scan(kinds, classify):
    found, damaged = [], []
    dirs = [d for kind in kinds for d in folders(kind)]
    for path in find_files(list(dict.fromkeys(dirs)), lambda f: f.lower().endswith((".safetensors", ".sft"))):
        try:
            what = classify(safetensors_header(path), os.path.basename(path))
        except DamagedFile as exc:
            damaged.append((path, str(exc)))
            continue
        if what:
            found.append((path, what))
    return found, damaged


def check_wan_models(ctx):
    models, bad_models = _scan(("diffusion_models", "unet"), wan_diffusion_variant)
    encoders, bad_encoders = _scan(("text_encoders", "clip"), lambda h, n: "umT5-XXL" if is_umt5(h) else None)
    vaes, bad_vaes = _scan(("vae",), lambda h, n: wan_vae_kind(h))
    details = {"diffusion_models": models, "text_encoders": encoders, "vaes": vaes}
    if not (models or encoders or vaes or bad_models):
        return ok(NAME, "no Wan files found (needed only for generating with Wan 2.1 / 2.2: see docs/wan.md).",
                  **details)
    lines = [f"{os.path.basename(p)}: {what}" for p, what in models + encoders + vaes]
    problems = []
    damaged = bad_models + bad_encoders + bad_vaes
    if damaged:
        problems.append("damaged: " + "; ".join(f"{os.path.basename(p)} ({why})" for p, why in damaged))
    if models and not encoders:
        problems.append("no umT5-XXL text encoder in models/text_encoders (CLIPLoader, type wan)")
    needs_22_vae = any("TI2V 5B" in what for _, what in models)
    needs_21_vae = any("TI2V 5B" not in what for _, what in models)
    vae_kinds = {what for _, what in vaes}
    if needs_21_vae and "Wan 2.1 VAE" not in vae_kinds:
        problems.append("no Wan 2.1 VAE (wan_2.1_vae.safetensors) in models/vae: Wan 2.1 and the Wan 2.2 A14B "
                        "experts decode with it")
    if needs_22_vae and "Wan 2.2 VAE" not in vae_kinds:
        problems.append("no Wan 2.2 VAE (wan2.2_vae.safetensors) in models/vae: Wan 2.2 TI2V 5B decodes with it")
    experts = {what.rsplit(", ", 1)[-1] for _, what in models if what.endswith("expert") and "A14B," in what}
    if experts and len(experts) == 1:
        other = "low-noise" if "high-noise expert" in experts else "high-noise"
        problems.append(f"only the {experts.pop().split()[0]} Wan 2.2 A14B expert: the two-expert workflow also needs "
                        f"the {other} one (the identity adapter goes on the low-noise expert)")
    message = "found " + "; ".join(lines) if lines else "no usable Wan file"
    if problems:
        return warn(NAME, message + ". " + "; ".join(problems) + ".",
                    f"Download what is missing (or again, if damaged) from {DOWNLOAD}.", **details)
    return ok(NAME, message + ".", **details)
