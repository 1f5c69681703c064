"""Prompts of an identity trained without a token: the class word alone stands for the person.

Stage 2's templates hold ``{token} {class_word}``; without a token stage the ``{token}`` is left out
("{token} {class_word} smiling" -> "woman smiling"), and the prompt is encoded by the CLIP as it is.
Same interface as the token stage's prompt encoders (``conditioning(template, vector)``, ``vector`` None).
"""
from __future__ import annotations

import re

import torch

from .inference_tensors import normal_tensors


class ClassWordPrompts:
    def __init__(self, clip, class_word: str):
        self.clip = clip
        self.class_word = class_word

    def text(self, template: str) -> str:
        text = template.replace("{token}", "").replace("{class_word}", self.class_word)
        return re.sub(r"\s+", " ", text).strip()

    def conditioning(self, template: str, vector=None):
        """A ComfyUI CONDITIONING (normal tensors, no grad) for sampling."""
        with normal_tensors(), torch.no_grad():
            cond, pooled = self.clip.encode_from_tokens(self.clip.tokenize(self.text(template)), return_pooled=True)
            return [[cond.detach().clone(), {"pooled_output": None if pooled is None else pooled.detach().clone()}]]
