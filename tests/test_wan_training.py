"""Stage 2 on core Wan (training/wan_trainer.py) with a tiny random Wan model, core's Wan 2.1 VAE (random
weights) and the centre-face stack: only the adapter changes, the gradient reaches only the adapter, the seed
decides the run, Cancel stops inside a step, and the saved file loads and applies. Skip on hosts without Wan."""
import pytest
import torch

import wan_models

wan_models.skip_without_wan()

import comfy.model_management  # noqa: E402
import comfy.sd  # noqa: E402
from comfyui_personalvideo.sia import apply_sia, load_adapter, save_adapter  # noqa: E402
from comfyui_personalvideo.training import prompts, wan_trainer  # noqa: E402
from comfyui_personalvideo.training.errors import TrainingError  # noqa: E402
from comfyui_personalvideo.training.face import analysis  # noqa: E402
from comfyui_personalvideo.training.face.identity_loss import IdentityLoss  # noqa: E402
from comfyui_personalvideo.training.face.references import embed_references  # noqa: E402
from pv_tools.random_wan_models import wan21_vae_state_dict  # noqa: E402

from face_fixtures import tiny_onnx  # noqa: E402,F401
from test_train_identity import assert_same, face_analysis, photo, snapshot  # noqa: E402,F401

TEMPLATES = ["{token} {class_word} smiling", "{token} {class_word} in a park"]


@pytest.fixture(scope="module")
def wan():
    with torch.inference_mode():
        return wan_models.with_shift(wan_models.tiny_wan_model(seed=0), 8.0)


@pytest.fixture(scope="module")
def wan_vae():
    with torch.inference_mode():
        return comfy.sd.VAE(sd=wan21_vae_state_dict(seed=0))


@pytest.fixture(scope="module")
def loss_fn(face_analysis, photo):  # noqa: F811
    stack = analysis.load_face_stack(face_analysis)
    enc = stack.encoder()
    with torch.inference_mode():
        refs = embed_references(stack.detector, enc, photo)
    return IdentityLoss(stack.detector, enc, refs.embeddings)


def encode(text):
    """A fixed random umT5-width conditioning per prompt text."""
    return wan_models.random_text_cond(10 + sum(map(ord, text)) % 1000)


def train(model, vae, loss_fn, adapter, check_interrupt=None, checkpoints=None, resume=None, **kw):
    settings = wan_trainer.WanSIATrainSettings(**dict(dict(iterations=2, frames=1, width=64, height=64, seed=11,
                                                           lr=1e-2, steps=3, gradient_checkpointing="off"), **kw))
    with torch.inference_mode():
        return wan_trainer.train_wan_sia(model, adapter, encode, wan_models.random_text_cond(2), vae, loss_fn,
                                         prompts.PromptSampler(TEMPLATES, 0), settings,
                                         check_interrupt=check_interrupt, checkpoints=checkpoints, resume=resume)


def tensors_of(adapter):
    return {f"{side}.{p}": t.detach().clone() for side, table in (("down", adapter.down), ("up", adapter.up))
            for p, t in table.items()}


def instance_forwards(wan):
    """The modules whose forward is not their class's own (ComfyUI puts an object patch's original back as the
    bound class method: that one is the class's own)."""
    out = {}
    for name, m in wan.model.named_modules():
        f = m.__dict__.get("forward")
        if f is not None and not (getattr(f, "__func__", None) is type(m).forward and f.__self__ is m):
            out[name] = f
    return out


def generate(wan, wan_vae):
    with torch.inference_mode():
        latent = wan_models.sample(wan, steps=3, cfg=1.5, seed=4, latent=wan_models.empty_wan_latent(5, 32, 32)["samples"])
        return latent, wan_vae.decode(latent)


def test_a_few_iterations_change_the_adapter_and_nothing_of_the_users_model_or_vae(wan, wan_vae, loss_fn):
    """Weights and buffers are compared with the models unloaded (ComfyUI keeps the last sampled clone's object
    patches, the shift's model_sampling among them, in place while it stays loaded, for any node's clone);
    the user's MODEL then generates the same video, bit for bit."""
    adapter = wan_trainer.new_wan_adapter(wan, seed=0)
    start = tensors_of(adapter)
    before_out = generate(wan, wan_vae)
    comfy.model_management.unload_all_models()
    before = snapshot(wan.model, wan_vae.first_stage_model)
    options = repr(wan.model_options)
    forwards = instance_forwards(wan)
    object_patches, patches = dict(wan.object_patches), {k: list(v) for k, v in wan.patches.items()}
    history = train(wan, wan_vae, loss_fn, adapter, iterations=2)
    comfy.model_management.unload_all_models()
    assert len(history.loss) == 2 and all(loss == loss for loss in history.loss), history.loss   # faces found
    after = tensors_of(adapter)
    assert any(not torch.equal(start[k], after[k]) for k in start if k.startswith("up."))
    assert any(float(after[k].abs().max()) > 0 for k in after if k.startswith("up."))
    assert_same(before, snapshot(wan.model, wan_vae.first_stage_model))
    assert repr(wan.model_options) == options
    assert dict(wan.object_patches) == object_patches and {k: list(v) for k, v in wan.patches.items()} == patches
    assert instance_forwards(wan) == forwards, instance_forwards(wan)   # no object patch left on a module
    after_out = generate(wan, wan_vae)
    assert torch.equal(before_out[0], after_out[0]) and torch.equal(before_out[1], after_out[1])


def test_the_loss_gradient_reaches_the_adapter_and_only_the_adapter(wan, wan_vae, loss_fn):
    """One iteration at lr 0 (the optimiser moves nothing): every adapter tensor is given a gradient, the up
    weights' non-zero, and no model or VAE tensor requires or holds a gradient."""
    adapter = wan_trainer.new_wan_adapter(wan, seed=0)
    start = tensors_of(adapter)
    train(wan, wan_vae, loss_fn, adapter, iterations=1, lr=0.0, weight_decay=0.0)
    grads = {p: t.grad for side in (adapter.down, adapter.up) for p, t in side.items()}
    assert all(g is not None for g in grads.values())
    assert all(float(adapter.up[p].grad.abs().sum()) > 0 for p in adapter.paths)
    assert all(torch.equal(start[k], v) for k, v in tensors_of(adapter).items())   # lr 0: unchanged
    for module in (wan.model, wan_vae.first_stage_model):
        assert not any(p.grad is not None for p in module.parameters())
        assert not any(p.requires_grad and not p.is_inference() for p in module.parameters())


def test_only_the_last_step_is_adapted_and_it_runs_with_gradient(wan):
    """The trainer's sampler on the adapted clone: the first steps are the plain model's bit for bit, the last
    differs and carries a gradient to the adapter."""
    from comfyui_personalvideo.training import few_step_sampler

    adapter = wan_models.random_wan_adapter(wan)
    for t in adapter.parameters():
        t.requires_grad_(True)
    backbone = wan_trainer.WanBackbone(wan)
    settings = wan_trainer.WanSIATrainSettings(frames=5, width=64, height=64, steps=3)
    outputs = []
    for m in (wan, apply_sia(wan, adapter, 1.0, start_percent=1.0)[0]):
        seen = {}

        def last(den, seen=seen):
            seen["grad"] = den.requires_grad
            if den.requires_grad:
                den.float().sum().backward()

        sampler = few_step_sampler.FewStepTrainingSampler(last, torch.Generator().manual_seed(1),
                                                          step=backbone.step)
        with torch.inference_mode(False):
            noise = torch.randn(backbone.latent_shape(settings), generator=torch.Generator().manual_seed(2))
        with torch.inference_mode():
            few_step_sampler.run_few_steps(m, sampler, backbone.schedule(m, settings), encode("a"),
                                           wan_models.random_text_cond(2), noise, 0)
        outputs.append((sampler.step_outputs, seen["grad"]))
    (plain, _), (adapted, with_grad) = outputs
    assert len(plain) == len(adapted) == 3
    assert all(torch.equal(a, b) for a, b in zip(plain[:2], adapted[:2]))
    assert not torch.equal(plain[2], adapted[2]) and with_grad
    assert all(float(adapter.up[p].grad.abs().sum()) > 0 for p in adapter.paths)


def test_the_first_latent_frame_alone_decodes_to_the_full_decodes_first_frame(wan, wan_vae):
    """The decode choice: Wan's VAE is causal, so one latent frame gives exactly the first video frame."""
    g = torch.Generator().manual_seed(3)
    with torch.inference_mode():
        z = torch.randn((1, 16, 2, 8, 8), generator=g)
        backbone = wan_trainer.WanBackbone(wan)
        alone = backbone.decode(wan_vae, wan.model, z, 0)
        full = wan_vae.process_output(wan_vae.first_stage_model.decode(
            wan.model.process_latent_out(z).to(wan_vae.vae_dtype)).float())
    assert full.shape[2] == 5 and alone.shape == (1, 3, 64, 64)
    assert torch.allclose(alone, full[:, :, 0], atol=1e-5), float((alone - full[:, :, 0]).abs().max())


def test_same_seed_same_adapter_bit_for_bit_other_seed_another(wan, wan_vae, loss_fn):
    runs = []
    for seed in (11, 11, 12):
        adapter = wan_trainer.new_wan_adapter(wan, seed=0)
        history = train(wan, wan_vae, loss_fn, adapter, iterations=2, seed=seed)
        runs.append((history.loss, tensors_of(adapter)))
    (loss_a, a), (loss_b, b), (loss_c, c) = runs
    assert loss_a == loss_b and all(torch.equal(a[k], b[k]) for k in a)
    assert loss_a != loss_c and any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("where", ["block", "decoder"])
def test_cancel_stops_inside_the_current_step(wan, wan_vae, loss_fn, where):
    """Cancel pressed as the second Wan block starts (in the first step's model call), or as the VAE decoder's
    middle starts (in the last step): the run stops there, no optimiser step is made, no hook is left."""
    dm = wan.model.diffusion_model
    decoder = wan_vae.first_stage_model.decoder
    armed = {"on": False, "after": 0}
    target = dm.blocks[1] if where == "block" else decoder.middle[0]
    after = dm.blocks[1] if where == "block" else decoder.upsamples[0]
    handles = [target.register_forward_pre_hook(lambda m, a: armed.update(on=True), prepend=True),
               after.register_forward_hook(lambda m, a, o: armed.update(after=armed["after"] + 1))]
    calls = {"model": 0}
    handles.append(dm.register_forward_pre_hook(lambda m, a: calls.update(model=calls["model"] + 1)))

    def check():
        if armed["on"]:
            raise comfy.model_management.InterruptProcessingException()

    adapter = wan_trainer.new_wan_adapter(wan, seed=0)
    start = tensors_of(adapter)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            train(wan, wan_vae, loss_fn, adapter, iterations=2, check_interrupt=check)
    finally:
        for h in handles:
            h.remove()
    assert armed["after"] == 0   # the layer where Cancel was seen never ran
    assert calls["model"] == (1 if where == "block" else 3)   # the first step, or all 3 steps before the decode
    assert all(torch.equal(start[k], v) for k, v in tensors_of(adapter).items())
    layers = wan_trainer.WanBackbone(wan).cancel_layers(dm, wan_vae.first_stage_model)
    assert len(layers) > len(dm.blocks) and all(not layer._forward_pre_hooks for layer in layers)


def test_the_saved_file_loads_with_the_wan_loader_and_applies(tmp_path, wan, wan_vae, loss_fn):
    adapter = wan_trainer.new_wan_adapter(wan, seed=0, name="wan_trained")
    train(wan, wan_vae, loss_fn, adapter, iterations=1)
    path = save_adapter(adapter, str(tmp_path / "wan_trained.safetensors"))
    loaded = load_adapter(path)
    assert loaded.info.base == "wan" and loaded.paths == adapter.paths
    assert all(torch.equal(loaded.down[p], adapter.down[p].detach()) and torch.equal(loaded.up[p], adapter.up[p].detach())
               for p in adapter.paths)
    with torch.inference_mode():
        plain = wan_models.sample(wan, steps=4, cfg=1.0, seed=5)
        patched = apply_sia(wan, loaded, 1.0, start_percent=0.75)[0]
        adapted = wan_models.sample(patched, steps=4, cfg=1.0, seed=5)
        closed = wan_models.sample(apply_sia(wan, loaded, 0.0)[0], steps=4, cfg=1.0, seed=5)
    assert not torch.equal(plain, adapted) and torch.equal(plain, closed)


def test_settings_refuse_what_wan_cannot_make(wan, wan_vae, loss_fn):
    for bad, match in ((dict(frames=4), "4k \\+ 1"), (dict(width=72), "multiple of 16")):
        with pytest.raises(TrainingError, match=match):
            train(wan, wan_vae, loss_fn, wan_trainer.new_wan_adapter(wan), **bad)


def test_an_sd15_model_is_refused(tiny_model, wan_vae, loss_fn):
    with pytest.raises(TrainingError, match="needs a core Wan MODEL"):
        train(tiny_model, wan_vae, loss_fn, wan_trainer.new_wan_adapter(wan_models.tiny_wan_model()))


def test_gradient_checkpointing_of_the_wan_blocks_gives_the_same_training_step(wan, wan_vae, loss_fn):
    """With checkpointing on, the Wan blocks run checkpointed in the gradient step (and only there), and so do
    the VAE decoder's middle and up-sampling layers in the decode of the trained frame (the causal feature cache
    they read and write is given to each recomputation as the forward found it); one iteration moves the adapter
    as without it."""
    seen, decoder_seen = [], []
    decoder = wan_vae.first_stage_model.decoder
    layers = [decoder.middle[0], decoder.upsamples[-1]]

    def record(into):   # each call: (gradient on, running checkpointed)
        return lambda m, a: into.append((torch.is_grad_enabled(), getattr(m.forward, "_pv_checkpointing", False)))

    handles = [wan.model.diffusion_model.blocks[0].register_forward_pre_hook(record(seen))]
    handles += [layer.register_forward_pre_hook(record(decoder_seen)) for layer in layers]
    trained = {}
    try:
        for setting in ("on", "off"):
            seen.clear()
            decoder_seen.clear()
            adapter = wan_trainer.new_wan_adapter(wan, seed=0)
            train(wan, wan_vae, loss_fn, adapter, iterations=1, gradient_checkpointing=setting)
            trained[setting] = (tensors_of(adapter), list(seen), list(decoder_seen))
    finally:
        for handle in handles:
            handle.remove()
    on, off = trained["on"], trained["off"]
    assert on[1] == [(False, False), (False, False), (True, True)]   # 3 steps: the last one checkpointed
    assert off[1] == [(False, False), (False, False), (True, False)]
    # the decode of the trained frame, then each layer's recomputation in backward (its hooks run again)
    assert (True, True) in on[2] and (True, False) not in on[2], on[2]
    assert (True, False) in off[2] and (True, True) not in off[2], off[2]
    assert not any(getattr(m.forward, "_pv_checkpointing", False)
                   for m in list(wan.model.diffusion_model.blocks) + layers)
    assert any(float(v.abs().max()) > 0 for k, v in on[0].items() if k.startswith("up."))
    for k in on[0]:
        assert torch.allclose(on[0][k], off[0][k], rtol=1e-4, atol=1e-7), k


def test_a_resumed_run_ends_where_the_uninterrupted_run_ends(wan, wan_vae, loss_fn):
    """Checkpoints after every iteration; training again from the one after iteration 2 of 3 gives the
    uninterrupted run's adapter and losses bit for bit (the streams' draws are replayed)."""
    from comfyui_personalvideo.training.run_state import RunState, StageCheckpoints

    run = RunState("wan_resume_test", {"wan": 1}, every=1)
    run.clear()
    try:
        straight = wan_trainer.new_wan_adapter(wan, seed=0)
        history = train(wan, wan_vae, loss_fn, straight, iterations=3, checkpoints=StageCheckpoints(run, "adapter"))
        stage, done, tensors, extra = run.load()
        assert (stage, done) == ("adapter", 2)
        resumed = wan_trainer.new_wan_adapter(wan, seed=0)
        again = train(wan, wan_vae, loss_fn, resumed, iterations=3, resume=(done, tensors, extra))
    finally:
        run.clear()
    assert again.loss == history.loss and len(history.loss) == 3
    a, b = tensors_of(straight), tensors_of(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
