"""Node: Load SIA Adapter."""
import logging
import os

import folder_paths

from ..sia import load_adapter
from ..training.token_names import with_registered_token

CATEGORY = "PersonalVideo"
log = logging.getLogger("PersonalVideo")


class LoadSIAAdapter:
    DESCRIPTION = ("Loads a Spatial Identity Adapter trained by 'Train PersonalVideo Identity' from models/sia. "
                   "Connect it to 'Apply SIA at Late Steps'. The identity's token answers to the file's name "
                   "(alice_v1.safetensors: 'embedding:alice_v1'); when models/embeddings lacks it, it is written "
                   "from the adapter, and when another token has that name it gets the name plus a short code. "
                   "The trigger_phrase output always names the token of this file.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("SIA_ADAPTER", "STRING")
    RETURN_NAMES = ("sia_adapter", "trigger_phrase")
    OUTPUT_TOOLTIPS = (
        "The identity adapter, for 'Apply SIA at Late Steps'.",
        "The phrase to put in your prompt for this identity (e.g. 'embedding:alice woman'); it names this "
        "file's own token.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "adapter_name": (folder_paths.get_filename_list("sia"), {
                    "tooltip": "An adapter file in ComfyUI/models/sia (or a 'sia' folder of extra_model_paths.yaml). "
                               "For Wan, LoRA files on self_attn q/k/v only written by musubi-tuner or diffusers "
                               "load too."}),
            }
        }

    @classmethod
    def IS_CHANGED(cls, adapter_name):
        path = folder_paths.get_full_path("sia", adapter_name)
        return f"{path}:{os.path.getmtime(path)}" if path and os.path.exists(path) else adapter_name

    @classmethod
    def VALIDATE_INPUTS(cls, adapter_name):
        if folder_paths.get_full_path("sia", adapter_name) is None:
            return (f"SIA adapter '{adapter_name}' is not in any models/sia folder "
                    f"({', '.join(folder_paths.get_folder_paths('sia'))}). Train one or copy the file there.")
        return True

    def load(self, adapter_name):
        adapter = load_adapter(folder_paths.get_full_path("sia", adapter_name))
        trained_as = adapter.info.name
        adapter, written = with_registered_token(adapter, adapter_name)
        if adapter.embedding is not None and adapter.info.name != trained_as:
            log.info("[PersonalVideo] %s was trained as '%s'; its own token answers to 'embedding:%s' (the "
                     "trigger_phrase output says so)", adapter_name, trained_as, adapter.info.name)
        if written:
            log.warning("[PersonalVideo] the token of %s was not in models/embeddings; written from the adapter: "
                        "%s", adapter_name, written)
        return (adapter, adapter.info.trigger)


NODES = (("PV_LoadSIAAdapter", LoadSIAAdapter, "Load SIA Adapter"),)
