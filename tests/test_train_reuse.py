"""The trainer's if_exists choices, its similarity outputs and metadata, its random streams, and the token
file Load SIA Adapter restores: on the real host with tiny models."""
import math
import os

import pytest
import torch

from comfyui_personalvideo.sia import load_adapter
from comfyui_personalvideo.training import identity_files, random_streams
from comfyui_personalvideo.training.errors import TrainingError

from face_fixtures import tiny_onnx  # noqa: F401
from test_train_identity import face_analysis, parts, photo, run  # noqa: F401

pytestmark = pytest.mark.usefixtures("ample_free_memory")   # conftest.py says why

QUICK = dict(ti_steps=2, sia_iterations=2)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def first(parts, face_analysis, photo):  # noqa: F811
    def scorer(frames, refs):
        scorer.calls.append(tuple(frames.shape))
        return {"recogniser": "stand-in", "identity_match": 25.0, "face_similarity": 0.9}

    scorer.calls = []
    result = run(parts, face_analysis, photo, "reusable", sample_scorer=scorer, **QUICK)
    return result, scorer.calls


def test_outputs_and_metadata_hold_both_similarities(first):
    result, calls = first
    assert calls == [(2, 64, 64, 3)]                                        # the last sample, all its frames
    assert result["preview"].shape == (3, 64, 64, 3)                         # after the frame of iteration 0
    history = result["history"]
    finite = [v for v in history.similarity if math.isfinite(v)]
    assert result["final_similarity"] == pytest.approx(finite[-1]) and result["identity_score"] == 25.0
    training = load_adapter(result["paths"]["sia"]).info.training
    assert training["final_similarity"] == pytest.approx(finite[-1])
    assert training["identity_score"] == {"recogniser": "stand-in", "identity_match": 25.0, "face_similarity": 0.9}
    assert training["history"]["adapter_loss"] == [round(v, 6) for v in history.loss]
    record = training["record"]
    assert len(record["photos"]) == 1 and record["settings"]["seed"] == 5
    assert record["base_model"]["parameters"] > 0 and len(record["base_model"]["weights"]) == 32


def test_reuse_loads_the_same_identity_without_training(parts, face_analysis, photo, first):  # noqa: F811
    result, _ = first
    stamps = {k: (os.path.getmtime(p), _read(p)) for k, p in result["paths"].items()}
    seen = []
    again = run(parts, face_analysis, photo, "reusable", progress_hook=lambda *a: seen.append(a), **QUICK)
    assert again["reused"] and seen == []                      # not one training step
    assert {k: (os.path.getmtime(p), _read(p)) for k, p in result["paths"].items()} == stamps
    for p in result["adapter"].paths:
        assert torch.equal(again["adapter"].up[p], result["adapter"].up[p])
    assert again["trigger"] == result["trigger"]
    assert again["final_similarity"] == pytest.approx(result["final_similarity"]) and again["identity_score"] == 25.0
    assert again["curve"].ndim == 4 and again["preview"].ndim == 4


def test_reuse_says_what_differs(parts, face_analysis, photo, first):  # noqa: F811
    with pytest.raises(TrainingError, match=r"trained from other inputs: the settings seed \(5 stored, 6 now\).*"
                                            "if_exists to overwrite"):
        run(parts, face_analysis, photo, "reusable", **dict(QUICK, seed=6))
    with pytest.raises(TrainingError, match="the reference photos"):
        run(parts, face_analysis, photo.flip(2), "reusable", **QUICK)
    model, clip, vae = parts
    other = model.clone()
    with torch.inference_mode():
        key = next(k for k in model.model.state_dict() if k.endswith("attn1.to_q.weight"))
        other.add_patches({key: (torch.ones_like(model.model.state_dict()[key]),)}, 0.5)
    with pytest.raises(TrainingError, match="the MODEL"):
        run((other, clip, vae), face_analysis, photo, "reusable", **QUICK)


def test_reuse_restores_a_missing_token_file(parts, face_analysis, photo, first):  # noqa: F811
    result, _ = first
    token = result["paths"]["embedding"]
    kept = identity_files.read_token(token)
    os.unlink(token)
    again = run(parts, face_analysis, photo, "reusable", **QUICK)
    assert again["reused"] and torch.equal(identity_files.read_token(token), kept)


def test_a_scorer_that_fails_never_fails_the_training(parts, face_analysis, photo):  # noqa: F811
    def broken(frames, refs):
        raise RuntimeError("dlib exploded")

    result = run(parts, face_analysis, photo, "scored_badly", sample_scorer=broken, ti_steps=1, sia_iterations=1)
    assert math.isnan(result["identity_score"])
    assert load_adapter(result["paths"]["sia"]).info.training["identity_score"]["skipped"] == \
        "RuntimeError: dlib exploded"


def test_the_real_independent_score_of_a_faceless_sample_is_skipped_with_a_reason(parts, face_analysis, photo):  # noqa: F811
    """Tiny random models make no face: the dlib score (or its absence) is a reason, and the run succeeds."""
    from comfyui_personalvideo.evaluation.training_sample import score_training_sample

    result = run(parts, face_analysis, photo, "scored", sample_scorer=score_training_sample, ti_steps=1,
                 sia_iterations=1)
    score = load_adapter(result["paths"]["sia"]).info.training["identity_score"]
    assert score["face_similarity"] is None and score["skipped"] and math.isnan(result["identity_score"])


def test_unknown_if_exists_is_refused(parts, photo):  # noqa: F811
    with pytest.raises(TrainingError, match="if_exists must be one of reuse, overwrite, error"):
        run(parts, None, photo, "x", if_exists="keep")


def test_streams_per_purpose_are_independent():
    """Frame and prompt indices drawn first from one seed: tied for every seed with a shared generator, as
    often as chance says with streams per purpose."""
    same = sum(random_streams.stream(s, "frames").randrange(16) == random_streams.stream(s, "prompts").randrange(16)
               for s in range(400))
    assert 5 <= same <= 60        # chance: 25 of 400
    assert random_streams.stream_seed(3, "noise") == random_streams.stream_seed(3, "noise")
    assert random_streams.stream_seed(3, "noise") != random_streams.stream_seed(4, "noise")


def test_load_sia_adapter_writes_a_missing_token_and_renames_around_another(first):
    from comfyui_personalvideo.nodes.load_sia_adapter import LoadSIAAdapter
    from comfyui_personalvideo.training.token_names import token_digest

    result, _ = first
    token = result["paths"]["embedding"]
    kept = _read(token)
    os.unlink(token)
    adapter, trigger = LoadSIAAdapter().load("reusable.safetensors")
    assert trigger == result["trigger"] and os.path.exists(token)
    assert torch.equal(identity_files.read_token(token).reshape(-1), adapter.embedding.reshape(-1))
    LoadSIAAdapter().load("reusable.safetensors")              # the same token there: left alone
    identity_files.write_token(token, torch.randn_like(adapter.embedding))
    renamed = os.path.join(os.path.dirname(token), f"reusable-{token_digest(adapter.embedding)}.safetensors")
    try:
        adapter, trigger = LoadSIAAdapter().load("reusable.safetensors")
        assert trigger == result["trigger"].replace("embedding:reusable", f"embedding:{adapter.info.name}")
        assert adapter.info.name != "reusable" and os.path.exists(renamed)
        assert torch.equal(identity_files.read_token(renamed).reshape(-1), adapter.embedding.reshape(-1))
    finally:
        with open(token, "wb") as f:
            f.write(kept)
        if os.path.exists(renamed):
            os.unlink(renamed)


def _cancelled_at(parts, face_analysis, photo, name, stage, step, settings, run_with=None):  # noqa: F811
    """Run ``name`` (with ``run_with``, default this module's ``run``) and press Cancel after ``step`` of
    ``stage`` reported."""
    import comfy.model_management

    def cancel(at, i, loss, sim):
        if at == stage and i == step:
            comfy.model_management.interrupt_current_processing(True)

    with pytest.raises(comfy.model_management.InterruptProcessingException):
        (run_with or run)(parts, face_analysis, photo, name, progress_hook=cancel, **settings)


def test_a_cancelled_run_resumes_exactly_where_it_stopped(parts, face_analysis, photo):  # noqa: F811
    """Checkpoints every 2 steps; cancelled in the adapter stage after its checkpoint at 2 iterations; queued
    again it runs only what is left, and ends with the very weights and losses of a run never interrupted."""
    from comfyui_personalvideo.training import run_state

    settings = dict(ti_steps=3, sia_iterations=5, checkpoint_every=2)
    whole = run(parts, face_analysis, photo, "never_stopped", **settings)
    _cancelled_at(parts, face_analysis, photo, "stopped", "adapter", 2, settings)
    assert identity_files.existing("stopped") == [] and os.path.isfile(run_state.RunState("stopped", {}).path)
    ran = []
    resumed = run(parts, face_analysis, photo, "stopped", progress_hook=lambda *a: ran.append(a[:2]), **settings)
    assert resumed["resumed_from"] == ("adapter", 2) and ran == [("adapter", 2), ("adapter", 3), ("adapter", 4)]
    assert resumed["token_losses"] == whole["token_losses"] and resumed["history"].loss == whole["history"].loss
    assert torch.equal(resumed["vector"], whole["vector"])
    for p in whole["adapter"].paths:
        assert torch.equal(resumed["adapter"].up[p], whole["adapter"].up[p])
        assert torch.equal(resumed["adapter"].down[p], whole["adapter"].down[p])
    assert not os.path.exists(run_state.state_folder("stopped"))      # cleaned up once the identity is saved


def test_a_resumed_adapter_optimiser_gets_its_step_count_where_its_update_reads_it():
    """The fused AdamW (CPU, CUDA) reads its step count on the weights' device, the multi-tensor one (other
    devices: meta here) on the CPU; resumed from its saved state, the fused update goes on exactly."""
    from comfyui_personalvideo.training.run_state import optimizer_tensors, restore_optimizer
    from comfyui_personalvideo.training.sia_settings import SIATrainSettings, adapter_optimizer

    settings = SIATrainSettings()
    cpu = [torch.nn.Parameter(torch.ones(4, 2)), torch.nn.Parameter(torch.ones(2, 4))]
    fused = adapter_optimizer(cpu, settings)
    for p in cpu:
        p.grad = torch.full_like(p, 0.5)
    fused.step()
    saved = optimizer_tensors(fused, cpu, "sia.adamw")
    meta = [torch.nn.Parameter(torch.ones(4, 2, device="meta")), torch.nn.Parameter(torch.ones(2, 4, device="meta"))]
    other = adapter_optimizer(meta, settings)
    restore_optimizer(other, meta, saved, "sia.adamw")
    assert all(other.state[p]["step"].device.type == "cpu" and other.state[p]["exp_avg"].is_meta for p in meta)
    # a fused optimiser on another device (CUDA: none on this machine) reads its step count there
    other.defaults["fused"] = True
    restore_optimizer(other, meta, saved, "sia.adamw")
    assert all(other.state[p]["step"].is_meta for p in meta)
    # resumed on the CPU, the fused update goes on from the same state as the uninterrupted one
    again = [torch.nn.Parameter(p.detach().clone()) for p in cpu]
    resumed = adapter_optimizer(again, settings)
    restore_optimizer(resumed, again, saved, "sia.adamw")
    for opt, params in ((fused, cpu), (resumed, again)):
        for p in params:
            p.grad = torch.full_like(p, -0.25)
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(cpu, again))


def test_a_token_stage_checkpoint_resumes_the_token_and_other_inputs_start_afresh(parts, face_analysis, photo):  # noqa: F811
    settings = dict(ti_steps=4, sia_iterations=1, checkpoint_every=2)
    whole = run(parts, face_analysis, photo, "token_whole", **settings)
    _cancelled_at(parts, face_analysis, photo, "token_stopped", "token", 2, settings)
    ran = []
    other_seed = run(parts, face_analysis, photo, "token_stopped", progress_hook=lambda *a: ran.append(a[:2]),
                     **dict(settings, seed=9))
    assert other_seed["resumed_from"] is None and ("token", 0) in ran       # another run: not resumed
    _cancelled_at(parts, face_analysis, photo, "token_again", "token", 2, settings)
    resumed = run(parts, face_analysis, photo, "token_again", **settings)
    assert resumed["resumed_from"] == ("token", 2) and resumed["token_losses"] == whole["token_losses"]
    assert torch.equal(resumed["vector"], whole["vector"])


def test_checkpoint_every_must_not_be_negative(parts, photo):  # noqa: F811
    with pytest.raises(TrainingError, match="checkpoint_every must be 0"):
        run(parts, None, photo, "x", checkpoint_every=-1)


def test_training_cfg_uses_the_negative_prompt_above_1_only(parts, face_analysis, photo):  # noqa: F811
    quick = dict(ti_steps=1, sia_iterations=1)
    results = {(cfg, neg): run(parts, face_analysis, photo, f"cfg_{cfg}_{neg}", training_cfg=cfg,
                               negative_prompt=neg, **quick)["history"].loss[0]
               for cfg in (1.0, 1.5) for neg in ("blurry", "a red square")}
    assert results[(1.0, "blurry")] == results[(1.0, "a red square")]      # cfg 1: the negative is never used
    assert results[(1.5, "blurry")] != results[(1.5, "a red square")]
    assert results[(1.5, "blurry")] != results[(1.0, "blurry")]
    with pytest.raises(TrainingError, match="training_cfg must be between 1 and 30"):
        run(parts, face_analysis, photo, "x", training_cfg=0.5, **quick)


def test_the_model_fingerprint_is_the_same_loaded_and_patched_or_not(parts):  # noqa: F811
    """ComfyUI writes LoRA patches into a loaded MODEL's weights: the fingerprint reads the originals, so a
    second run after sampling with the same MODEL still finds the identity reusable."""
    import comfy.model_management

    from comfyui_personalvideo.training.base_model import fingerprint

    model = parts[0].clone()
    with torch.inference_mode():
        key = next(k for k in model.model.state_dict() if k.endswith("attn1.to_q.weight"))
        weight = model.model.state_dict()[key]
        model.add_patches({key: (torch.ones_like(weight),)}, 0.5)
        idle = fingerprint(model)
        comfy.model_management.load_models_gpu([model])
        try:
            assert not torch.equal(model.model.state_dict()[key], model.backup[key].weight
                                   if hasattr(model.backup[key], "weight") else model.backup[key])   # patched
            assert fingerprint(model) == idle
        finally:
            comfy.model_management.unload_all_models()
    assert fingerprint(parts[0]) != idle                       # the LoRA patch itself counts


def test_reuse_follows_the_lora_weights_and_the_noise_schedule(parts, face_analysis, photo):  # noqa: F811
    """Reuse hands back an identity only for the model it was trained on. Two style LoRAs of the same layout
    at the same strength differ in their weights alone; a model_sampling patch (ModelSamplingDiscrete, as
    AnimateDiff-Evolved's beta schedule is applied) changes the noise schedule of the training samples. Each
    is another model: the identity trained with the first LoRA is not handed back for it. The same LoRA
    loaded again is the same model: reused."""
    import comfy_extras.nodes_model_advanced as advanced
    import folder_paths
    import nodes

    import tiny_models

    model, clip, vae = parts
    loras = folder_paths.get_folder_paths("loras")[0]
    for seed in (1, 2):
        tiny_models.save_kohya_lora(os.path.join(loras, f"style_{seed}.safetensors"), model,
                                    lambda path: ".attn2." in path, seed=seed, std=0.05)

    def styled(seed):
        with torch.inference_mode():
            return nodes.LoraLoaderModelOnly().load_lora_model_only(model, f"style_{seed}.safetensors", 0.8)[0]

    first = run((styled(1), clip, vae), face_analysis, photo, "styled", **QUICK)
    assert not first["reused"]
    assert run((styled(1), clip, vae), face_analysis, photo, "styled", **QUICK)["reused"]
    with pytest.raises(TrainingError, match=r"trained from other inputs: the MODEL \(other LoRAs on it"):
        run((styled(2), clip, vae), face_analysis, photo, "styled", **QUICK)
    with torch.inference_mode():
        (lcm,) = advanced.ModelSamplingDiscrete().patch(styled(1), "lcm", False)
        (zsnr,) = advanced.ModelSamplingDiscrete().patch(styled(1), "eps", True)
    for other in (lcm, zsnr):
        with pytest.raises(TrainingError, match=r"trained from other inputs: the MODEL \(another noise schedule"):
            run((other, clip, vae), face_analysis, photo, "styled", **QUICK)
