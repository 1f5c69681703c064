"""The PersonalVideo doctor: checks a real install and says, line by line, what is fine and what to fix.

Used by the "PersonalVideo Doctor" node (inside a running ComfyUI) and by the
command ``python custom_nodes/ComfyUI-PersonalVideo/doctor`` run from the
ComfyUI folder with ComfyUI's own Python (see :mod:`.command`).  Each check
returns ok / warn / fail, what it found and what to do; any fail means training
cannot run, and the command then exits with code 1.

One concept per module: ``result`` (lines and the report), ``context``,
``comfyui_version``, ``pack``, ``tested_versions`` (the one table of tested
dependency ranges), ``dependency_versions`` (the installed ones against it), ``gpu``, ``onnx_runtime``, ``face_models``,
``face_encoder``, ``animatediff``, ``model_files`` (finding and verifying model
files), ``workflow_models``, ``folders``, ``runner``, ``command``.  Heavy
libraries are imported inside the checks.
"""
from .context import DoctorContext
from .result import FAIL, OK, WARN, CheckResult, Report
from .runner import CHECKS, run_checks

__all__ = ["CHECKS", "FAIL", "OK", "WARN", "CheckResult", "DoctorContext", "Report", "run_checks"]
