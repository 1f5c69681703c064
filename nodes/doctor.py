"""Node: PersonalVideo Doctor (the install checks of doctor/, shown in the UI)."""
from __future__ import annotations

import logging

CATEGORY = "PersonalVideo"
log = logging.getLogger("PersonalVideo")


class PersonalVideoDoctor:
    DESCRIPTION = (
        "Checks this ComfyUI install for PersonalVideo and shows, line by line, what is fine and what to fix: "
        "ComfyUI version, each dependency's version against the tested range, torch/GPU memory, onnxruntime "
        "providers, insightface, the antelopev2 face models, the face encoder, AnimateDiff-Evolved, the models the "
        "example workflows load, and write access to models/sia and models/embeddings. FAIL lines block training. "
        "Run it with Queue Prompt; it changes nothing in your install except caching the converted face encoder."
    )
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report",)
    OUTPUT_TOOLTIPS = ("The report as text (also shown on the node).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "convert_face_encoder": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "When the face encoder (glintr100 converted to PyTorch) is not cached yet, convert and "
                               "cache it now (about a minute) so the first training does not have to."}),
            }
        }

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")  # the install can change between runs: always check again

    def run(self, convert_face_encoder=True):
        import os

        import comfy.utils

        from ..doctor import DoctorContext, run_checks
        from ..doctor.runner import CHECKS

        import folder_paths

        root = os.path.dirname(os.path.abspath(folder_paths.__file__))
        bar = comfy.utils.ProgressBar(len(CHECKS))
        report = run_checks(DoctorContext(comfyui_root=root, in_server=True,
                                          convert_encoder=bool(convert_face_encoder)),
                            lambda done, total, result: bar.update_absolute(done, total))
        text = report.text()
        log.info("[PersonalVideo] doctor report:\n%s", text)
        return {"ui": {"text": [text]}, "result": (text,)}


NODES = (("PV_Doctor", PersonalVideoDoctor, "PersonalVideo Doctor"),)
