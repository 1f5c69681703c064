"""Trainer pieces on the real host with tiny models: loss descent, last-step-only adapter, determinism,
no-face stop, prompts data."""

import pytest
import torch

import comfy.model_management
from comfyui_personalvideo.sia import AdapterInfo, SIAAdapter, apply_sia, discover_targets
from comfyui_personalvideo.training import few_step_sampler, prompts, sia_trainer
from comfyui_personalvideo.training import textual_inversion as ti
from comfyui_personalvideo.training.errors import TrainingError
from comfyui_personalvideo.training.face.identity_loss import IdentityLoss
from comfyui_personalvideo.training.face.references import embed_references
from comfyui_personalvideo.training.face import analysis

import tiny_models
from chance_level import random_move_drops
from face_fixtures import tiny_onnx  # noqa: F401
from test_train_identity import assert_same, face_analysis, parts, photo, snapshot  # noqa: F401


def test_prompts_are_ours_and_well_formed():
    ps = prompts.default_prompts()
    assert len(ps) == 50 and len(set(ps)) == 50
    assert all("{token}" in p and "{class_word}" in p for p in ps)
    assert prompts.parse_prompts("# c\n\nwalking\n{class_word} running") == [
        "{token} {class_word} walking", "{token} {class_word} running"]
    with pytest.raises(TrainingError, match="prompts input is empty"):
        prompts.parse_prompts(" \n# only a comment")
    a, b = prompts.PromptSampler(ps, 1), prompts.PromptSampler(ps, 1)
    assert [a.draw() for _ in range(10)] == [b.draw() for _ in range(10)]


@pytest.fixture(scope="module")
def setup(parts, face_analysis, photo):  # noqa: F811
    model, clip, vae = parts
    stack = analysis.load_face_stack(face_analysis)
    enc = stack.encoder()
    with torch.inference_mode():
        refs = embed_references(stack.detector, enc, photo)
    tp = ti.TokenPrompts(clip, "man")
    vector = ti.class_word_vector(clip, "man")
    loss_fn = IdentityLoss(stack.detector, enc, refs.embeddings)
    return model, clip, vae, tp, vector, loss_fn


def new_adapter(model, seed=0):
    found = discover_targets(model.model.diffusion_model)
    with torch.inference_mode(False):
        return SIAAdapter.initialise(found.targets, rank=4, seed=seed, info=AdapterInfo(name="t"))


def run_sia(setup, adapter, loss_fn=None, checkpoints=None, **kw):
    model, clip, vae, tp, vector, default_loss = setup
    settings = sia_trainer.SIATrainSettings(**dict(dict(iterations=1, frames=2, width=64, height=64, seed=11), **kw))
    with torch.inference_mode():
        return sia_trainer.train_sia(model, adapter, lambda t: tp.conditioning(t, vector), tp.conditioning("", vector),
                                     vae, loss_fn or default_loss,
                                     prompts.PromptSampler(["{token} {class_word} smiling"], 0), settings,
                                     checkpoints=checkpoints)


def _loss_of(setup, adapter):
    """The identity loss of the same generated sample (seed 11) with ``adapter``, not trained further."""
    return run_sia(setup, adapter, lr=0.0, weight_decay=0.0).loss[0]


def _moved(setup, start, trained, direction_seed=None):
    """An adapter at ``start`` moved by the training's move (``trained - start``), or, with a seed, by a move of
    the same length per tensor in a random direction."""
    moved = new_adapter(setup[0])
    g = None if direction_seed is None else torch.Generator().manual_seed(direction_seed)
    with torch.no_grad():
        for p in moved.paths:
            for side in (moved.down, moved.up):
                origin = (start.down if side is moved.down else start.up)[p]
                step = (trained.down if side is moved.down else trained.up)[p].detach() - origin
                if g is not None:
                    direction = torch.randn(step.shape, generator=g)
                    step = direction * (step.norm() / direction.norm().clamp_min(1e-12))
                side[p].copy_(origin + step)
    return moved


def test_identity_loss_goes_down_on_a_reachable_target(setup):
    """The same generated sample (seed 11) trained repeatedly: its identity loss must fall at every step, and
    the trained move must lower it by more than twice what moves of the same length in random directions
    change it (the chance level of this very problem, measured in the same run), so the criterion holds
    whatever a torch version's numerics make of the absolute figures."""
    start, adapter = new_adapter(setup[0]), new_adapter(setup[0])
    losses = [run_sia(setup, adapter, lr=0.05, reg_lambda=0.0).loss[0] for _ in range(6)]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    after = _loss_of(setup, _moved(setup, start, adapter))
    chance = [abs(_loss_of(setup, _moved(setup, start, adapter, seed)) - losses[0]) for seed in range(3)]
    drop = losses[0] - after
    assert drop > 0 and drop > 2 * max(chance), (losses, after, chance)


def test_token_training_lowers_a_fixed_evaluation_loss(parts, photo):  # noqa: F811
    """Stage 1 on a controlled problem the token can act on: a small UNet whose cross-attention output is
    made strong (x10), so the prompt, and with it the token, changes the noise prediction. The measure is
    the noise-prediction loss on the very (photo, flip, template, timestep, noise) draws training made, from
    the token stage's own streams of the seed, recomputed with one fixed vector at a time: deterministic
    numbers, no noisy per-step losses. That they are training's draws is checked: the first one, at the
    starting vector, gives exactly training's first loss. (Draws training never saw are not asserted: with
    random weights there is nothing shared between them to learn, and on some torch versions the change there
    was as small as a random move's.)

    The criterion is relative, so it holds whatever a torch version's numerics make of the absolute
    figures: moving the class word's vector by the same distance in six random directions gives the chance
    level of this very problem, measured in the same run; training must lower its objective by more than
    any random move of that length lowers it, and by more than twice the average change a random move makes."""
    _, clip, vae = parts
    steps, settings = 24, ti.TISettings(steps=24, lr=5e-3, batch_size=4, seed=0)
    with torch.inference_mode():
        model = tiny_models.tiny_sd15_model(seed=0)
        for name, module in model.model.diffusion_model.named_modules():
            if name.endswith("attn2.to_out.0"):
                module.weight.mul_(10.0)
        start = ti.class_word_vector(clip, "man")

        def objective(v, draws=steps):   # the mean loss over training's own draws (same streams, same order)
            return ti.evaluation_loss(model, clip, vae, photo, "man", v, draws=draws, seed=settings.seed,
                                      batch_size=settings.batch_size)

        before = objective(start)
        assert objective(start) == before   # the measure is deterministic
        vector, _, losses = ti.train_token(model, clip, vae, photo, "man", settings)
        first_draw = objective(start, draws=1)   # training's first loss was on this draw, at this vector
        after = objective(vector)
        distance = float((vector - start).norm())
        random_drops = random_move_drops(objective, start, distance, before, 6)
    assert len(losses) == steps and distance > 0
    assert abs(first_draw - losses[0]) <= 1e-5 * abs(losses[0]), (first_draw, losses[0])   # training's draws
    drop = before - after
    print("objective", before, after, "random moves' drops", random_drops)
    assert drop > 0, (before, after)
    mean_change = sum(abs(d) for d in random_drops) / len(random_drops)
    assert drop > max(random_drops) and drop > 2.0 * mean_change, (drop, random_drops)


def test_adapter_changes_only_the_last_step(setup):
    model, clip, vae, tp, vector, _ = setup
    adapter = new_adapter(model)
    with torch.inference_mode(False), torch.no_grad():
        g = torch.Generator().manual_seed(4)
        for p in adapter.paths:
            adapter.up[p].copy_(torch.randn(adapter.up[p].shape, generator=g) * 0.3)
    cond, neg = tp.conditioning("{token} {class_word}", vector), tp.conditioning("", vector)
    outputs = []
    for m in (model, apply_sia(model, adapter, 1.0, start_percent=1.0)[0]):
        grads = {}

        def last(den):
            grads["requires_grad"] = den.requires_grad
            if den.requires_grad:
                den.float().sum().backward()
            grads["g"] = sum(float(p.grad.abs().sum()) for p in adapter.parameters() if p.grad is not None)

        sampler = few_step_sampler.FewStepTrainingSampler(last, torch.Generator().manual_seed(1))
        with torch.inference_mode(False):
            noise = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(2))
        with torch.inference_mode():
            few_step_sampler.run_few_steps(m, sampler, few_step_sampler.lcm_schedule(m, 4), cond, neg, noise, 0)
        outputs.append((sampler.step_outputs, grads["g"], grads["requires_grad"]))
        for p in adapter.parameters():
            p.grad = None
    (plain, g_plain, _), (adapted, g_adapted, with_grad) = outputs
    assert len(plain) == len(adapted) == 4
    assert all(torch.equal(a, b) for a, b in zip(plain[:3], adapted[:3]))
    assert not torch.equal(plain[3], adapted[3])
    assert with_grad and g_plain == 0 and g_adapted > 0   # gradient reaches the adapter, only when it is attached


def test_each_prompt_is_encoded_once_and_its_conditioning_is_not_changed_by_sampling(setup):
    model, clip, vae, tp, vector, loss_fn = setup
    encoded = []

    def encode(text):
        cond = tp.conditioning(text, vector)
        encoded.append((text, cond))
        return cond

    templates = ["{token} {class_word} smiling", "{token} {class_word} in a park"]
    sampler = prompts.PromptSampler(templates, 0)
    settings = sia_trainer.SIATrainSettings(iterations=4, frames=2, width=64, height=64, seed=11, lr=0.0)
    with torch.inference_mode():
        sia_trainer.train_sia(model, new_adapter(model), encode, tp.conditioning("", vector), vae, loss_fn,
                              sampler, settings)
    drawn = prompts.PromptSampler(templates, 0)
    texts = {drawn.draw() for _ in range(4)}
    assert sorted(t for t, _ in encoded) == sorted(texts)  # one encoding per distinct prompt
    for text, cond in encoded:  # the reused conditioning still equals a fresh encoding
        with torch.inference_mode():
            fresh = tp.conditioning(text, vector)
        assert torch.equal(cond[0][0], fresh[0][0])
        assert cond[0][1].keys() == fresh[0][1].keys()


def test_deterministic_for_a_seed(setup):
    a, b = new_adapter(setup[0]), new_adapter(setup[0])
    ha = run_sia(setup, a, iterations=2, lr=1e-2)
    hb = run_sia(setup, b, iterations=2, lr=1e-2)
    assert ha.loss == hb.loss
    assert all(torch.equal(a.up[p], b.up[p]) and torch.equal(a.down[p], b.down[p]) for p in a.paths)


def test_frames_without_faces_stop_the_run_with_a_clear_message(setup):
    model, clip, vae = setup[:3]
    before = snapshot(model.model, vae.first_stage_model)

    class NoFace:
        calls = 0

        def __call__(self, frames):
            NoFace.calls += 1
            from comfyui_personalvideo.training.face.identity_loss import IdentityLossResult

            return IdentityLossResult(frames.sum() * 0, torch.full((frames.shape[0],), float("nan")), [], [0])

    adapter = new_adapter(model)
    with pytest.raises(TrainingError, match="no face was found in the generated frame of 3 of 3"):
        run_sia(setup, adapter, loss_fn=NoFace(), iterations=20, no_face_check_after=3)
    assert NoFace.calls == 3
    assert all(float(u.detach().abs().max()) == 0 for u in adapter.up.values())   # never stepped
    assert_same(before, snapshot(model.model, vae.first_stage_model))


def test_interrupt_check_is_honoured_between_iterations(setup):
    adapter = new_adapter(setup[0])
    model, clip, vae, tp, vector, loss_fn = setup
    comfy.model_management.interrupt_current_processing(True)
    settings = sia_trainer.SIATrainSettings(iterations=3, frames=1, width=64, height=64)
    with torch.inference_mode(), pytest.raises(comfy.model_management.InterruptProcessingException):
        sia_trainer.train_sia(model, adapter, lambda t: tp.conditioning(t, vector), tp.conditioning("", vector), vae,
                              loss_fn, prompts.PromptSampler(["{token}"], 0), settings,
                              check_interrupt=comfy.model_management.throw_exception_if_processing_interrupted)
    assert not comfy.model_management.processing_interrupted()


def test_cancel_is_answered_inside_a_model_evaluation(setup):
    """Cancel pressed while the UNet runs (here: as the first layer of its middle block starts) stops the run
    there: the block never finishes, nothing is decoded, and no hook is left on any layer."""
    from comfyui_personalvideo.training.checkpointing import regions_of

    model, clip, vae, tp, vector, loss_fn = setup
    unet = model.model.diffusion_model
    seen = {"armed": False, "middle done": False, "decoded": False}
    middle = list(unet.middle_block.children())   # the UNet runs these one by one, not the block itself
    handles = [middle[0].register_forward_pre_hook(lambda m, a: seen.update(armed=True)),
               middle[-1].register_forward_hook(lambda m, a, o: seen.update({"middle done": True})),
               vae.first_stage_model.decoder.register_forward_pre_hook(lambda m, a: seen.update(decoded=True))]

    def check():
        if seen["armed"]:
            raise comfy.model_management.InterruptProcessingException()

    settings = sia_trainer.SIATrainSettings(iterations=2, frames=1, width=64, height=64)
    try:
        with torch.inference_mode(), pytest.raises(comfy.model_management.InterruptProcessingException):
            sia_trainer.train_sia(model, new_adapter(model), lambda t: tp.conditioning(t, vector),
                                  tp.conditioning("", vector), vae, loss_fn, prompts.PromptSampler(["{token}"], 0),
                                  settings, check_interrupt=check)
    finally:
        for h in handles:
            h.remove()
    assert seen == {"armed": True, "middle done": False, "decoded": False}
    assert [len(layer._forward_pre_hooks) for layer in regions_of(unet, vae.first_stage_model)] == \
        [0] * len(regions_of(unet, vae.first_stage_model))


def test_a_no_face_stop_keeps_a_checkpoint(setup):
    from comfyui_personalvideo.training.face.identity_loss import IdentityLossResult
    from comfyui_personalvideo.training.run_state import RunState, StageCheckpoints

    def no_face(frames):
        return IdentityLossResult(frames.sum() * 0, torch.full((frames.shape[0],), float("nan")), [], [0])

    run = RunState("no_face_stop", {"a": 1}, every=50)
    run.clear()
    model = setup[0]
    with pytest.raises(TrainingError, match="3 iterations so far are kept in a checkpoint"):
        run_sia(setup, new_adapter(model), loss_fn=no_face, iterations=20, no_face_check_after=3,
                checkpoints=StageCheckpoints(run, "adapter"))
    stage, done, tensors, extra = run.load()
    assert (stage, done) == ("adapter", 3) and len(extra["adapter_loss"]) == 3 and "sia.adamw.0.step" not in tensors
    run.clear()
