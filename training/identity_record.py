"""What an identity was trained from, kept in its adapter file to decide whether a new run can reuse it.

A record holds the sha256 of each reference photo (as 8-bit pixels, so the
same photo loaded twice hashes the same; sorted, so the order does not count),
every setting that changes the result, and the base MODEL's fingerprint
(:func:`.base_model.fingerprint`). :func:`differences` lists, in words, what
differs between a stored record and a new one (empty: the same training).
"""
from __future__ import annotations

import hashlib

import torch

RECORD_KEY = "record"
# the parts of a base model's fingerprint (:mod:`.base_model`), in words
MODEL_PARTS = (("class", "another kind of model"), ("parameters", "another checkpoint"),
               ("weights", "another checkpoint"), ("patches", "other LoRAs on it, or other strengths"),
               ("motion", "another motion model"),
               ("sampling", "another noise schedule: beta_schedule or model sampling"))


def photo_hashes(images) -> list:
    """Sorted sha256 (hex) of each photo of a reference IMAGE (batch or list), as 8-bit RGB pixels."""
    from .face.references import iter_images

    out = []
    for _, image in iter_images(images):
        pixels = (image.detach().float().cpu()[..., :3].clamp(0, 1) * 255.0).round().to(torch.uint8)
        digest = hashlib.sha256(repr(tuple(pixels.shape)).encode())
        digest.update(pixels.contiguous().numpy().tobytes())
        out.append(digest.hexdigest())
    return sorted(out)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def make_record(photos: list, settings: dict, base_model: dict) -> dict:
    return {"photos": list(photos), "settings": dict(settings), "base_model": dict(base_model)}


def differences(stored: dict, new: dict) -> list:
    """What differs between two records, one phrase each."""
    found = []
    if sorted(stored.get("photos", [])) != sorted(new["photos"]):
        found.append(f"the reference photos ({len(stored.get('photos', []))} stored, {len(new['photos'])} now, "
                     "not the same pixels)")
    old_settings = stored.get("settings", {})
    changed = sorted(k for k in set(old_settings) | set(new["settings"])
                     if old_settings.get(k) != new["settings"].get(k))
    if changed:
        found.append("the settings " + ", ".join(
            f"{k} ({old_settings.get(k, 'unset')!r} stored, {new['settings'].get(k, 'unset')!r} now)"
            for k in changed))
    old_model, new_model = stored.get("base_model") or {}, new["base_model"]
    if old_model.get("format") != new_model.get("format"):
        found.append("the MODEL's record (written by an earlier version of the pack, which recorded less of it)")
    elif old_model != new_model:
        parts = dict.fromkeys(words for key, words in MODEL_PARTS if old_model.get(key) != new_model.get(key))
        found.append("the MODEL (" + "; ".join(parts or ["another model"]) + ")")
    return found
