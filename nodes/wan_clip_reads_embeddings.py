"""Node: Wan CLIP Reads Embeddings: a copy of a Wan CLIP on which prompts read ``embedding:<name>`` files.

Core's umT5 tokenizer never looks ``embedding:<name>`` up, so a Wan identity's token (``embedding:alice woman``)
reaches umT5 only through the CLIP this node gives (:func:`..training.wan_token.clip_reading_embeddings`).
"""
from __future__ import annotations

from ..training.wan_token import clip_reading_embeddings

CATEGORY = "PersonalVideo"


class WanCLIPReadsEmbeddings:
    DESCRIPTION = (
        "Gives a copy of your Wan CLIP (umT5-XXL) on which CLIP Text Encode reads 'embedding:<name>' from "
        "models/embeddings, as a Wan identity's trigger phrase needs (core's umT5 ignores embeddings: the token "
        "would be read as plain words). Your CLIP is not changed; the text model is shared, not copied."
    )
    CATEGORY = CATEGORY
    FUNCTION = "clip"
    RETURN_TYPES = ("CLIP",)
    RETURN_NAMES = ("clip",)
    OUTPUT_TOOLTIPS = ("Your CLIP, reading embedding:<name>: connect it to the CLIP Text Encode nodes of the "
                       "prompts that call the identity.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "umT5-XXL from Load CLIP with type wan. Not changed."}),
            },
            "optional": {
                "sia_adapter": ("SIA_ADAPTER", {"tooltip":
                                "The identity whose token the prompts call (from the Train node or Load SIA "
                                "Adapter): connected, the prompts are encoded after its token file is written."}),
            },
        }

    def clip(self, clip, sia_adapter=None):
        return (clip_reading_embeddings(clip),)   # a CLIP that is not umT5: an error naming the clip input


NODES = (("PV_WanCLIPReadsEmbeddings", WanCLIPReadsEmbeddings, "Wan CLIP Reads Embeddings"),)
