"""Run every check in order; a check that crashes becomes a FAIL line, never a traceback."""
from __future__ import annotations

import logging

from . import animatediff, comfyui_version, dependency_versions, face_encoder, face_models, folders, gpu
from . import onnx_runtime, pack, wan_models, workflow_models
from .result import CheckResult, Report, fail

log = logging.getLogger(__name__)

CHECKS = (
    (comfyui_version.NAME, comfyui_version.check_comfyui),
    (pack.NAME, pack.check_pack),
    (dependency_versions.NAME, dependency_versions.check_dependency_versions),
    (gpu.NAME, gpu.check_torch),
    (onnx_runtime.NAME, onnx_runtime.check_onnxruntime),
    (face_models.INSIGHTFACE, face_models.check_insightface),
    (face_models.NAME, face_models.check_antelopev2),
    (face_encoder.NAME, face_encoder.check_face_encoder),
    (animatediff.NAME, animatediff.check_animatediff),
    (animatediff.MOTION, animatediff.check_motion_model),
    (workflow_models.CHECKPOINT, workflow_models.check_checkpoint),
    (workflow_models.LCM_LORA, workflow_models.check_lcm_lora),
    (workflow_models.OPENPOSE, workflow_models.check_openpose),
    (wan_models.NAME, wan_models.check_wan_models),
    (folders.SIA, folders.check_sia_folder),
    (folders.EMBEDDINGS, folders.check_embeddings_folder),
)


def run_checks(ctx, progress=None) -> Report:
    """All checks against ``ctx``; ``progress(done, total, result)`` is called after each."""
    results = []
    for name, check in CHECKS:
        try:
            result = check(ctx)
            if not isinstance(result, CheckResult):
                raise TypeError(f"the check returned {type(result).__name__}, not a CheckResult")
        except Exception as exc:  # noqa: BLE001  (a doctor must finish its report)
            log.exception("PersonalVideo doctor: the %s check crashed", name)
            result = fail(name, f"the check itself crashed ({type(exc).__name__}: {exc}). This is a bug of the "
                                "PersonalVideo pack, not of your install: this line says nothing about it.",
                          "Report it to the pack's issue tracker with the doctor's whole output (the console "
                          "holds the traceback); the other lines are still valid.")
        results.append(result)
        if progress:
            progress(len(results), len(CHECKS), result)
    return Report(results)
