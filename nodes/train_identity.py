"""Node: Train PersonalVideo Identity (textual-inversion token + Spatial Identity Adapter)."""
from __future__ import annotations

from ..training import prompts as prompt_data
from ..training.identity_training import IF_EXISTS, NEGATIVE_PROMPT, TRAINING_CFG, train_identity
from ..training.run_state import DEFAULT_EVERY

CATEGORY = "PersonalVideo"


def _tip(text):
    return {"tooltip": text}


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
    RETURN_TYPES = ("SIA_ADAPTER", "STRING", "IMAGE", "IMAGE", "FLOAT", "FLOAT")
    RETURN_NAMES = ("sia_adapter", "trigger_phrase", "loss_curve", "preview_frames", "final_similarity",
                    "identity_score")
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
        return {
            "required": {
                "model": ("MODEL", _tip("The SD1.5 MODEL you will generate with, normally with AnimateDiff-Evolved's "
                                        "AnimateLCM motion model attached. It is not changed.")),
                "clip": ("CLIP", _tip("The CLIP of the same SD1.5 checkpoint.")),
                "vae": ("VAE", _tip("The VAE of the same checkpoint.")),
                "reference_images": ("IMAGE", _tip(
                    "One or a few photos of the person, any size and shape (a batch or an image list); one clearly "
                    "visible face each. Stage 1 trains on face-centred crops at width x height.")),
                "face_analysis": ("FACEANALYSIS", _tip("From 'Load Face Analysis (PersonalVideo)' or a PuLID / "
                                                       "InstantID insightface loader (antelopev2).")),
                "identity_name": ("STRING", {"default": "my_identity", "tooltip":
                                             "File name for models/sia and models/embeddings, and the embedding "
                                             "name in prompts (letters, digits, '-', '_')."}),
                "class_word": ("STRING", {"default": "person", "tooltip":
                                          "What the person is: man, woman, person, boy, girl... The token starts "
                                          "from this word and every prompt uses it."}),
                # dynamicPrompts off: older frontends otherwise read {token} as a {a|b} choice and drop the braces
                "prompts": ("STRING", {"default": prompt_data.default_prompts_text(), "multiline": True,
                                       "dynamicPrompts": False, "tooltip":
                                       "Simulated prompts, one per line, with {token} and {class_word}; one is "
                                       "drawn per adapter iteration. Defaults to the pack's 50 prompts."}),
                "ti_steps": ("INT", {"default": 400, "min": 0, "max": 10000, "tooltip":
                                     "Textual-inversion steps (stage 1). Paper: 400. 0 keeps the class word's vector."}),
                "ti_learning_rate": ("FLOAT", {"default": 1e-3, "min": 0.0, "max": 1.0, "step": 1e-4, "tooltip":
                                               "Learning rate of the token (paper: 1e-3)."}),
                "ti_batch_size": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip":
                                          "Reference photos per textual-inversion step (paper: 4)."}),
                "sia_iterations": ("INT", {"default": 400, "min": 1, "max": 10000, "tooltip":
                                           "Adapter iterations (stage 2), one generated video each. Paper: 400."}),
                "sia_learning_rate": ("FLOAT", {"default": 1e-4, "min": 0.0, "max": 1.0, "step": 1e-5, "tooltip":
                                                "AdamW learning rate of the adapter (paper: 1e-4)."}),
                "sia_rank": ("INT", {"default": 4, "min": 1, "max": 128, "tooltip":
                                     "LoRA rank of the adapter (q/k/v of spatial self-attention)."}),
                "reg_lambda": ("FLOAT", {"default": 1e-2, "min": 0.0, "max": 100.0, "step": 1e-3, "tooltip":
                                         "Weight of ||adapter - initial||^2, which keeps the adapter close to a "
                                         "no-op (paper's weight-space regularisation)."}),
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
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip":
                                 "Same seed, same machine: same result."}),
                "if_exists": (list(IF_EXISTS), {"default": "reuse", "tooltip":
                                                "When an identity of this name exists: reuse loads it at once if "
                                                "it was trained from the same photos, settings and MODEL (and "
                                                "says what differs otherwise); overwrite trains it again; error "
                                                "stops."}),
                "checkpoint_every": ("INT", {"default": DEFAULT_EVERY, "min": 0, "max": 10000, "tooltip":
                                             "Save the state of the run every this many token steps and adapter "
                                             "iterations (in models/sia/.pv-training, removed when the identity "
                                             "is saved), so an interrupted or failed run can resume. 0: never."}),
                "training_cfg": ("FLOAT", {"default": TRAINING_CFG, "min": 1.0, "max": 30.0, "step": 0.1,
                                           "round": 0.01, "tooltip":
                                           "Guidance of the videos the adapter is trained on: the cfg you generate "
                                           "with (the workflows: 1.5). 1.0 skips the negative prompt and makes "
                                           "stage 2 about twice as fast."}),
                "negative_prompt": ("STRING", {"default": NEGATIVE_PROMPT, "multiline": False, "tooltip":
                                               "Negative prompt of the training videos (used when training_cfg is "
                                               "above 1): the one you generate with."}),
                "resume": ("BOOLEAN", {"default": True, "tooltip":
                                       "Continue from the last checkpoint of a run with the very same photos, "
                                       "settings and MODEL that was cancelled or failed. Off: start afresh."}),
            },
            "optional": {
                "image_model": ("MODEL", _tip("Optional plain SD1.5 MODEL (without motion model) for the "
                                              "textual-inversion stage; the MODEL above is used when empty.")),
                "early_stop": ("BOOLEAN", {"default": False, "tooltip":
                               "End stage 2 once the face similarity has stopped rising: its mean over the last "
                               "40 iterations has not risen by more than 0.005 for 60 iterations (never before "
                               "150). Off: train all sia_iterations, as the paper does. The stop point is "
                               "marked on the loss curve."}),
                "gradient_checkpointing": (["auto", "on", "off"], {"default": "auto", "tooltip":
                                           "Recompute the layers in backward instead of keeping their "
                                           "activations: on saves memory (stage 2 at 16x512x512 about 8.5 GiB "
                                           "instead of 39), off saves time. auto: on a GPU, measured on the first "
                                           "step and switched off when the memory allows; on the CPU always on."}),
            },
        }

    # reference photos may come as an image list (several Load Image nodes, different sizes): the node then
    # gets every input as a list; all but reference_images hold one value
    INPUT_IS_LIST = True

    def train(self, **inputs):
        from ..evaluation.training_sample import score_training_sample

        kwargs = {k: (v[0] if isinstance(v, list) and k != "reference_images" and v else v)
                  for k, v in inputs.items()}
        r = train_identity(**kwargs, sample_scorer=score_training_sample)
        return {"ui": {"text": [r["trigger"] + (" (reused)" if r["reused"] else "")]},
                "result": (r["adapter"], r["trigger"], r["curve"], r["preview"], r["final_similarity"],
                           r["identity_score"])}


NODES = (("PV_TrainIdentity", TrainPersonalVideoIdentity, "Train PersonalVideo Identity"),)
