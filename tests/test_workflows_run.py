"""Workflows 01 (train) and 02 (generate) run to completion over HTTP with small random models.

SD1.5-size random checkpoint, a random LoRA in place of the AnimateLCM LoRA, and (where the host
has AnimateDiff-Evolved) a random AnimateLCM-layout motion model; elsewhere the image-only variant
of the same workflows (tools.workflow_graph.without_animatediff). Face analysis: the random
antelopev2-layout pack of face_fixtures (its detector finds a face in any textured frame).
Frames, size, steps and iterations are reduced through tools.workflow_graph.configure.
"""
import os

import cv2
import numpy as np
import pytest
import torch

from comfyui_personalvideo.sia import AdapterInfo, SIAAdapter, discover_targets, load_adapter, save_adapter
from pv_tools import workflow_graph

import face_fixtures as ff
import full_models
import tiny_models
from face_fixtures import tiny_onnx  # noqa: F401

pytestmark = [pytest.mark.server, pytest.mark.slow]

CKPT, LORA, MOTION = "sd15_random.safetensors", "lcm_lora_random.safetensors", "AnimateLCM_random.safetensors"
PHOTO, IDENTITY = "person_run.png", "wf_run"
SMALL = dict(checkpoint=CKPT, lcm_lora=LORA, motion_model=MOTION, reference_image=PHOTO, frames=2, width=64,
             height=64, face_provider="CPU")


@pytest.fixture(scope="module")
def served(request, comfy_server, sd15_checkpoint, tiny_onnx):  # noqa: F811
    models = comfy_server.models
    for kind in ("checkpoints", "loras", "animatediff_models"):
        (models / kind).mkdir(parents=True, exist_ok=True)
    # the session's random models, linked into the server's folders (built once, shared with in-process tests)
    linked = {"checkpoints": (CKPT, sd15_checkpoint)}
    if comfy_server.has_animatediff:
        linked["animatediff_models"] = (MOTION, request.getfixturevalue("animatelcm_motion_model"))
    for kind, (name, source) in linked.items():
        if not (models / kind / name).exists():
            os.symlink(source, models / kind / name)
    with torch.inference_mode():
        full_models.save_random_lora(str(models / "loras" / LORA))
    ff.centre_face_pack(models / "insightface", recognizer=tiny_onnx)
    comfy_server.input.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(comfy_server.input / PHOTO), cv2.resize(ff.photo_bgr("astronaut"), (64, 64),
                                                            interpolation=cv2.INTER_AREA))
    return comfy_server


def prepared(server, name, **settings):
    wf = workflow_graph.configure(workflow_graph.load(name), **dict(SMALL, **settings))
    return wf if server.has_animatediff else workflow_graph.without_animatediff(wf)


def run(server, wf, timeout=600):
    status, body = server.post_prompt(wf)
    assert status == 200, body
    entry = server.wait(body["prompt_id"], timeout)
    errors = [m for m in entry["status"].get("messages", []) if m[0] == "execution_error"]
    return entry, (errors[0][1] if errors else None)


def saved_files(server, entry, node_id, key="images"):
    return [server.output / f.get("subfolder", "") / f["filename"]
            for f in workflow_graph.outputs_of(entry, node_id).get(key, []) if f.get("type") == "output"]


def saved_animation(server, entry, wf) -> list:
    """The frames of the workflow's animated WEBP (checked: 2 frames of 64x64), as float arrays."""
    from PIL import Image

    (save_node,) = workflow_graph.find(wf, "SaveAnimatedWEBP")
    (webp,) = saved_files(server, entry, save_node)
    with Image.open(webp) as im:
        assert im.format == "WEBP" and im.n_frames == 2 and im.size == (64, 64)
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB"), dtype=np.float32))
    return frames


@pytest.fixture(scope="module")
def trained(served):
    wf = prepared(served, "01_train_identity", identity=IDENTITY, ti_steps=1, ti_batch_size=1, sia_iterations=1,
                  training_steps=2)
    entry, error = run(served, wf)
    assert error is None, error
    return wf, entry


def test_training_workflow_writes_adapter_embedding_and_loss_curve(served, trained):
    wf, entry = trained
    assert entry["status"]["status_str"] == "success"
    # the first sia folder: the session server's extra_model_paths.yaml one (see conftest)
    (path,) = [p for p in (served.yaml_sia / f"{IDENTITY}.safetensors", served.models / "sia" / f"{IDENTITY}.safetensors")
               if p.exists()]
    adapter = load_adapter(str(path))
    assert adapter.info.trigger == f"embedding:{IDENTITY} person" and len(adapter.paths) == 48
    assert adapter.info.training["sia"]["frames"] == 2 and adapter.info.training["sia"]["iterations"] == 1
    assert (served.models / "embeddings" / f"{IDENTITY}.safetensors").is_file()
    (curve_node,) = workflow_graph.find(wf, "Loss curve")
    (curve,) = saved_files(served, entry, curve_node)
    image = cv2.imread(str(curve))
    assert image is not None and image.shape[0] > 100 and float(image.std()) > 1.0  # a drawn chart, not blank
    (frames_node,) = workflow_graph.find(wf, "PreviewImage")
    assert len(workflow_graph.outputs_of(entry, frames_node)["images"]) == 2   # the two training frames
    (train_node,) = workflow_graph.find(wf, "PV_TrainIdentity")
    assert workflow_graph.outputs_of(entry, train_node)["text"] == [f"embedding:{IDENTITY} person"]
    if served.has_animatediff:
        assert "ADE_AnimateDiffLoaderGen1" in workflow_graph.node_types(wf)


def test_generation_workflow_makes_an_animation_with_the_trained_identity(served, trained):
    wf = prepared(served, "02_generate_with_identity", identity=IDENTITY, steps=2, cfg=1.0)
    entry, error = run(served, wf)
    assert error is None, error
    frames = saved_animation(served, entry, wf)
    assert np.abs(frames[0] - frames[1]).mean() > 0  # two frames, not one image twice
    assert f"[PersonalVideo] SIA {IDENTITY}" in served.log(200000)


def test_adapter_for_another_base_stops_at_the_apply_node_with_a_clear_message(served):
    model = tiny_models.tiny_sd15_model(seed=0)
    adapter = SIAAdapter.initialise(discover_targets(model.model.diffusion_model).targets, rank=4, seed=1,
                                    info=AdapterInfo(name="tiny_base", trigger="embedding:tiny_base person"))
    save_adapter(adapter, str(served.models / "sia" / "tiny_base.safetensors"))
    wf = prepared(served, "02_generate_with_identity", steps=2, cfg=1.0)
    workflow_graph.set_input(wf, "PV_LoadSIAAdapter", "adapter_name", "tiny_base.safetensors")
    entry, error = run(served, wf)
    assert error is not None, "an adapter for another base must not run"
    assert error["node_id"] == workflow_graph.find(wf, "PV_ApplySIALateSteps")[0]
    message = error["exception_message"]
    assert "tiny_base.safetensors does not fit this MODEL" in message and "another base model" in message
    assert "Train PersonalVideo Identity" in message
    assert error["exception_type"].endswith("SIAError")
    (save_node,) = workflow_graph.find(wf, "SaveAnimatedWEBP")
    assert not saved_files(served, entry, save_node)


def test_face_detail_workflow_runs_the_noise_prior_and_the_face_pass(served, trained):
    wf = prepared(served, "07_generate_with_face_detail", identity=IDENTITY, steps=2, cfg=1.0)
    for name, value in (("steps", 2), ("cfg", 1.0), ("working_size", 64)):
        workflow_graph.set_input(wf, "PV_FaceDetailPass", name, value)
    entry, error = run(served, wf)
    assert error is None, error
    saved_animation(served, entry, wf)
    (track_node,) = workflow_graph.find(wf, "Face track")
    assert len(workflow_graph.outputs_of(entry, track_node)["images"]) == 2
    assert "[PersonalVideo] face detail: " in served.log(200000) and " of 2 frames re-denoised" in served.log(200000)
