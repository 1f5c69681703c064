"""A MASK placed on the tokens of one spatial self-attention call: a soft weight per token and frame.

A MASK is ``[H, W]`` or ``[frames, H, W]`` with values 0..1, at any size (the
latent's, the picture's): it is stretched to each attention block's token grid,
like the host's ConditioningSetMask stretches its mask to the latent.
Downsizing averages (a token's weight is the share of its cell the mask
covers, so soft edges stay soft); enlarging interpolates bilinearly.

Which picture each row of the batch belongs to is read from the options the
host gives every transformer block (recorded by :meth:`TokenMask.attn1_patch`
just before the attention runs):

- the token grid: ``activations_shape`` where the host gives it (ComfyUI since
  2025), otherwise the latent's ``original_shape`` halved (rounding up, as the
  UNet's strided downsampling does) until it has as many tokens as the call;
- the frames: AnimateDiff treats the latent batch as the video's frames, and
  the sampler stacks the cond and uncond halves (``cond_or_uncond``) on top,
  so row ``b`` is frame ``b % frames``; in AnimateDiff-Evolved's context
  windows the window's frames are ``ad_params["sub_idxs"]``.

One mask for all frames is used as it is; a mask per frame must have as many
frames as the video.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import SIAError

MAX_LEVELS = 8       # halvings of the latent tried when looking for a block's token grid
_CACHE_ENTRIES = 64


def as_mask_frames(mask, name: str = "mask") -> torch.Tensor:
    """``mask`` as a float ``[frames, H, W]`` tensor on the CPU, values clamped to 0..1; clear errors otherwise."""
    if not isinstance(mask, torch.Tensor):
        raise SIAError(f"the {name} input must be a MASK (got {type(mask).__name__}); connect a MASK output, "
                       "e.g. 'Region Masks: Left/Right Halves (PersonalVideo)' or the mask of 'Load Image'.")
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim == 4 and mask.shape[1] == 1:      # [frames, 1, H, W], as some packs give
        mask = mask[:, 0]
    if mask.ndim != 3:
        raise SIAError(f"the {name} input must be a MASK [H, W] or [frames, H, W] (got shape "
                       f"{tuple(mask.shape)}); connect a MASK output, not an IMAGE.")
    if mask.numel() == 0:
        raise SIAError(f"the {name} input is empty (shape {tuple(mask.shape)}); connect a mask with at least "
                       "one frame and one pixel.")
    mask = mask.detach().float().cpu()
    if not torch.isfinite(mask).all():
        raise SIAError(f"the {name} input contains NaN or infinite values; an upstream node failed.")
    return mask.clamp(0.0, 1.0)


def token_grid(tokens: int, options: dict) -> tuple:
    """(rows, columns) of the token grid of a self-attention call over ``tokens`` tokens."""
    shape = options.get("activations_shape")
    if shape is not None and len(shape) >= 4 and int(shape[-2]) * int(shape[-1]) == tokens:
        return int(shape[-2]), int(shape[-1])
    shape = options.get("original_shape")
    if shape is not None and len(shape) >= 4:
        h, w = int(shape[-2]), int(shape[-1])
        for _ in range(MAX_LEVELS):
            if h * w == tokens:
                return h, w
            h, w = math.ceil(h / 2), math.ceil(w / 2)
    raise SIAError(f"cannot place the region mask on a self-attention of {tokens} tokens: the host gave no "
                   f"latent shape that fits (original shape {options.get('original_shape')}). Use a mask-free "
                   "'Apply SIA at Late Steps' with this sampler, and please report the workflow.")


def frame_of_rows(batch: int, options: dict, mask_frames: int) -> list:
    """The mask frame each row of a batch of ``batch`` pictures takes."""
    if mask_frames == 1:
        return [0] * batch
    chunks = len(options.get("cond_or_uncond") or ()) or 1
    if batch % chunks:
        chunks = 1
    per_chunk = batch // chunks
    ad_params = options.get("ad_params") or {}
    window = ad_params.get("sub_idxs")
    if window is not None and len(window) == per_chunk:
        frames, length = [int(i) for i in window], int(ad_params.get("full_length") or per_chunk)
    else:
        frames, length = list(range(per_chunk)), per_chunk
    if length != mask_frames:
        raise SIAError(f"the region mask of 'Apply SIA at Late Steps' has {mask_frames} frames but the video "
                       f"being sampled has {length}; give one mask for every frame, or a single mask for all.")
    return frames * chunks


def resize_to_grid(mask: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    """``[frames, H, W]`` -> ``[frames, rows * columns]`` (area average when shrinking, bilinear otherwise)."""
    h, w = mask.shape[-2:]
    if (h, w) == (rows, columns):
        grid = mask
    elif h >= rows and w >= columns:
        grid = F.interpolate(mask[:, None], size=(rows, columns), mode="area")[:, 0]
    else:
        grid = F.interpolate(mask[:, None], size=(rows, columns), mode="bilinear", align_corners=False)[:, 0]
    return grid.clamp(0.0, 1.0).reshape(mask.shape[0], rows * columns)


class TokenMask:
    """A region mask and the options of the attention call under way (see the module doc)."""

    def __init__(self, mask: torch.Tensor):
        self.mask = as_mask_frames(mask)
        self.options: dict = {}
        self._cache: dict = {}

    @property
    def frames(self) -> int:
        return int(self.mask.shape[0])

    def make_attn1_patch(self):
        """An attn1 patch that records the block's options for :meth:`weights` (a closure: ComfyUI
        deep-copies model_options on clone) and leaves its inputs untouched."""
        def record_options(n, context_attn1, value_attn1, extra_options):
            self.options = extra_options
            return n, context_attn1, value_attn1

        return record_options

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The weight of each token of ``x`` ([batch, tokens, channels]), as [batch, tokens, 1] in x's dtype."""
        batch, tokens = int(x.shape[0]), int(x.shape[1])
        rows, columns = token_grid(tokens, self.options)
        frames = tuple(frame_of_rows(batch, self.options, self.frames))
        key = (rows, columns, frames, x.device, x.dtype)
        found = self._cache.get(key)
        if found is None:
            grid = resize_to_grid(self.mask, rows, columns)
            found = grid[list(frames)].unsqueeze(-1).to(x.device, x.dtype)
            if len(self._cache) >= _CACHE_ENTRIES:
                self._cache.clear()
            self._cache[key] = found
        return found
