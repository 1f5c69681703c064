"""Node: Train PersonalVideo Identity (Wan): the identity adapter trained on a core Wan MODEL."""
from __future__ import annotations

from ..training.wan_identity_training import AUTO, WITH_LORA, WITHOUT_LORA, train_wan_identity
from ..training.errors import TrainingError
from ..training.sia_settings import WanSIATrainSettings
from .training_inputs import (RETURN_NAMES, RETURN_TYPES, node_result, pick, shared_inputs, single_values,
                              tip)

CATEGORY = "PersonalVideo"
NO_LORA = "none"


def _lora_names() -> list:
    import folder_paths

    return [NO_LORA] + list(folder_paths.get_filename_list("loras"))


def _lora_path(name):
    """The path of LoRA ``name`` in models/loras (None for none); TrainingError naming the input otherwise."""
    import folder_paths

    if name in (None, "", NO_LORA):
        return None
    path = folder_paths.get_full_path("loras", name)
    if path is None:
        raise TrainingError(f"sampling_lora {name!r} is not in models/loras: put the file there and refresh, or pick "
                         f"{NO_LORA}.")
    return path


class TrainPersonalVideoIdentityWan:
    DESCRIPTION = (
        "Learns an identity from one or a few photos on the very Wan MODEL you generate with (Wan 2.1 / 2.2, "
        "core loaders): a Spatial Identity Adapter on the q/k/v of Wan's self-attention, trained with a face "
        "identity loss on videos the model generates (saved to models/sia), after a token in umT5's input (saved "
        "to models/embeddings; prompts read it through 'Wan CLIP Reads Embeddings'). For Wan 2.2 A14B connect "
        "the low-noise expert. The MODEL, CLIP and VAE you connect are not changed."
    )
    CATEGORY = CATEGORY
    FUNCTION = "train"
    OUTPUT_NODE = True
    RETURN_TYPES, RETURN_NAMES = RETURN_TYPES, RETURN_NAMES
    OUTPUT_TOOLTIPS = (
        "The trained adapter, ready for 'Apply SIA at Late Steps' on the same Wan MODEL (also saved in models/sia).",
        "Put this in your prompt (or use 'Identity Prompt'), encoded with the CLIP of 'Wan CLIP Reads "
        "Embeddings' (e.g. 'embedding:alice woman'); with ti_steps 0 it is the class word alone.",
        "Adapter loss and face similarity of the trained frames over the iterations.",
        "The trained frame (each clip's first) at the start and at 1/4, 1/2 and 3/4 of training, then every "
        "frame of the last training clip.",
        "Face similarity (training recogniser) of the last trained frame with a face; NaN if none had one.",
        "Identity match (0-100) of the last training clip by an independent recogniser (dlib): 50 is its "
        "same-person threshold. NaN when dlib is not installed or it found no face.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        shared = shared_inputs()
        lora_steps, lora_cfg = WITH_LORA
        plain_steps, plain_cfg = WITHOUT_LORA
        return {
            "required": {
                "model": ("MODEL", tip(
                    "The Wan MODEL you will generate with (Load Diffusion Model, then ModelSamplingSD3 with your "
                    "shift: training samples at that shift). Wan 2.2 A14B: give it the LOW-noise expert, the one "
                    "'Apply SIA at Late Steps' goes on: the adapter acts in the last quarter of the steps, which "
                    "the low-noise expert runs (docs/wan.md). Not changed.")),
                "clip": ("CLIP", tip("umT5-XXL from Load CLIP with type wan.")),
                "vae": ("VAE", tip("The Wan VAE of the model (wan_2.1_vae for Wan 2.1 and the 2.2 A14B experts, "
                                   "wan2.2_vae for TI2V 5B).")),
                **pick(shared, "reference_images", "face_analysis", "identity_name", "class_word", "prompts"),
                "ti_steps": ("INT", {"default": 400, "min": 0, "max": 10000, "tooltip":
                                     "Token steps (stage 1: a learned word in umT5's input, saved to "
                                     "models/embeddings). Paper: 400. Its prompts need 'Wan CLIP Reads "
                                     "Embeddings' before CLIP Text Encode. 0: no token, only the adapter: the "
                                     "prompts and the trigger phrase name the class word alone (the node says "
                                     "so)."}),
                **pick(shared, "ti_learning_rate", "ti_batch_size"),
                **pick(shared, "sia_iterations", "sia_learning_rate", "sia_rank", "reg_lambda"),
                "frames": ("INT", {"default": WanSIATrainSettings.frames, "min": 1, "max": 161, "step": 4,
                                   "tooltip": "Frames of each training clip: 4k + 1 (1, 5, 9, 13, 17, ...) as Wan "
                                              "makes them. The identity loss looks at each clip's first frame."}),
                "width": ("INT", {"default": WanSIATrainSettings.width, "min": 64, "max": 2048, "step": 16,
                                  "tooltip": "Width of the training clips, a multiple of 16."}),
                "height": ("INT", {"default": WanSIATrainSettings.height, "min": 64, "max": 2048, "step": 16,
                                   "tooltip": "Height of the training clips, a multiple of 16."}),
                "sampling_lora": (_lora_names(), {"default": NO_LORA, "tooltip":
                                  "Optional distillation LoRA from models/loras (lightx2v, CausVid: the speed "
                                  "LoRA you generate with) put on the MODEL for the training clips only: their "
                                  "few steps then give a finished video. It is not part of the saved adapter "
                                  "and your MODEL stays without it."}),
                "sampling_lora_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 4.0, "step": 0.05,
                                                     "tooltip": "Strength of the sampling_lora."}),
                "sampling_steps": ("INT", {"default": AUTO, "min": 0, "max": 50, "tooltip":
                                           f"Euler steps per training clip; the adapter trains on the last. 0 "
                                           f"(auto): {lora_steps} with a sampling_lora, {plain_steps} without."}),
                "training_cfg": ("FLOAT", {"default": float(AUTO), "min": 0.0, "max": 30.0, "step": 0.1,
                                           "round": 0.01, "tooltip":
                                           f"Guidance of the training clips. 0 (auto): {lora_cfg:g} with a "
                                           f"sampling_lora (as those LoRAs are used), {plain_cfg:g} without (Wan's "
                                           "own). 1 skips the negative prompt and is about twice as fast."}),
                **pick(shared, "seed", "if_exists", "checkpoint_every", "negative_prompt", "resume"),
            },
            "optional": {
                **pick(shared, "early_stop"),
                "gradient_checkpointing": (["auto", "on", "off"], {"default": "auto", "tooltip":
                                           "Recompute the Wan blocks in backward instead of keeping their "
                                           "activations: on saves memory, off saves time. auto: on a GPU, "
                                           "measured on the first step, then off, or kept for only the blocks "
                                           "that do not fit (partial); on the CPU always on."}),
            },
        }

    INPUT_IS_LIST = True   # reference photos may come as an image list, as on the SD1.5 Train node

    def train(self, **inputs):
        from ..evaluation.training_sample import score_training_sample

        kwargs = single_values(inputs)
        kwargs["sampling_lora"] = _lora_path(kwargs.get("sampling_lora"))
        r = train_wan_identity(**kwargs, sample_scorer=score_training_sample)
        return node_result(r)


NODES = (("PV_TrainIdentityWan", TrainPersonalVideoIdentityWan, "Train PersonalVideo Identity (Wan)"),)
