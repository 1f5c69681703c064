"""SD1.5-size random-weight model files (now in tools/random_models.py, shared with the main job)."""
import host  # noqa: F401  (makes tools/ importable as pv_tools)
from pv_tools.random_models import (VAE_DDCONFIG, _ade_module_name, has_animatediff_evolved,  # noqa: F401
                                    save_animatelcm_motion_model, save_random_lora, save_sd15_checkpoint,
                                    sd15_state_dict)
