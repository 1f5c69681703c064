"""The identity token in the CLIP text encoder of diffusers/transformers, and prompts to text embeddings.

As in the nodes: prompts are written with a one-token marker word in place of the
token, and a forward hook on the token-embedding table swaps the marker's rows
for the identity vector (differentiable, so stage 1 trains the vector through it).
A prompt names the identity with ``{token}`` (the prompt templates) or with
ComfyUI's ``embedding:<name>`` (the trigger phrase saved in the adapter file).
"""
from __future__ import annotations

import contextlib
import re
from types import SimpleNamespace

import torch

from ..training.textual_inversion import MARKERS, inject_vector
from .errors import EngineError


def _inner_ids(tokenizer, word: str) -> list:
    return list(tokenizer(word, add_special_tokens=False).input_ids)


class TokenPrompts:
    """Encodes prompts with ``vector`` (or no identity) for one text encoder and tokenizer."""

    def __init__(self, text_encoder, tokenizer, class_word: str = "person", name: str = ""):
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.class_word = class_word
        self.name = name
        for word in MARKERS:
            ids = _inner_ids(tokenizer, word)
            if len(ids) == 1:
                self.marker, self.marker_id = word, ids[0]
                break
        else:
            raise EngineError("internal: no one-token marker word in this tokenizer's vocabulary")

    @property
    def max_length(self) -> int:
        """77 for SD1.5: the text model's positions (some tokenizer configs say 8192)."""
        return int(getattr(self.text_encoder.config, "max_position_embeddings", 77))

    def class_word_vector(self) -> torch.Tensor:
        ids = _inner_ids(self.tokenizer, self.class_word)
        if not ids:
            raise EngineError(f"class word {self.class_word!r} gives no tokens; use a plain word such as man, woman "
                              "or person.")
        table = self.text_encoder.get_input_embeddings().weight
        return table[ids].detach().float().mean(0).clone()

    def text(self, prompt: str) -> str:
        """The prompt with the marker in place of ``{token}`` / ``embedding:<name>``, class word filled in."""
        out = prompt.replace("{token}", self.marker).replace("{class_word}", self.class_word)
        if self.name:
            out = re.sub(r"embedding:" + re.escape(self.name) + r"(\.safetensors)?\b", self.marker, out)
        return out

    def _injected(self, vector):
        """The nodes' hook on the token-embedding table, on this text encoder (held the way ComfyUI holds it)."""
        if vector is None:
            return contextlib.nullcontext()
        held = SimpleNamespace(cond_stage_model=SimpleNamespace(clip_l=SimpleNamespace(transformer=self.text_encoder)))
        return inject_vector(held, self.marker_id, vector)

    def encode(self, prompts, vector: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 77, D] hidden states for ``prompts`` (a list or one string); grad reaches ``vector`` if it asks."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids = self.tokenizer([self.text(p) for p in prompts], padding="max_length", truncation=True,
                             max_length=self.max_length, return_tensors="pt").input_ids
        device = next(self.text_encoder.parameters()).device
        with self._injected(vector):
            return self.text_encoder(ids.to(device))[0]
