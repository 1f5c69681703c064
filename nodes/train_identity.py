"""Node: Train PersonalVideo Identity (textual-inversion token + Spatial Identity Adapter)."""
from __future__ import annotations

from ..training.identity_training import NEGATIVE_PROMPT, TRAINING_CFG, train_identity
from .training_inputs import (RETURN_NAMES, RETURN_TYPES, node_result, shared_inputs, single_values,
                              tip as _tip)

CATEGORY = "PersonalVideo"


class TrainPersonalVideoIdentity:
    DESCRIPTION = (
        "Learns an identity from one or a few photos, on the very MODEL you generate with: a token "
        "(textual inversion, saved to models/embeddings) and a Spatial Identity Adapter trained with a face "
        "identity loss on videos the model generates (saved to models/sia). The MODEL, CLIP and VAE you "
        "connect are not changed."
    )
    CATEGORY = CATEGORY
    FUNCTION = "train"
    OUTPUT_NODE = True
    RETURN_TYPES, RETURN_NAMES = RETURN_TYPES, RETURN_NAMES
    OUTPUT_TOOLTIPS = (
        "The trained adapter, ready for 'Apply SIA at Late Steps' (also saved in models/sia).",
        "Put this in your prompt, e.g. 'embedding:alice woman': it calls the trained token.",
        "Loss of both stages and face similarity of the trained frames over the iterations.",
        "The trained frame at the start and at 1/4, 1/2 and 3/4 of the adapter stage, then all frames of the "
        "last training sample.",
        "Face similarity (training recogniser) of the last trained frame with a face; NaN if none had one.",
        "Identity match (0-100) of the last training sample by an independent recogniser (dlib): 50 is its "
        "same-person threshold, another person scores low. NaN when dlib is not installed or it found no face "
        "(the reason, the verdict and the raw cosine are in the adapter's metadata and the console).",
    )

    @classmethod
    def INPUT_TYPES(cls):
        shared = shared_inputs()
        return {
            "required": {
                "model": ("MODEL", _tip("The SD1.5 MODEL you will generate with, normally with AnimateDiff-Evolved's "
                                        "AnimateLCM motion model attached. It is not changed.")),
                "clip": ("CLIP", _tip("The CLIP of the same SD1.5 checkpoint.")),
                "vae": ("VAE", _tip("The VAE of the same checkpoint.")),
                "reference_images": shared["reference_images"],
                "face_analysis": shared["face_analysis"],
                "identity_name": shared["identity_name"],
                "class_word": shared["class_word"],
                "prompts": shared["prompts"],
                "ti_steps": ("INT", {"default": 400, "min": 0, "max": 10000, "tooltip":
                                     "Textual-inversion steps (stage 1). Paper: 400. 0 keeps the class word's vector."}),
                "ti_learning_rate": shared["ti_learning_rate"],
                "ti_batch_size": shared["ti_batch_size"],
                "sia_iterations": shared["sia_iterations"],
                "sia_learning_rate": shared["sia_learning_rate"],
                "sia_rank": shared["sia_rank"],
                "reg_lambda": shared["reg_lambda"],
                "frames": ("INT", {"default": 16, "min": 1, "max": 64, "tooltip":
                                   "Frames of each training video (16 for AnimateDiff). At most what the motion "
                                   "model takes at once (AnimateDiff v2/v3: 32, AnimateLCM: 64) unless context "
                                   "options are attached; checked before training starts."}),
                "width": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8, "tooltip":
                                  "Width of the training videos."}),
                "height": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8, "tooltip":
                                   "Height of the training videos."}),
                "sampling_steps": ("INT", {"default": 4, "min": 2, "max": 50, "tooltip":
                                           "LCM steps per training video (paper: 4); the adapter trains on the last."}),
                "seed": shared["seed"],
                "if_exists": shared["if_exists"],
                "checkpoint_every": shared["checkpoint_every"],
                "training_cfg": ("FLOAT", {"default": TRAINING_CFG, "min": 1.0, "max": 30.0, "step": 0.1,
                                           "round": 0.01, "tooltip":
                                           "Guidance of the videos the adapter is trained on: the cfg you generate "
                                           "with (the workflows: 1.5). 1.0 skips the negative prompt and makes "
                                           "stage 2 about twice as fast."}),
                "negative_prompt": shared["negative_prompt"],
                "resume": shared["resume"],
            },
            "optional": {
                "image_model": ("MODEL", _tip("Optional plain SD1.5 MODEL (without motion model) for the "
                                              "textual-inversion stage; the MODEL above is used when empty.")),
                "early_stop": shared["early_stop"],
                "gradient_checkpointing": (["auto", "on", "off"], {"default": "auto", "tooltip":
                                           "Recompute the layers in backward instead of keeping their "
                                           "activations: on saves memory (stage 2 at 16x512x512 about 8.5 GiB "
                                           "instead of 39), off saves time. auto: on a GPU, measured on the first "
                                           "step, then off when the memory allows, or kept for only the layers "
                                           "that do not fit (partial); on the CPU always on."}),
            },
        }

    # reference photos may come as an image list (several Load Image nodes, different sizes): the node then
    # gets every input as a list; all but reference_images hold one value
    INPUT_IS_LIST = True

    def train(self, **inputs):
        from ..evaluation.training_sample import score_training_sample

        r = train_identity(**single_values(inputs), sample_scorer=score_training_sample)
        return node_result(r)


NODES = (("PV_TrainIdentity", TrainPersonalVideoIdentity, "Train PersonalVideo Identity"),)
