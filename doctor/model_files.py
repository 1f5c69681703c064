"""Model files on disk: find them by name in ComfyUI's model folders, tell damaged ones apart
(without unpickling anything), and tell an SD1.5 checkpoint from other families."""
from __future__ import annotations

import json
import os
import struct
import zipfile

SEARCH_DEPTH = 3
SD15_PROBE = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
CONTEXT_FAMILY = {768: "SD1.5", 1024: "SD2", 2048: "SDXL"}
PICKLE_EXTS = (".ckpt", ".pt", ".pth", ".bin")


class DamagedFile(Exception):
    pass


def folders(kind: str, extra=()) -> list:
    """ComfyUI's folders for ``kind`` (including extra_model_paths.yaml entries), then ``extra``."""
    import folder_paths

    try:
        known = list(folder_paths.get_folder_paths(kind))
    except KeyError:
        known = []
    return list(dict.fromkeys(known + [str(e) for e in extra]))


def listdir(folder: str) -> list:
    """The sorted entries of ``folder``; none when it is missing or unreadable."""
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def find_files(dirs, predicate, depth: int = SEARCH_DEPTH, skip_hidden: bool = True) -> list:
    """Paths under ``dirs`` (``depth`` levels deep, links followed) whose base name passes ``predicate``;
    hidden files and folders are left out unless ``skip_hidden`` is false."""
    out = []
    for root in dirs:
        if not os.path.isdir(root):
            continue
        base_depth = root.rstrip(os.sep).count(os.sep)
        for folder, subdirs, files in os.walk(root, followlinks=True):
            if folder.count(os.sep) - base_depth >= depth:
                subdirs[:] = []
            if skip_hidden:
                subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            out += [os.path.join(folder, f) for f in sorted(files)
                    if not (skip_hidden and f.startswith(".")) and predicate(f)]
    return list(dict.fromkeys(out))


def safetensors_header(path: str) -> dict:
    """The JSON header of a .safetensors file; :class:`DamagedFile` when the file is cut short or not one."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise DamagedFile(f"{size} bytes: not a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100_000_000:
            raise DamagedFile(f"{size:,} bytes: the header does not fit (truncated or not a safetensors file)")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise DamagedFile("the header is not readable JSON (damaged or not a safetensors file)") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise DamagedFile(f"{size:,} of {8 + n + end:,} bytes: truncated (an interrupted download or copy)")
    return header


def check_intact(path: str):
    """The safetensors header (None for pickle-based files, which are only checked to be complete archives)."""
    if path.lower().endswith((".safetensors", ".sft")):
        return safetensors_header(path)
    if path.lower().endswith(PICKLE_EXTS):
        try:
            with zipfile.ZipFile(path) as z:  # torch's format since 1.6: the central directory is at the end
                z.namelist()
        except zipfile.BadZipFile:
            with open(path, "rb") as f:
                legacy = f.read(2) == b"\x80\x02"  # torch's pre-1.6 pickle format: nothing to verify cheaply
            if not legacy:
                raise DamagedFile(f"{os.path.getsize(path):,} bytes: not a complete archive (truncated or damaged)")
    return None


def checkpoint_family(header: dict) -> str:
    probe = header.get(SD15_PROBE)
    if probe and len(probe.get("shape", [])) == 2:
        return CONTEXT_FAMILY.get(int(probe["shape"][1]), "other")
    if any(k.startswith("conditioner.embedders.1.") for k in header):
        return "SDXL"
    return "other"
