"""Bad input to the example workflows: a missing model file, a missing third-party pack, a missing
adapter or face model pack. Each stops at validation, before anything runs, with a message that
says what to download or install and where (the host's own words for core nodes, ours for ours;
tools.workflow_graph.preflight for scripts). An adapter trained for another base is in
test_workflows_run.py (it needs the checkpoint loaded)."""
import json

import pytest

from pv_tools import workflow_graph, workflow_models

import comfy_server as comfy_server_module
import host

pytestmark = pytest.mark.server


def errors_by_input(body):
    return {(nid, e.get("extra_info", {}).get("input_name")): e["details"]
            for nid, entry in body.get("node_errors", {}).items() for e in entry["errors"]}


def test_missing_checkpoint_is_named_with_its_folder(comfy_server):
    twin = workflow_graph.load("02_generate_with_identity")
    status, body = comfy_server.post_prompt(twin)
    assert status == 400
    (ckpt,) = workflow_graph.find(twin, "CheckpointLoaderSimple")
    assert workflow_models.CHECKPOINT.name in errors_by_input(body)[(ckpt, "ckpt_name")]   # the host's message
    hints = workflow_graph.preflight(twin, comfy_server.get("/object_info"))
    checkpoint = workflow_models.CHECKPOINT.name
    assert f"put {checkpoint} in ComfyUI/models/checkpoints (node {ckpt}, input ckpt_name)" in hints
    assert any(f"put {workflow_models.LCM_LORA.name} in ComfyUI/models/loras" in h for h in hints)


def test_missing_adapter_says_where_adapters_go_and_how_to_make_one(comfy_server):
    twin = workflow_graph.load("02_generate_with_identity")
    workflow_graph.set_input(twin, "PV_LoadSIAAdapter", "adapter_name", "nobody.safetensors")
    status, body = comfy_server.post_prompt(twin)
    assert status == 400
    (load,) = workflow_graph.find(twin, "PV_LoadSIAAdapter")
    message = errors_by_input(body)[(load, "adapter_name")]
    assert "'nobody.safetensors' is not in any models/sia folder" in message
    assert str(comfy_server.models / "sia") in message and "Train one or copy the file there" in message


def test_missing_face_model_pack_is_reported_at_validation_with_the_folder(comfy_server):
    twin = workflow_graph.load("01_train_identity")
    workflow_graph.set_input(twin, "PV_LoadFaceAnalysis", "model_pack", "buffalo_l")   # never installed here
    status, body = comfy_server.post_prompt(twin)
    assert status == 400
    (faces,) = workflow_graph.find(twin, "PV_LoadFaceAnalysis")
    message = errors_by_input(body)[(faces, "model_pack")]
    assert "the insightface model pack 'buffalo_l' was not found" in message
    assert f"Put the buffalo_l files in {comfy_server.models / 'insightface' / 'models' / 'buffalo_l'}" in message


@pytest.fixture(scope="module")
def bare_server(comfy_server):
    """The same host without stand-ins: third-party packs it lacks are really missing."""
    srv = comfy_server_module.ComfyServer(stand_ins=False)
    srv.start()
    yield srv
    srv.stop()


def test_missing_third_party_pack_stops_the_prompt_and_preflight_names_what_to_install(bare_server):
    """Holds on a host with or without the real packs: each pack the host lacks is named with its node
    types, no pack it has is named, and a prompt that needs a missing pack is refused before anything runs."""
    twin = workflow_graph.load("03_generate_with_pose")
    info = bare_server.get("/object_info")
    needed = {"ComfyUI-AnimateDiff-Evolved": "ADE_AnimateDiffLoaderGen1", "ComfyUI-VideoHelperSuite": "VHS_LoadVideo",
              "comfyui_controlnet_aux": "DWPreprocessor"}
    hints = workflow_graph.preflight(twin, info)
    for pack, node_type in needed.items():
        named = [h for h in hints if h.startswith(f"install {pack} ")]
        if node_type in info:
            assert not named, (pack, hints)
        else:
            assert len(named) == 1 and "into ComfyUI/custom_nodes" in named[0] and node_type in named[0], hints
    if host.is_modern_host():   # the modern test host carries the real AnimateDiff-Evolved, the 2024 one not
        assert "ADE_AnimateDiffLoaderGen1" in info
    else:
        assert "ADE_AnimateDiffLoaderGen1" not in info
    missing = workflow_graph.missing_node_types(twin, info)
    if not missing:   # a host with every pack: nothing is refused for a missing node (the checks above ran)
        return
    status, body = bare_server.post_prompt(twin)
    if host.is_modern_host():   # "Node 'Video Combine' not found. The custom node may not be installed."
        assert status == 400 and any(t in json.dumps(body["error"]) for t in missing), body
    else:                       # the 2024 host fails with a bare HTTP 500 (KeyError on the node type)
        assert status == 500, body
    # nothing ran
    assert bare_server.get("/history") == {} or all(
        h["prompt"][2] != twin for h in bare_server.get("/history").values())


def test_image_only_variant_needs_no_third_party_pack(bare_server):
    twin = workflow_graph.without_animatediff(workflow_graph.load("02_generate_with_identity"))
    assert workflow_graph.missing_packs(twin, bare_server.get("/object_info")) == {}
