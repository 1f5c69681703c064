"""The simulated prompts of stage 2 (paper: 50 LLM-written prompts; ours are written for this pack).

Prompts are kept as data in ``prompts.json``; each holds ``{token}`` (replaced by
the identity token) and ``{class_word}`` (man, woman, person, ...).  Users can
give their own, one per line; lines without ``{token}`` get it put in front.
"""
from __future__ import annotations

import json
import os

from .errors import TrainingError
from .random_streams import stream

_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts.json")


def default_prompts() -> list:
    with open(_FILE, encoding="utf-8") as f:
        return list(json.load(f)["prompts"])


def default_prompts_text() -> str:
    return "\n".join(default_prompts())


def parse_prompts(text: str) -> list:
    """Prompt templates from multiline text: one per non-empty line; '#' starts a comment line."""
    if not isinstance(text, str):
        raise TrainingError(f"prompts must be text, one prompt per line (got {type(text).__name__}).")
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise TrainingError("the prompts input is empty: give at least one prompt per line "
                            "(e.g. '{token} {class_word} walking on a beach'), or reset it to the default list.")
    out = []
    for line in lines:
        if "{token}" not in line:
            line = "{token} {class_word} " + line if "{class_word}" not in line else "{token} " + line
        out.append(line)
    return out


class PromptSampler:
    """Draws one prompt per iteration, deterministically for a seed (its own stream of the seed)."""

    def __init__(self, templates: list, seed: int):
        if not templates:
            raise TrainingError("no prompts to train with")
        self.templates = list(templates)
        self._rng = stream(seed, "prompts")

    def draw(self) -> str:
        return self.templates[self._rng.randrange(len(self.templates))]
