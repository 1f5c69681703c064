"""The recogniser converted to PyTorch (what the identity loss trains through): cached, or convertible."""
from __future__ import annotations

import os

from .result import fail, ok, warn

NAME = "face encoder"
INSTALL = {"onnxruntime": "onnxruntime-gpu (NVIDIA) or onnxruntime (other machines)"}


def check_face_encoder(ctx):
    from ..training.face.encoder import cache_file_for, load_recognizer
    from ..training.face.errors import FaceStackError
    from ..training.face.model_paths import encoder_cache_dir

    files = ctx.facts.get("antelopev2")
    if files is None:
        return warn(NAME, "not checked: the antelopev2 recogniser is not usable (see the line above).")
    for module in ("onnx2torch", "onnx", "onnxruntime"):
        try:
            __import__(module)
        except Exception as exc:  # noqa: BLE001
            return fail(NAME, f"{module} does not import ({type(exc).__name__}: {exc}); the pack needs it to convert "
                              f"{os.path.basename(files.recognizer)} into the PyTorch encoder the identity loss "
                              "needs (and to check the conversion).",
                        f"python -m pip install {INSTALL.get(module, module)} with the Python that runs ComfyUI.")
    try:
        cache_dir = encoder_cache_dir()
    except FaceStackError as exc:
        cache_dir, no_cache = None, str(exc)
    else:
        no_cache = ""
    cache = cache_file_for(files.recognizer, cache_dir) if cache_dir else ""
    details = {"recognizer": files.recognizer, "cache": cache or None}
    if cache and not os.path.isfile(cache) and not ctx.convert_encoder:
        return ok(NAME, f"not converted yet: the first training converts {os.path.basename(files.recognizer)} "
                        f"(a minute or so for glintr100) and caches it in {cache_dir}.", **details)
    try:
        encoder = load_recognizer(files.recognizer, cache_dir)
    except FaceStackError as exc:
        return fail(NAME, str(exc), "Copy the antelopev2 recogniser again; if it still fails, report it with your "
                                    "onnx, onnx2torch and onnxruntime versions.", **details)
    report = encoder.report
    details.update(max_abs_diff=report.max_abs_diff, tolerance=report.tolerance, seconds=round(report.seconds, 1))
    if report.from_cache:
        return ok(NAME, f"cached in {report.cache_file} (verified against onnxruntime when converted: max abs diff "
                        f"{report.max_abs_diff:.2g}).", **details)
    if not report.cache_file:
        return warn(NAME, f"converts and agrees with onnxruntime (max abs diff {report.max_abs_diff:.2g}), but the "
                          "converted encoder cannot be cached, so every training converts it again"
                          + (f": {no_cache}" if no_cache else " (see the console)."),
                    "Make models/insightface writable for the user running ComfyUI.", **details)
    return ok(NAME, f"converted now in {report.seconds:.0f} s and verified against onnxruntime (max abs diff "
                    f"{report.max_abs_diff:.2g}); cached in {report.cache_file}, so training will not convert "
                    "it again.", **details)
