"""TEST DOUBLE: a tiny umT5 for ComfyUI core's Wan text encoder (CLIPLoader, type wan), for the test server only.

Why a double: core builds umT5-XXL from a fixed config (``comfy/text_encoders/umt5_config_xxl.json``: 24 layers of
width 4096, 64 heads, a 256384-token vocabulary; about 5.7B parameters) whatever the file holds, so a random file
core accepts weighs at least 5.7 GB in fp8 and takes minutes per prompt on a CPU: too big for the tests' machines.

What stays real: the loader node (core's ``CLIPLoader`` with type ``wan``), core's detection of the file
(``encoder.block.23.layer.1.DenseReluDense.wi_1.weight`` of width 4096: umT5-XXL / T5-XXL), core's umT5 classes
(``comfy.text_encoders.t5.T5`` with ``model_type`` umt5: a relative position bias in every layer, gated GELU), core's
tokenizer class reading the tokenizer the file carries (``spiece_model``, a SentencePiece model, as Comfy-Org's
umT5 files carry theirs), core's 512-token padding and masking, and the output: 512 x 4096 per prompt, what Wan's
text embedding takes. What differs: the widths inside the layers (heads, head width, FFN width) and the
vocabulary, read from the file's tensor shapes (``tiny_config``) instead of the fixed config, and the tokenizer's
pieces (a small SentencePiece model trained on a few sentences; :mod:`umt5_double.build`).

How: ``install()`` wraps ``comfy.sd.load_text_encoder_state_dicts``. For a Wan text encoder whose vocabulary is not
umT5-XXL's (a file core itself would refuse with a size mismatch) it builds core's umT5 model class from the
config the tensors give; every other file goes to core unchanged. Installed only where ``PV_UMT5_DOUBLE`` is 1
(tests/comfy_server.py sets it for the test server) and only on hosts with core Wan.
"""
from __future__ import annotations

import json
import os

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

UMT5_XXL_VOCAB = 256384
DETECTED_AS_XXL = "encoder.block.23.layer.1.DenseReluDense.wi_1.weight"   # core's T5-XXL / umT5-XXL detection key


def is_tiny_umt5(sd) -> bool:
    """A state dict core detects as umT5-XXL / T5-XXL whose vocabulary is not umT5-XXL's."""
    return (DETECTED_AS_XXL in sd and sd[DETECTED_AS_XXL].shape[-1] == 4096 and "shared.weight" in sd
            and sd["shared.weight"].shape[0] != UMT5_XXL_VOCAB)


def tiny_config(sd) -> dict:
    """Core's umT5-XXL config with the sizes the tensors of ``sd`` have."""
    import comfy.text_encoders.wan

    path = os.path.join(os.path.dirname(os.path.realpath(comfy.text_encoders.wan.__file__)), "umt5_config_xxl.json")
    with open(path) as f:
        config = json.load(f)
    vocab, width = sd["shared.weight"].shape
    layers = 0
    while f"encoder.block.{layers}.layer.0.SelfAttention.q.weight" in sd:
        layers += 1
    inner = sd["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0]
    heads = sd["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape[1]
    config.update(vocab_size=int(vocab), d_model=int(width), num_layers=layers, num_decoder_layers=layers,
                  num_heads=int(heads), d_kv=int(inner // heads),
                  d_ff=int(sd["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0]))
    return config


def install() -> None:
    import comfy.sd
    import comfy.text_encoders.t5
    import comfy.text_encoders.wan
    from comfy import sd1_clip

    core_load = comfy.sd.load_text_encoder_state_dicts
    if getattr(core_load, "umt5_double", False):
        return

    def load_text_encoder_state_dicts(state_dicts=[], embedding_directory=None,
                                      clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION, model_options={}):
        if not (clip_type == comfy.sd.CLIPType.WAN and len(state_dicts) == 1 and is_tiny_umt5(state_dicts[0])):
            return core_load(state_dicts, embedding_directory, clip_type, model_options)
        config = tiny_config(state_dicts[0])

        class TinyUMT5Model(sd1_clip.SDClipModel):   # core's UMT5XXlModel, with the file's sizes
            def __init__(self, device="cpu", layer="last", layer_idx=None, dtype=None, model_options={}):
                super().__init__(device=device, layer=layer, layer_idx=layer_idx, textmodel_json_config=config,
                                 dtype=dtype, special_tokens={"end": 1, "pad": 0},
                                 model_class=comfy.text_encoders.t5.T5, enable_attention_masks=True,
                                 zero_out_masked=True, model_options=model_options)

        core_class = comfy.text_encoders.wan.UMT5XXlModel
        comfy.text_encoders.wan.UMT5XXlModel = TinyUMT5Model
        try:
            return core_load(state_dicts, embedding_directory, clip_type, model_options)
        finally:
            comfy.text_encoders.wan.UMT5XXlModel = core_class

    load_text_encoder_state_dicts.umt5_double = True
    comfy.sd.load_text_encoder_state_dicts = load_text_encoder_state_dicts


def _has_core_wan() -> bool:
    try:
        import comfy.text_encoders.wan  # noqa: F401
    except ImportError:
        return False
    return True


if os.environ.get("PV_UMT5_DOUBLE") == "1" and _has_core_wan():
    install()
