"""SD1.5-size random-weight model files (now in tools/random_models.py, shared with the main job)."""
import host  # noqa: F401  (makes tools/ importable as pv_tools)
from pv_tools.random_models import (VAE_DDCONFIG, _ade_module_name, animatelcm_layout,  # noqa: F401
                                    has_animatediff_evolved, save_animatelcm_motion_model, save_random_lora,
                                    save_sd15_checkpoint, sd15_state_dict)


def load_random_checkpoint(path):
    """(MODEL, CLIP, VAE) of the random SD1.5 checkpoint at ``path``, through the stock checkpoint loader
    (linked into the host's checkpoints folder once)."""
    import os

    import folder_paths
    import nodes
    import torch

    name = os.path.basename(str(path))
    link = os.path.join(folder_paths.get_folder_paths("checkpoints")[0], name)
    if not os.path.exists(link):
        os.symlink(path, link)
    with torch.inference_mode():
        return tuple(nodes.CheckpointLoaderSimple().load_checkpoint(name)[:3])
