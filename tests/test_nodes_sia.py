"""The SIA nodes as ComfyUI sees them: registration, widgets, folders, and what they return."""
import os
import subprocess
import sys

import pytest

import folder_paths
import nodes
from comfyui_personalvideo.nodes import model_folders
from comfyui_personalvideo.sia import SIAError, save_adapter

import host
import sampling

OURS = {"PV_LoadSIAAdapter": "Load SIA Adapter", "PV_ApplySIALateSteps": "Apply SIA at Late Steps"}


def test_nodes_are_registered_with_prefix_category_and_tooltips():
    for node_id, display in OURS.items():
        cls = nodes.NODE_CLASS_MAPPINGS[node_id]
        assert nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id] == display
        assert cls.CATEGORY == "PersonalVideo" and cls.DESCRIPTION
        for name, spec in cls.INPUT_TYPES()["required"].items():
            assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
    apply_inputs = nodes.NODE_CLASS_MAPPINGS["PV_ApplySIALateSteps"].INPUT_TYPES()["required"]
    assert apply_inputs["strength"][1]["default"] == 1.0 and apply_inputs["start_percent"][1]["default"] == 0.75
    assert apply_inputs["model"][0] == "MODEL" and apply_inputs["sia_adapter"][0] == "SIA_ADAPTER"


def test_sia_folder_keeps_paths_from_extra_model_paths(tmp_path):
    saved = folder_paths.folder_names_and_paths.get("sia")
    try:
        folder_paths.folder_names_and_paths["sia"] = ([str(tmp_path / "from_yaml")], {".safetensors"})
        model_folders.register_model_folders()
        paths = folder_paths.get_folder_paths("sia")
        assert paths[0] == str(tmp_path / "from_yaml")
        assert os.path.join(folder_paths.models_dir, "sia") in paths
    finally:
        folder_paths.folder_names_and_paths["sia"] = saved


def test_load_node_lists_and_loads_adapters_from_every_sia_folder(tmp_path, tiny_model, make_adapter):
    extra = tmp_path / "extra_sia"
    save_adapter(make_adapter(tiny_model, name="bob"), str(extra / "bob.safetensors"))
    save_adapter(make_adapter(tiny_model, name="cat"), os.path.join(folder_paths.get_folder_paths("sia")[0],
                                                                     "cat.safetensors"))
    saved = folder_paths.folder_names_and_paths["sia"]
    folder_paths.folder_names_and_paths["sia"] = (list(saved[0]) + [str(extra)], saved[1])
    try:
        node = nodes.NODE_CLASS_MAPPINGS["PV_LoadSIAAdapter"]
        choices = node.INPUT_TYPES()["required"]["adapter_name"][0]
        assert {"bob.safetensors", "cat.safetensors"} <= set(choices)
        adapter, trigger = node().load("bob.safetensors")
        assert trigger == "embedding:bob person" and adapter.info.name == "bob"
        assert node.VALIDATE_INPUTS("bob.safetensors") is True
        message = node.VALIDATE_INPUTS("missing.safetensors")
        assert "missing.safetensors" in message and "models/sia" in message
    finally:
        folder_paths.folder_names_and_paths["sia"] = saved


def test_apply_node_returns_a_patched_copy_and_leaves_the_input_alone(tiny_model, make_adapter, conds):
    before, _ = sampling.sample(tiny_model, *conds, steps=4)
    (patched,) = nodes.NODE_CLASS_MAPPINGS["PV_ApplySIALateSteps"]().apply(tiny_model, make_adapter(tiny_model),
                                                                          1.0, 0.75)
    assert patched is not tiny_model and tiny_model.object_patches == {}
    adapted, _ = sampling.sample(patched, *conds, steps=4)
    after, _ = sampling.sample(tiny_model, *conds, steps=4)
    assert not sampling.torch.equal(adapted, before) and sampling.torch.equal(after, before)
    with pytest.raises(SIAError, match="start_percent"):
        nodes.NODE_CLASS_MAPPINGS["PV_ApplySIALateSteps"]().apply(tiny_model, make_adapter(tiny_model), 1.0, 2.0)


def test_importing_the_pack_imports_nothing_heavy():
    code = (
        "import sys; sys.path.insert(0, %r); import host; host.bootstrap(with_pack=False); "
        "before = set(sys.modules); assert host.load_pack() is not False; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "heavy = sorted(new & {'insightface', 'onnxruntime', 'onnx2torch', 'onnx', 'cv2', 'diffusers', 'kornia'}); "
        "print('HEAVY', heavy); print('PACK', host.PACK_MODULE in sys.modules)" % os.path.dirname(__file__)
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "HEAVY []" in out.stdout and "PACK True" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    assert host.PACK_MODULE in sys.modules
