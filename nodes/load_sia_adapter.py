"""Node: Load SIA Adapter."""
import logging
import os

import folder_paths

from ..sia import load_adapter
from ..training.identity_files import ensure_token

CATEGORY = "PersonalVideo"
log = logging.getLogger("PersonalVideo")


class LoadSIAAdapter:
    DESCRIPTION = ("Loads a Spatial Identity Adapter trained by 'Train PersonalVideo Identity' from models/sia. "
                   "Connect it to 'Apply SIA at Late Steps'. When the identity's token file is missing from "
                   "models/embeddings, it is written from the adapter.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("SIA_ADAPTER", "STRING")
    RETURN_NAMES = ("sia_adapter", "trigger_phrase")
    OUTPUT_TOOLTIPS = (
        "The identity adapter, for 'Apply SIA at Late Steps'.",
        "The phrase to put in your prompt for this identity (e.g. 'embedding:alice woman').",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "adapter_name": (folder_paths.get_filename_list("sia"), {
                    "tooltip": "An adapter file in ComfyUI/models/sia (or a 'sia' folder of extra_model_paths.yaml)."}),
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
        if adapter.embedding is not None and adapter.info.name:
            written = ensure_token(adapter.info.name, adapter.embedding)
            if written:
                log.warning("[PersonalVideo] the token of '%s' was missing from models/embeddings; written from "
                            "the adapter: %s", adapter.info.name, written)
        return (adapter, adapter.info.trigger)


NODES = (("PV_LoadSIAAdapter", LoadSIAAdapter, "Load SIA Adapter"),)
