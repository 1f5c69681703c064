"""Workflow 08 (two identities, two regions, one video) runs to completion over HTTP: SD1.5-size random weights,
through AnimateDiff-Evolved where the host has it (the image-only variant elsewhere), with two random adapters
in two halves, the two masked prompts and a face detail pass per person; then each region's face is scored
against both identities' photos (random weights make no faces: this proves the plumbing, see docs/two-people.md for
the check on real models)."""
import numpy as np
import pytest
import torch

from comfyui_personalvideo.regions.region_scores import score_regions
from comfyui_personalvideo.regions.simple import halves
from comfyui_personalvideo.sia import AdapterInfo, SIAAdapter, discover_targets, save_adapter
from pv_tools import workflow_graph

import tiny_models
from face_fixtures import tiny_onnx  # noqa: F401
from pv_tools.random_face_pack import photo_bgr
from test_workflows_run import prepared, run, saved_animation, served  # noqa: F401

pytestmark = [pytest.mark.server, pytest.mark.slow]

IDENTITIES = ("wf_left", "wf_right")


@pytest.fixture(scope="module")
def two_adapters(served):  # noqa: F811
    layout = tiny_models.tiny_sd15_model(full_size=True, device="meta")
    targets = discover_targets(layout.model.diffusion_model).targets
    for seed, name in enumerate(IDENTITIES, start=11):
        adapter = SIAAdapter.initialise(targets, rank=4, seed=seed,
                                        info=AdapterInfo(name=name, trigger=f"embedding:{name} person"))
        g = torch.Generator().manual_seed(seed)
        for path in adapter.paths:
            adapter.up[path] = torch.randn(adapter.up[path].shape, generator=g) * 0.05
            adapter.down[path] = adapter.down[path].detach()
        save_adapter(adapter, str(served.models / "sia" / f"{name}.safetensors"))
    return served


def test_two_identities_workflow_runs_end_to_end_and_each_region_is_scored(two_adapters):
    served = two_adapters
    wf = prepared(served, "08_two_identities", steps=2, cfg=1.0)
    for number, name in enumerate(IDENTITIES, start=1):
        side = "left" if number == 1 else "right"
        workflow_graph.set_input(wf, f"Identity {number} ({side}): Load SIA Adapter", "adapter_name",
                                 f"{name}.safetensors")
    for name, value in (("steps", 2), ("cfg", 1.0), ("working_size", 64)):
        workflow_graph.set_input(wf, "PV_FaceDetailPass", name, value)
    assert len(workflow_graph.find(wf, "PV_ApplySIALateSteps")) == 4
    assert len(workflow_graph.find(wf, "PV_FaceDetailPass")) == 2
    entry, error = run(served, wf)
    assert error is None, error
    frames = saved_animation(served, entry, wf)
    log = served.log(400000)
    for name in IDENTITIES:   # each adapter went on inside its mask (and once more, unmasked, for its face pass)
        assert f"[PersonalVideo] SIA {name}: " in log
    assert log.count("inside a mask of 1 frame(s) 64x64") >= 2
    assert log.count("[PersonalVideo] face detail: ") >= 2
    if served.has_animatediff:
        assert "AnimateDiff" in log

    video = torch.from_numpy(np.stack(frames) / 255.0).float()
    left, right = halves(64, 64, 0.5, 0.05)
    photos = [torch.from_numpy(photo_bgr(name)[..., ::-1].astype(np.float32) / 255.0)[None]
              for name in ("astronaut", "grace_hopper")]
    reports = score_regions(video, [left, right], photos, recogniser="dlib", detector="dlib_hog")
    assert [[r["identity"]["frame_count"] for r in row] for row in reports] == [[2, 2], [2, 2]]
