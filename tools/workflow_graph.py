"""Load an example workflow's API twin, set its inputs, derive variants: for scripts and tests.

    from tools import workflow_graph as wg

    wf = wg.load("01_train_identity")                  # workflows/api/01_train_identity.json (a copy)
    wg.configure(wf, checkpoint="sd15.safetensors", motion_model="lcm_mm.safetensors",
                 lcm_lora="lcm_lora.safetensors", frames=2, width=64, height=64,
                 ti_steps=1, sia_iterations=1, identity="alice", reference_image="alice.png")
    wg.set_input(wf, "KSampler", "seed", 7)           # by class_type or by node title
    plain = wg.without_animatediff(wf)                 # for hosts without AnimateDiff-Evolved
    status, body = comfy.post_prompt(wf)               # tools.comfy_process.ComfyProcess

Every function works on the API format (``{id: {"class_type", "inputs", "_meta": {"title"}}}``);
links are ``[origin id, output slot]``. Setting an input a node does not have is an error (a typo
would otherwise be silently ignored by the host).
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

API_DIR = Path(__file__).resolve().parent.parent / "workflows" / "api"
ANIMATEDIFF_PREFIX = "ADE_"


def names() -> list:
    """The example workflows' names (without .json)."""
    return sorted(p.stem for p in API_DIR.glob("*.json"))


def load(name_or_path) -> dict:
    """An API workflow: an example's name ("02_generate_with_identity") or a path to a JSON file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = API_DIR / f"{name_or_path}.json"
    return json.loads(path.read_text())


def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def find(wf: dict, selector: str) -> list:
    """Ids of the nodes whose class_type or title is ``selector``."""
    return [nid for nid, node in wf.items()
            if selector in (node["class_type"], node.get("_meta", {}).get("title"))]


def set_input(wf: dict, selector: str, name: str, value, missing_ok: bool = False) -> list:
    """Set widget input ``name`` on every node matching ``selector``; returns their ids."""
    ids = find(wf, selector)
    if not ids and not missing_ok:
        raise KeyError(f"no node with class_type or title {selector!r}")
    for nid in ids:
        inputs = wf[nid]["inputs"]
        if name not in inputs:
            raise KeyError(f"node {nid} ({wf[nid]['class_type']}) has no input {name!r}")
        if is_link(inputs[name]):
            raise ValueError(f"node {nid} ({wf[nid]['class_type']}) input {name!r} is linked, not a value")
        inputs[name] = value
    return ids


# (selector, input) pairs each high-level setting of configure() writes
ROLES = {
    "checkpoint": [("CheckpointLoaderSimple", "ckpt_name")],
    "motion_model": [("ADE_AnimateDiffLoaderGen1", "model_name")],
    "lcm_lora": [("AnimateLCM LoRA", "lora_name")],
    "style_lora": [("LoraLoader", "lora_name")],
    "controlnet": [("ControlNetLoader", "control_net_name")],
    "reference_image": [("LoadImage", "image")],
    "pose_video": [("VHS_LoadVideo", "video")],
    "frames": [("EmptyLatentImage", "batch_size"), ("PV_TrainIdentity", "frames"),
               ("VHS_LoadVideo", "frame_load_cap")],
    "length": [("EmptyHunyuanLatentVideo", "length")],
    "width": [("EmptyLatentImage", "width"), ("PV_TrainIdentity", "width"), ("VHS_LoadVideo", "custom_width"),
              ("EmptyHunyuanLatentVideo", "width")],
    "height": [("EmptyLatentImage", "height"), ("PV_TrainIdentity", "height"), ("VHS_LoadVideo", "custom_height"),
               ("EmptyHunyuanLatentVideo", "height")],
    "text_encoder": [("CLIPLoader", "clip_name")],
    "vae": [("VAELoader", "vae_name")],
    "steps": [("KSampler", "steps")],
    "cfg": [("KSampler", "cfg")],
    "seed": [("KSampler", "seed"), ("PV_TrainIdentity", "seed")],
    "training_steps": [("PV_TrainIdentity", "sampling_steps")],
    "ti_steps": [("PV_TrainIdentity", "ti_steps")],
    "ti_batch_size": [("PV_TrainIdentity", "ti_batch_size")],
    "sia_iterations": [("PV_TrainIdentity", "sia_iterations")],
    "class_word": [("PV_TrainIdentity", "class_word")],
    "if_exists": [("PV_TrainIdentity", "if_exists")],
    "face_provider": [("PV_LoadFaceAnalysis", "provider")],
}


def configure(wf: dict, identity: str | None = None, **settings) -> dict:
    """Set common inputs by role (see ROLES), skipping roles this workflow has no node for.

    ``identity``: the trainer's identity_name and the adapter file Load SIA Adapter reads
    (``<identity>.safetensors``). Returns ``wf``.
    """
    unknown = set(settings) - set(ROLES)
    if unknown:
        raise KeyError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(ROLES)}")
    for role, value in settings.items():
        for selector, name in ROLES[role]:
            set_input(wf, selector, name, value, missing_ok=True)
    if identity is not None:
        set_input(wf, "PV_TrainIdentity", "identity_name", identity, missing_ok=True)
        set_input(wf, "PV_LoadSIAAdapter", "adapter_name", f"{identity}.safetensors", missing_ok=True)
    _retitle_latents(wf)
    return wf


LATENT_TITLE = re.compile(r"^\d+ frames, \d+x\d+$")


def _retitle_latents(wf: dict) -> None:
    """A latent titled with its size ("16 frames, 512x512") keeps a title that matches its inputs."""
    for node in wf.values():
        meta, inputs = node.get("_meta", {}), node["inputs"]
        if node["class_type"] == "EmptyLatentImage" and LATENT_TITLE.match(meta.get("title", "")):
            meta["title"] = f"{inputs['batch_size']} frames, {inputs['width']}x{inputs['height']}"
        if node["class_type"] == "EmptyHunyuanLatentVideo" and LATENT_TITLE.match(meta.get("title", "")):
            meta["title"] = f"{inputs['length']} frames, {inputs['width']}x{inputs['height']}"


def without_animatediff(wf: dict) -> dict:
    """An image-only copy for hosts without AnimateDiff-Evolved: its nodes dropped, MODEL links rewired.

    Each AnimateDiff-Evolved node passes a MODEL through (input ``model`` -> output 0); whatever
    read its output reads that input's origin instead. The frames become a batch of images.
    """
    out = copy.deepcopy(wf)
    dropped = {nid: node for nid, node in out.items() if node["class_type"].startswith(ANIMATEDIFF_PREFIX)}
    for nid, node in dropped.items():
        if not is_link(node["inputs"].get("model")):
            raise ValueError(f"node {nid} ({node['class_type']}) has no linked model input to pass through")
        del out[nid]

    def source(link):
        while link[0] in dropped:
            if link[1] != 0:
                raise ValueError(f"a link reads output {link[1]} of {dropped[link[0]]['class_type']}")
            link = dropped[link[0]]["inputs"]["model"]
        return list(link)

    for node in out.values():
        for name, value in node["inputs"].items():
            if is_link(value):
                node["inputs"][name] = source(value)
    return out


def node_types(wf: dict) -> set:
    return {node["class_type"] for node in wf.values()}


def missing_node_types(wf: dict, object_info: dict) -> list:
    """Node types the workflow uses that a host's /object_info does not list."""
    return sorted(node_types(wf) - set(object_info))


def outputs_of(entry: dict, node_id: str) -> dict:
    """A node's outputs in a /history entry ({} when it produced none)."""
    return entry.get("outputs", {}).get(str(node_id), {})


# ---------------------------------------------------------------- before queueing: what is missing
# file inputs -> where the file goes
FILE_INPUTS = {
    ("CheckpointLoaderSimple", "ckpt_name"): ("checkpoints", "ComfyUI/models/checkpoints"),
    ("LoraLoaderModelOnly", "lora_name"): ("loras", "ComfyUI/models/loras"),
    ("LoraLoader", "lora_name"): ("loras", "ComfyUI/models/loras"),
    ("ControlNetLoader", "control_net_name"): ("controlnet", "ComfyUI/models/controlnet"),
    ("UNETLoader", "unet_name"): ("diffusion_models", "ComfyUI/models/diffusion_models"),
    ("CLIPLoader", "clip_name"): ("text_encoders", "ComfyUI/models/text_encoders"),
    ("VAELoader", "vae_name"): ("vae", "ComfyUI/models/vae"),
    ("ADE_AnimateDiffLoaderGen1", "model_name"): ("animatediff_models", "ComfyUI/models/animatediff_models"),
    ("PV_LoadSIAAdapter", "adapter_name"): ("sia", "ComfyUI/models/sia (train one with workflow 01)"),
    ("LoadImage", "image"): ("input", "ComfyUI/input"),
    ("VHS_LoadVideo", "video"): ("input", "ComfyUI/input"),
}
# node type prefix -> the pack to install into ComfyUI/custom_nodes
PACK_PREFIXES = {
    "ADE_": "ComfyUI-AnimateDiff-Evolved (github.com/Kosinkadink/ComfyUI-AnimateDiff-Evolved)",
    "VHS_": "ComfyUI-VideoHelperSuite (github.com/Kosinkadink/ComfyUI-VideoHelperSuite)",
    "DWPreprocessor": "comfyui_controlnet_aux (github.com/Fannovel16/comfyui_controlnet_aux)",
    "PV_": "ComfyUI-PersonalVideo (this pack: check the console for its import error)",
}


def missing_packs(wf: dict, object_info: dict) -> dict:
    """{pack to install: [node types]} for node types the host does not have."""
    out = {}
    for node_type in missing_node_types(wf, object_info):
        pack = next((p for prefix, p in PACK_PREFIXES.items() if node_type.startswith(prefix)),
                    "the custom node pack that provides it (ComfyUI-Manager: Install Missing Custom Nodes)")
        out.setdefault(pack, []).append(node_type)
    return out


def missing_files(wf: dict, object_info: dict) -> list:
    """[(node id, input, file name, where it goes)] for file inputs whose file the host does not list."""
    out = []
    for nid, node in sorted(wf.items()):
        entry = object_info.get(node["class_type"])
        for (node_type, name), (_, where) in FILE_INPUTS.items():
            if node["class_type"] != node_type or entry is None or name not in node["inputs"]:
                continue
            spec = {**entry["input"].get("required", {}), **entry["input"].get("optional", {})}.get(name)
            choices = spec[0] if spec and isinstance(spec[0], list) else []
            if node["inputs"][name] not in choices:
                out.append((nid, name, node["inputs"][name], where))
    return out


def preflight(wf: dict, object_info: dict) -> list:
    """Messages telling what to install or download, and where, before a workflow can run ([] when ready)."""
    messages = [f"install {pack} into ComfyUI/custom_nodes (missing node types: {', '.join(types)})"
                for pack, types in missing_packs(wf, object_info).items()]
    messages += [f"put {file} in {where} (node {nid}, input {name})"
                 for nid, name, file, where in missing_files(wf, object_info)]
    return messages
