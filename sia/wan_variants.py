"""Which Wan model a set of weights is, from tensor shapes alone (for messages and the doctor).

The width (``head.modulation``), the number of blocks and the latent channels
(``patch_embedding``) tell the published models apart, as ComfyUI core's
detection reads them:

    width 1536, 30 blocks, 16 channels   Wan 2.1 T2V 1.3B
    width 5120, 40 blocks, 16 channels   Wan 2.1 T2V 14B, or a Wan 2.2 T2V A14B expert
    width 5120, 40 blocks, 36 channels   Wan 2.2 I2V A14B expert (Wan 2.1 I2V 14B also has img_emb)
    width 3072, 30 blocks, 48 channels   Wan 2.2 TI2V 5B

The two Wan 2.2 A14B experts (high noise, low noise) have identical shapes; only
the file name tells them apart (Comfy-Org's files say ``high_noise`` /
``low_noise``).
"""
from __future__ import annotations

import re

_KNOWN = {
    (1536, 30, 16): "Wan 2.1 T2V 1.3B",
    (5120, 40, 16): "Wan 2.1 T2V 14B or a Wan 2.2 T2V A14B expert",
    (5120, 40, 36): "Wan 2.2 I2V A14B expert",
    (3072, 30, 48): "Wan 2.2 TI2V 5B",
}


def expert_from_name(file_name: str) -> str | None:
    """'high-noise' / 'low-noise' when a Wan 2.2 A14B file's name says which expert it is."""
    name = file_name.lower()
    if re.search(r"high[_\- ]?noise", name):
        return "high-noise"
    if re.search(r"low[_\- ]?noise", name):
        return "low-noise"
    return None


def variant_name(dim: int, num_layers: int, in_dim: int, image_embedding: bool = False,
                 file_name: str = "") -> str:
    """The published Wan model these sizes belong to, or a description of the sizes."""
    if (dim, num_layers, in_dim) == (5120, 40, 36) and image_embedding:
        return "Wan 2.1 I2V 14B"
    known = _KNOWN.get((dim, num_layers, in_dim))
    if known is None:
        return f"a Wan model of width {dim}, {num_layers} blocks, {in_dim} input channels (not a published size)"
    expert = expert_from_name(file_name) if "A14B" in known else None
    if expert is not None:
        return f"Wan 2.2 {'I2V' if in_dim == 36 else 'T2V'} A14B, {expert} expert"
    return known


def variant_of_model(diffusion_model, file_name: str = "") -> str:
    """The variant of a loaded core ``WanModel``."""
    patch = getattr(diffusion_model, "patch_embedding", None)
    in_dim = int(patch.weight.shape[1]) if patch is not None else 0
    return variant_name(int(getattr(diffusion_model, "dim", 0)), len(getattr(diffusion_model, "blocks", ())),
                        in_dim, getattr(diffusion_model, "img_emb", None) is not None, file_name)
