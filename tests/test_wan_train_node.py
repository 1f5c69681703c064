"""Train PersonalVideo Identity (Wan) end to end on the real host: a tiny random Wan model, the umT5 test double
(tests/umt5_double), core's Wan 2.1 VAE with random weights and the centre-face stack. Only the adapter trains
and is saved; the MODEL, CLIP and VAE are unchanged; a distillation LoRA makes the training samples and stays out
of the saved file and out of the user's MODEL; bad inputs stop with a message naming the input. Skip on hosts
without core Wan."""
import os

import pytest
import torch

import wan_models

wan_models.skip_without_wan()

import comfy.model_management  # noqa: E402
import comfy.sd  # noqa: E402
import folder_paths  # noqa: E402
from comfyui_personalvideo.nodes.train_identity import TrainPersonalVideoIdentity  # noqa: E402
from comfyui_personalvideo.nodes.train_wan_identity import TrainPersonalVideoIdentityWan  # noqa: E402
from comfyui_personalvideo.sia import load_adapter  # noqa: E402
from comfyui_personalvideo.training import wan_identity_training  # noqa: E402
from comfyui_personalvideo.training.errors import TrainingError  # noqa: E402
from pv_tools.random_wan_models import save_wan_style_lora, wan21_vae_state_dict  # noqa: E402

import tiny_models  # noqa: E402
from face_fixtures import tiny_onnx  # noqa: E402,F401
from test_train_identity import assert_same, face_analysis, leftovers, photo, snapshot  # noqa: E402,F401
import umt5_double  # noqa: E402
from umt5_double.build import save_tiny_umt5  # noqa: E402

LORA = "wan_distill_random.safetensors"
PROMPTS = "{token} {class_word} smiling\n{token} {class_word} in a park"
SMALL = dict(class_word="person", prompts=PROMPTS, ti_steps=0, ti_learning_rate=1e-3, ti_batch_size=1,
             sia_iterations=2, sia_learning_rate=1e-2, sia_rank=4, reg_lambda=1e-2, frames=1, width=64, height=64,
             sampling_lora="none", sampling_lora_strength=1.0, sampling_steps=2, training_cfg=1.0, seed=3,
             if_exists="overwrite", checkpoint_every=0, negative_prompt="blurry", resume=False,
             gradient_checkpointing="off")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("umt5") / "umt5_tiny.safetensors")
    save_tiny_umt5(path)
    umt5_double.install()   # the test double's loader, as the test server has it (tests/umt5_double)
    with torch.inference_mode():
        model = wan_models.with_shift(wan_models.tiny_wan_model(seed=0), 8.0)
        clip = comfy.sd.load_clip(ckpt_paths=[path], clip_type=comfy.sd.CLIPType.WAN)
        vae = comfy.sd.VAE(sd=wan21_vae_state_dict(seed=0))
    return model, clip, vae


@pytest.fixture(scope="module")
def lora_file():
    path = os.path.join(folder_paths.get_folder_paths("loras")[0], LORA)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_wan_style_lora(path, "tiny", seed=7, std=0.5)
    yield path
    os.remove(path)


def train(parts, face_analysis, photo, name, **overrides):  # noqa: F811
    model, clip, vae = parts
    inputs = dict(SMALL, model=model, clip=clip, vae=vae, reference_images=photo, face_analysis=face_analysis,
                  identity_name=name)
    inputs.update(overrides)
    with torch.inference_mode():   # as ComfyUI runs every node; INPUT_IS_LIST: every input comes as a list
        out = TrainPersonalVideoIdentityWan().train(**{k: [v] for k, v in inputs.items()})
    return out["result"], out["ui"]


def user_state(parts):
    model, clip, vae = parts
    comfy.model_management.unload_all_models()
    return (snapshot(model.model, clip.cond_stage_model, vae.first_stage_model), repr(model.model_options),
            {k: list(v) for k, v in model.patches.items()}, dict(model.object_patches))


def ffn_weights_seen(model):
    """Records the weight blocks[0].ffn[0] computes with, at every call (the distillation LoRA patches it)."""
    seen = []
    layer = model.model.diffusion_model.blocks[0].ffn[0]
    handle = layer.register_forward_pre_hook(lambda m, a: seen.append(m.weight.detach().float().clone()))
    return seen, handle


@pytest.fixture(scope="module")
def plain_run(parts, face_analysis, photo):  # noqa: F811
    model = parts[0]
    before = user_state(parts)
    seen, handle = ffn_weights_seen(model)
    try:
        result, ui = train(parts, face_analysis, photo, "wan_plain")
    finally:
        handle.remove()
    return result, ui, before, user_state(parts), seen


def test_the_node_trains_and_saves_the_adapter_only(plain_run):
    (adapter, trigger, curve, preview, similarity, score), ui, _, _, _ = plain_run
    assert adapter.info.base == "wan" and adapter.embedding is None
    assert trigger == "person" and ui["text"] == ["person"]   # no token stage: the class word names the person
    assert any(float(u.abs().max()) > 0 for u in adapter.up.values())   # trained away from the no-op start
    (path,) = [p for p in (os.path.join(d, "wan_plain.safetensors") for d in folder_paths.get_folder_paths("sia"))
               if os.path.exists(p)]
    assert not [p for d in folder_paths.get_folder_paths("embeddings") if os.path.isdir(d)
                for p in os.listdir(d) if p.startswith("wan_plain")]
    loaded = load_adapter(path)
    assert set(loaded.paths) == set(adapter.paths)
    assert all(p.endswith(("self_attn.q", "self_attn.k", "self_attn.v")) for p in loaded.paths)
    for p in adapter.paths:
        assert torch.equal(loaded.up[p], adapter.up[p]) and torch.equal(loaded.down[p], adapter.down[p])
    training = loaded.info.training
    assert training["sia"]["frames"] == 1 and training["sia"]["iterations"] == 2
    assert training["sampling_lora"] == "none" and training["record"]["settings"]["sampling_lora"] == "none"
    assert curve.ndim == 4 and preview.shape[-3:] == (64, 64, 3)
    assert similarity == similarity   # a face was found (the centre-face detector): a number, not NaN
    assert not leftovers()


def test_the_users_model_clip_and_vae_are_unchanged_and_hold_no_gradient(parts, plain_run):
    _, _, before, after, _ = plain_run
    assert_same(before[0], after[0])
    assert before[1:] == after[1:]
    model, clip, vae = parts
    for module in (model.model, clip.cond_stage_model, vae.first_stage_model):
        assert not any(p.grad is not None for p in module.parameters())
        assert not any(p.requires_grad and not p.is_inference() for p in module.parameters())


def test_without_a_lora_the_samples_use_the_plain_weights(parts, plain_run):
    seen = plain_run[4]
    base = parts[0].model.diffusion_model.blocks[0].ffn[0].weight.detach().float()
    assert seen and all(torch.equal(w, base) for w in seen)


@pytest.fixture(scope="module")
def lora_run(parts, face_analysis, photo, lora_file, plain_run):  # noqa: F811
    model = parts[0]
    before = user_state(parts)
    seen, handle = ffn_weights_seen(model)
    try:
        result, _ = train(parts, face_analysis, photo, "wan_lora", sampling_lora=LORA)
    finally:
        handle.remove()
    return result, before, user_state(parts), seen


def test_the_distillation_lora_makes_the_samples_but_is_not_saved_nor_left_on_the_model(parts, plain_run, lora_run):
    (adapter, *_), before, after, seen = lora_run
    base = parts[0].model.diffusion_model.blocks[0].ffn[0].weight.detach().float()
    assert seen and all(not torch.equal(w, base) for w in seen)   # every sampling call: the LoRA's weights
    # values compared (core's own LoRA patching on load puts a new Parameter object back when it unpatches, for
    # any LoRA clone a KSampler runs: that is core's, not ours)
    for b, a in zip(before[0], after[0]):
        assert b.keys() == a.keys() and all(torch.equal(b[k][1], a[k][1]) for k in b)
    assert before[1:] == after[1:]                                # the user's MODEL: no patch added
    plain = plain_run[0][0]
    assert any(not torch.equal(adapter.up[p], plain.up[p]) for p in adapter.paths)   # other samples, other adapter
    loaded = load_adapter(adapter.source)
    assert set(loaded.paths) == set(plain.paths)   # q/k/v of self-attention only: none of the LoRA's ffn layers
    assert LORA in loaded.info.training["sampling_lora"]
    assert loaded.info.training["record"]["settings"]["sampling_lora"].startswith(LORA)


def test_auto_sampling_steps_and_cfg_follow_the_lora():
    assert wan_identity_training.sampling_choice(0, 0.0, has_lora=True) == (4, 1.0)
    assert wan_identity_training.sampling_choice(0, 0.0, has_lora=False) == (8, 5.0)
    assert wan_identity_training.sampling_choice(6, 2.5, has_lora=True) == (6, 2.5)


def test_same_inputs_are_reused_without_training(parts, face_analysis, photo, plain_run):  # noqa: F811
    (adapter, *_), _, _, _, _ = plain_run
    (again, trigger, *_), ui = train(parts, face_analysis, photo, "wan_plain", if_exists="reuse")
    assert ui["text"] == ["person (reused)"] and trigger == "person"
    assert all(torch.equal(again.up[p], adapter.up[p]) for p in adapter.paths)
    with pytest.raises(TrainingError, match="other inputs: .*sia_iterations"):
        train(parts, face_analysis, photo, "wan_plain", if_exists="reuse", sia_iterations=3)


@pytest.mark.parametrize("overrides, message", [
    (dict(frames=4), "frames must be 4k \\+ 1"),
    (dict(width=72), "width must be a multiple of 16"),
    (dict(height=100), "height must be a multiple of 8"),
    (dict(ti_steps=5), "token stage on Wan .* not available in this build"),
    (dict(class_word="{token}"), "class_word must be a plain word"),
    (dict(identity_name="  "), "identity_name"),
])
def test_bad_inputs_stop_before_training_with_a_message_naming_them(parts, face_analysis, photo, overrides,  # noqa: F811
                                                                   message):
    with pytest.raises(TrainingError, match=message):
        train(parts, face_analysis, photo, "wan_bad", **overrides)
    assert not [p for d in folder_paths.get_folder_paths("sia") if os.path.isdir(d) for p in os.listdir(d)
                if p.startswith("wan_bad")]


def test_an_sd15_clip_with_a_wan_model_is_refused(parts, face_analysis, photo):  # noqa: F811
    with torch.inference_mode():
        sd_clip = tiny_models.tiny_clip()
    with pytest.raises(TrainingError, match="the CLIP gives 32-wide text features but this Wan MODEL expects 4096"):
        train((parts[0], sd_clip, parts[2]), face_analysis, photo, "wan_bad")


def test_the_wrong_family_is_sent_to_the_other_train_node(parts, face_analysis, photo):  # noqa: F811
    with torch.inference_mode():
        sd_model = tiny_models.tiny_sd15_model(seed=0)
    with pytest.raises(TrainingError, match="not a Wan model .*'Train PersonalVideo Identity'"):
        train((sd_model, parts[1], parts[2]), face_analysis, photo, "wan_bad")
    model, clip, vae = parts
    inputs = dict(model=model, clip=clip, vae=vae, reference_images=photo, face_analysis=face_analysis,
                  identity_name="wan_bad", class_word="person", prompts=PROMPTS, ti_steps=0, ti_learning_rate=1e-3,
                  ti_batch_size=1, sia_iterations=1, sia_learning_rate=1e-2, sia_rank=4, reg_lambda=1e-2, frames=1,
                  width=64, height=64, sampling_steps=2, seed=0, if_exists="overwrite", checkpoint_every=0,
                  training_cfg=1.0, negative_prompt="", resume=False)
    wan_node = "is a Wan model .*'Train PersonalVideo Identity \\(Wan\\)'"
    with torch.inference_mode(), pytest.raises(TrainingError, match=wan_node):
        TrainPersonalVideoIdentity().train(**{k: [v] for k, v in inputs.items()})


def test_a_lora_for_another_model_or_a_missing_one_is_refused(parts, face_analysis, photo, tmp_path):  # noqa: F811
    from pv_tools.random_models import save_random_lora

    other = os.path.join(folder_paths.get_folder_paths("loras")[0], "sd15_lora_random.safetensors")
    with torch.inference_mode():
        save_random_lora(other)
    try:
        with pytest.raises(TrainingError, match="sampling_lora sd15_lora_random.safetensors fits no layer"):
            train(parts, face_analysis, photo, "wan_bad", sampling_lora="sd15_lora_random.safetensors")
    finally:
        os.remove(other)
    with pytest.raises(TrainingError, match="sampling_lora 'gone.safetensors' is not in models/loras"):
        train(parts, face_analysis, photo, "wan_bad", sampling_lora="gone.safetensors")


def test_the_node_is_registered_with_tooltips_and_wan_defaults():
    from comfyui_personalvideo.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    assert NODE_CLASS_MAPPINGS["PV_TrainIdentityWan"] is TrainPersonalVideoIdentityWan
    assert NODE_DISPLAY_NAME_MAPPINGS["PV_TrainIdentityWan"] == "Train PersonalVideo Identity (Wan)"
    spec = TrainPersonalVideoIdentityWan.INPUT_TYPES()
    inputs = {**spec["required"], **spec["optional"]}
    assert all(opts.get("tooltip") for _, opts in inputs.values())
    assert inputs["frames"][1]["default"] == 17 and inputs["width"][1]["default"] == 480
    assert inputs["sampling_lora"][0][0] == "none" and inputs["sampling_lora"][1]["default"] == "none"
    assert "low-noise expert" in inputs["model"][1]["tooltip"].lower()
