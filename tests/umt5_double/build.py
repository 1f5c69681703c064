"""TEST DOUBLE (see :mod:`umt5_double`): the tiny umT5 file, built with core's own umT5 classes.

``save_tiny_umt5(path)`` writes a ``models/text_encoders`` file laid out as Comfy-Org's umT5 files are (``shared.weight``,
``encoder.block.N.layer...``, ``encoder.final_layer_norm.weight`` and the tokenizer as ``spiece_model``): 24 layers of
width 4096 (so core detects it as umT5-XXL and Wan gets 4096-wide text), each with 2 heads of width 8 and an FFN of
width 32, and a SentencePiece tokenizer trained here on a few sentences (pad 0, end 1, unknown 2: umT5's ids).
Random weights: what it encodes means nothing.
"""
from __future__ import annotations

import io
import math
import os

import torch

TINY = dict(num_layers=24, d_model=4096, num_heads=2, d_kv=8, d_ff=32)
SENTENCES = [
    "a person walking along a river bank in spring, cherry blossoms falling",
    "turning to smile at the camera, soft ink and watercolour",
    "blurry, low quality, static, deformed face, extra fingers, watermark, subtitles",
    "Kaguya-hime style, a woman in a garden, wind in the hair, highly detailed",
    "embedding:my_identity person on a beach at sunset, smiling",
    "a man in a red coat on a city street at night, rain, reflections",
    "a child laughing, running through a field of flowers, golden light",
]


def tokenizer_model(vocab_size: int = 256) -> bytes:
    """A SentencePiece unigram model with umT5's special ids (pad 0, end 1, unknown 2, no start token)."""
    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 4), model_writer=out, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, character_coverage=1.0,
        minloglevel=2)
    return out.getvalue()


def tiny_umt5_state_dict(seed: int = 0) -> dict:
    import json

    import comfy.ops
    import comfy.text_encoders.t5
    import comfy.text_encoders.wan

    spiece = tokenizer_model()
    import sentencepiece

    vocab = sentencepiece.SentencePieceProcessor(model_proto=spiece).get_piece_size()
    path = os.path.join(os.path.dirname(os.path.realpath(comfy.text_encoders.wan.__file__)), "umt5_config_xxl.json")
    with open(path) as f:
        config = json.load(f)
    config.update(TINY, num_decoder_layers=TINY["num_layers"], vocab_size=vocab)
    model = comfy.text_encoders.t5.T5(config, torch.float32, "cpu", comfy.ops.disable_weight_init)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(torch.ones_like(p))
            elif "relative_attention_bias" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif name == "shared.weight":
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                bound = 1.0 / math.sqrt(p.shape[1])
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    sd["spiece_model"] = torch.frombuffer(bytearray(spiece), dtype=torch.uint8)
    return sd


def save_tiny_umt5(path: str, seed: int = 0) -> str:
    from pv_tools.random_models import save_safetensors

    save_safetensors(tiny_umt5_state_dict(seed), path, {"note": "TEST DOUBLE: tiny umT5, random weights"})
    return path


def scaled_fp8(sd: dict) -> dict:
    """``sd`` laid out as Comfy-Org's ``umt5_xxl_fp8_e4m3fn_scaled`` file is: every linear weight of the layers in
    float8_e4m3fn with its ``scale_weight`` (absmax / 448), the marker ``scaled_fp8`` (core then builds the model
    with its scaled-fp8 layers); the embedding table, norms and position biases as they were."""
    out = {}
    for key, value in sd.items():
        if key.startswith("encoder.block.") and key.endswith(".weight") and value.ndim == 2 and "relative" not in key:
            scale = value.abs().max().float().clamp(min=1e-12) / 448.0
            out[key] = (value.float() / scale).to(torch.float8_e4m3fn)
            out[key[:-len("weight")] + "scale_weight"] = scale.reshape(())
        else:
            out[key] = value
    out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return out
