"""insightface, and the antelopev2 files: present, in the right folder, loadable."""
from __future__ import annotations

import os

from .model_files import find_files
from .result import fail, ok, warn

INSIGHTFACE = "insightface"
NAME = "antelopev2 face models"
PACK = "antelopev2"
# Sizes of the files of insightface's antelopev2 / buffalo_l releases, in bytes.
RELEASE_BYTES = {"scrfd_10g_bnkps.onnx": 16_923_827, "glintr100.onnx": 260_665_334,
                 "det_10g.onnx": 16_923_827, "w600k_r50.onnx": 174_383_860}
SEARCH_DEPTH = 4


NUMPY_ABI = ("numpy.dtype size changed", "compiled using numpy 1.", "_array_api not found",
             "numpy.core.multiarray failed to import")


def import_hint(error: str) -> str:
    """What to do about insightface's import error, from its words."""
    if any(k in error.lower() for k in NUMPY_ABI):
        return ("this insightface was compiled against numpy 1.x and numpy 2 is installed. Either install "
                "insightface 2.x (pure Python: python -m pip install -U insightface), or rebuild 0.7.3 against "
                "this numpy (python -m pip install --force-reinstall --no-deps --no-binary insightface "
                "insightface==0.7.3), or go back to numpy 1.26 (python -m pip install \"numpy<2\") if another "
                "pack needs that.")
    if "onnxruntime" in error.lower():
        return "insightface needs onnxruntime: fix the onnxruntime line above."
    return ("python -m pip install insightface==0.7.3 (or insightface==2.1) with the Python that runs ComfyUI. "
            "On Windows 0.7.3 needs the Microsoft C++ Build Tools, or a prebuilt insightface wheel for your "
            "Python version (2.x needs no compiler); insightface also needs opencv (opencv-python-headless).")


def check_insightface(ctx):
    try:
        import insightface
    except Exception as exc:  # noqa: BLE001  (the import error is the finding)
        ctx.facts["insightface"] = False
        error = f"{type(exc).__name__}: {exc}"
        return fail(INSIGHTFACE, f"insightface does not import ({error}); face detection and the face models "
                                 "loader need it.", import_hint(error))
    ctx.facts["insightface"] = True
    return ok(INSIGHTFACE, f"insightface {getattr(insightface, '__version__', '?')} imports.",
              version=getattr(insightface, "__version__", None))


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _find_elsewhere(names: tuple) -> tuple:
    """(folders holding any of ``names`` outside the expected place, zip archives named like the pack)."""
    from ..training.face.model_paths import insightface_folders

    import folder_paths

    roots = list(dict.fromkeys(insightface_folders() + [folder_paths.models_dir]))

    def is_zip(f):
        return f.lower().startswith(PACK) and f.lower().endswith(".zip")

    hits = find_files(roots, lambda f: f in names or is_zip(f), depth=SEARCH_DEPTH, skip_hidden=False)
    found = list(dict.fromkeys(os.path.dirname(p) for p in hits if os.path.basename(p) in names))
    return found, [p for p in hits if is_zip(os.path.basename(p))]


def _missing(exc, names):
    from ..training.face.model_paths import SOURCES

    expected = exc.expected
    elsewhere, zips = _find_elsewhere(names)
    hints = [f"Found {' / '.join(names)} in {f}: move the files into {expected}" for f in elsewhere]
    hints += [f"{z} is not unzipped: unzip it so that the .onnx files sit directly in {expected}" for z in zips]
    hints.append(f"{'Otherwise c' if hints else 'C'}opy {PACK}'s {names[0]} and {names[1]} into {expected}, "
                 f"directly (not in a second antelopev2 folder inside it): {SOURCES[PACK]}.")
    return fail(NAME, exc.summary, "\n".join(hints), expected_folder=expected, found_elsewhere=elsewhere, zips=zips)


def _load(files, with_insightface: bool):
    """Load both files the way the pack does; raises FaceStackError with the pack's own message."""
    from ..training.face.providers import create_session

    if with_insightface:
        from ..training.face.analysis import open_face_analysis

        open_face_analysis(files, "CPU")
    else:
        create_session(files.detector, "CPU")
        create_session(files.recognizer, "CPU")


def check_antelopev2(ctx):
    from ..training.face.errors import FaceStackError, ModelPackMissingError
    from ..training.face.model_paths import LICENSE_NOTE, MODEL_PACKS, find_model_pack

    names = MODEL_PACKS[PACK]
    try:
        files = find_model_pack(PACK)
    except ModelPackMissingError as exc:  # the pack's summary; the fix (found elsewhere, zipped) replaces its advice
        return _missing(exc, names)
    paths = {os.path.basename(p): p for p in (files.detector, files.recognizer)}
    sizes = {n: os.path.getsize(p) for n, p in paths.items()}
    details = {"folder": files.folder, "nested": files.nested, "bytes": sizes}
    short = [n for n, s in sizes.items() if n in RELEASE_BYTES and s < RELEASE_BYTES[n]]
    try:
        _load(files, ctx.facts.get("insightface", True))
    except FaceStackError as exc:
        cut = "; ".join(f"{n} has {sizes[n]:,} of the release's {RELEASE_BYTES[n]:,} bytes (truncated)"
                        for n in short if n in str(exc))
        return fail(NAME, f"{exc}" + (f" {cut}." if cut else ""),
                    f"Delete the damaged file(s) in {files.folder} and copy them again from the {PACK} pack.",
                    **details)
    except ImportError as exc:
        return fail(NAME, f"the files are there but cannot be loaded: {exc}", "Fix the insightface line above.",
                    **details)
    ctx.facts["antelopev2"] = files
    listing = " and ".join(f"{n} ({_size(s)})" for n, s in sizes.items())
    notes, fixes = [], []
    if files.nested:
        notes.append(f"they are in a nested folder ({files.folder}); PersonalVideo uses them, but PuLID and "
                     "InstantID look one level up")
        fixes.append(f"Move the .onnx files up into {os.path.dirname(files.folder)} and delete the empty "
                     f"{PACK} folder inside it.")
    odd = [n for n, s in sizes.items() if n in RELEASE_BYTES and s != RELEASE_BYTES[n]]
    if odd:
        notes.append(", ".join(f"{n} is {sizes[n]:,} bytes, not the {RELEASE_BYTES[n]:,} of insightface's release"
                               for n in odd) + " (a different or home-made model)")
        fixes.append(f"Fine if you made these files on purpose; otherwise copy the {PACK} files again.")
    head = f"{listing} in {files.folder} load."
    if notes:
        return warn(NAME, f"{head} But {'; '.join(notes)}.", " ".join(fixes), **details)
    return ok(NAME, f"{head} ({LICENSE_NOTE}.)", **details)
