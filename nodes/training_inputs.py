"""The inputs and outputs both Train nodes share (SD1.5 and Wan): sockets, widgets and tooltips, defined once.

Each Train node picks these by name in its own order (a node's widget order is what saved workflows hold)
and adds its own model inputs and sizes.
"""
from __future__ import annotations

from ..training import prompts as prompt_data
from ..training.identity_training import IF_EXISTS, NEGATIVE_PROMPT
from ..training.run_state import DEFAULT_EVERY


# the outputs both Train nodes give, in this order
RETURN_TYPES = ("SIA_ADAPTER", "STRING", "IMAGE", "IMAGE", "FLOAT", "FLOAT")
RETURN_NAMES = ("sia_adapter", "trigger_phrase", "loss_curve", "preview_frames", "final_similarity", "identity_score")


def node_result(r: dict) -> dict:
    """A Train node's return value from a training run's result: the trigger phrase shown on the node."""
    return {"ui": {"text": [r["trigger"] + (" (reused)" if r["reused"] else "")]},
            "result": (r["adapter"], r["trigger"], r["curve"], r["preview"], r["final_similarity"],
                       r["identity_score"])}


def tip(text):
    return {"tooltip": text}


def shared_inputs() -> dict:
    """{input name: (type, options)} of the inputs both Train nodes have."""
    return {
        "reference_images": ("IMAGE", tip(
            "One or a few photos of the person, any size and shape (a batch or an image list); one clearly "
            "visible face each. Stage 1 trains on face-centred crops at width x height.")),
        "face_analysis": ("FACEANALYSIS", tip("From 'Load Face Analysis (PersonalVideo)' or a PuLID / "
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
        "negative_prompt": ("STRING", {"default": NEGATIVE_PROMPT, "multiline": False, "tooltip":
                                       "Negative prompt of the training videos (used when training_cfg is "
                                       "above 1): the one you generate with."}),
        "resume": ("BOOLEAN", {"default": True, "tooltip":
                               "Continue from the last checkpoint of a run with the very same photos, "
                               "settings and MODEL that was cancelled or failed. Off: start afresh."}),
        "early_stop": ("BOOLEAN", {"default": False, "tooltip":
                       "End stage 2 once the face similarity has stopped rising: its mean over the last "
                       "40 iterations has not risen by more than 0.005 for 60 iterations (never before "
                       "150). Off: train all sia_iterations, as the paper does. The stop point is "
                       "marked on the loss curve."}),
    }


def pick(inputs: dict, *names) -> dict:
    """The entries ``names`` of ``inputs``, in that order."""
    return {n: inputs[n] for n in names}


def single_values(inputs: dict) -> dict:
    """A node with INPUT_IS_LIST gets every input as a list: the one value of each, reference_images kept
    whole (the photos may come as an image list of different sizes)."""
    return {k: (v[0] if isinstance(v, list) and k != "reference_images" and v else v) for k, v in inputs.items()}
