"""onnxruntime: which package is installed, and which providers really run a model.

Every provider this onnxruntime lists gets a session on a tiny model of its own
(a provider can be listed and still fail to load, e.g. CUDA without cuDNN).
When torch sees an NVIDIA GPU, CUDA is tried even when it is not listed, so the
report says why face detection would fall back to the CPU.
"""
from __future__ import annotations

from .result import fail, ok, warn

NAME = "onnxruntime"
DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-silicon",
                 "onnxruntime-rocm", "onnxruntime-openvino", "onnxruntime-qnn", "ort-nightly", "ort-nightly-gpu")
NOT_COMPUTE = {"AzureExecutionProvider"}  # runs models remotely; nothing to test locally
CUDA = "CUDAExecutionProvider"
ONE_PACKAGE = ("python -m pip uninstall -y onnxruntime onnxruntime-gpu, then python -m pip install onnxruntime-gpu "
               "(NVIDIA) or onnxruntime (CPU, AMD, Apple)")


def installed_onnxruntime_packages() -> list:
    """Names of the installed distributions that provide the ``onnxruntime`` module."""
    from importlib import metadata

    found = set()
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
        if name in DISTRIBUTIONS:
            found.add(f"{name} {dist.version}")
    return sorted(found)


def tiny_model_bytes() -> bytes:
    """A one-node ONNX model (y = relu(x), float32 [1, 8])."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "pv_doctor_probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


def try_provider(name: str, model: bytes) -> tuple:
    """(works, reason): a session asking for ``name`` only, run once."""
    import numpy as np

    from ..training.face.providers import open_session

    try:
        session, reasons = open_session(model, [name])
    except Exception as exc:  # noqa: BLE001  (onnxruntime's own message is the finding)
        return False, f"{type(exc).__name__}: {str(exc).strip()[:400]}"
    if name in reasons:
        return False, reasons[name]
    x = np.linspace(-1, 1, 8, dtype=np.float32)[None]
    try:
        y = session.run(None, {"x": x})[0]
    except Exception as exc:  # noqa: BLE001
        return False, f"the session was created but running it failed: {type(exc).__name__}: {exc}"
    if not np.allclose(y, np.maximum(x, 0)):
        return False, "the session ran but returned wrong values"
    return True, ""


def cuda_hint(reason: str) -> str:
    """What to do, from the words of onnxruntime's CUDA failure."""
    low = reason.lower()
    if "not in available provider" in low or "is not available" in low:
        return ("this onnxruntime is a build without CUDA (the `onnxruntime` package, or both it and "
                f"`onnxruntime-gpu` installed): {ONE_PACKAGE}")
    if "cudnn" in low:
        return ("cuDNN is missing or not the version this onnxruntime-gpu was built for (1.19 and newer want "
                "CUDA 12 and cuDNN 9): install the onnxruntime-gpu that matches your CUDA/cuDNN, or "
                "python -m pip install nvidia-cudnn-cu12")
    if any(k in low for k in ("cublas", "cudart", "cufft", "curand", "error 126", "libcuda")):
        return ("the CUDA runtime libraries this onnxruntime-gpu needs are missing: install the CUDA 12 runtime, "
                "or python -m pip install nvidia-cuda-runtime-cu12 nvidia-cublas-cu12")
    return "install the onnxruntime-gpu build that matches your CUDA and cuDNN versions"


def _torch_sees_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available()) and not getattr(torch.version, "hip", None)
    except Exception:  # noqa: BLE001
        return False


def check_onnxruntime(ctx):
    packages = installed_onnxruntime_packages()
    try:
        import onnxruntime
    except Exception as exc:  # noqa: BLE001
        return fail(NAME, f"onnxruntime does not import ({type(exc).__name__}: {exc}); face detection needs it.",
                    "python -m pip install onnxruntime-gpu (NVIDIA) or onnxruntime (other machines) with the "
                    "Python that runs ComfyUI.", packages=packages)
    listed = list(onnxruntime.get_available_providers())
    model = tiny_model_bytes()
    tried = [p for p in listed if p not in NOT_COMPUTE]
    if _torch_sees_cuda() and CUDA not in tried:
        tried.insert(0, CUDA)
    results = {p: try_provider(p, model) for p in tried}
    works = [p for p, (good, _) in results.items() if good]
    broken = {p: why for p, (good, why) in results.items() if not good}
    details = {"version": onnxruntime.__version__, "packages": packages, "listed": listed, "working": works,
               "failing": broken}
    names = ", ".join(p.split()[0] for p in packages) or "unknown"
    head = f"onnxruntime {onnxruntime.__version__} (package {names}); working providers: {', '.join(works) or 'none'}."
    if "CPUExecutionProvider" not in works:
        return fail(NAME, f"{head} Even the CPU provider fails: {broken.get('CPUExecutionProvider', '?')}",
                    f"Reinstall onnxruntime: {ONE_PACKAGE}.", **details)
    if len(packages) > 1:
        return warn(NAME, f"{head} Several onnxruntime packages are installed ({', '.join(packages)}); they "
                          "overwrite each other's files and the GPU provider often disappears.",
                    ONE_PACKAGE + ".", **details)
    if CUDA in broken:
        return warn(NAME, f"{head} Face detection falls back to the CPU because CUDA does not work: "
                          f"{broken[CUDA][:500]}",
                    cuda_hint(broken[CUDA]) + ". (Training's face encoder runs in PyTorch, so this slows "
                                              "face detection only.)", **details)
    others = {p: why for p, why in broken.items() if p != CUDA}
    if others:
        return warn(NAME, head + " Listed but not working: "
                    + "; ".join(f"{p}: {why[:200]}" for p, why in others.items()),
                    "Face detection uses the first working provider; nothing to do unless you want that one.",
                    **details)
    return ok(NAME, head, **details)
