"""Generation in the engine: the late-step gate on diffusers schedulers, the adapter on exactly those calls and
off afterwards, the token in the prompt, video files; and the single-file VAE matching ComfyUI's."""
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from comfyui_personalvideo.engine import generate as gen, late_gate, models, sia_peft  # noqa: E402
from comfyui_personalvideo.engine.identity_token import TokenPrompts  # noqa: E402
from comfyui_personalvideo.sia import AdapterInfo  # noqa: E402

import engine_models  # noqa: E402
import tiny_models  # noqa: E402


def scheduler(name, steps):
    s = gen.make_scheduler(name, models.EngineModels(None, None, None, None).scheduler_config)
    s.set_timesteps(steps)
    return s


def test_the_engine_measures_positions_on_comfyuis_noise_table(tiny_model):
    ours = late_gate.model_sampling(scheduler("ddim", 4)).sigmas
    torch.testing.assert_close(ours, tiny_model.model.model_sampling.sigmas.float(), rtol=1e-4, atol=0)


@pytest.mark.parametrize("name", ["ddim", "euler", "euler_a", "dpmpp_2m", "unipc", "ddpm", "DEISMultistepScheduler"])
def test_the_last_quarter_of_the_steps_is_adapted_for_every_scheduler(name):
    s = scheduler(name, 20)
    steps = late_gate.adapted_steps(s, 0.75)
    assert steps == list(range(len(s.timesteps) - 5, len(s.timesteps))), (name, steps)
    assert late_gate.adapted_steps(s, 0.0) == list(range(len(s.timesteps)))
    assert late_gate.adapted_steps(s, 1.0) == [len(s.timesteps) - 1]
    first_half = late_gate.adapted_steps(s, 0.0, 0.5)
    assert first_half == list(range(len(first_half))) and 9 <= len(first_half) <= 11, first_half


@pytest.mark.parametrize("name", ["heun", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler"])
def test_two_call_schedulers_gate_both_calls_of_a_step_as_that_step(name):
    """The second call of a step evaluates at (or below) the next step's noise level: it still belongs to its
    own step, so an adapted step has both calls on and the step before it none (the nodes' rule)."""
    s = scheduler(name, 10)
    calls = len(s.timesteps)
    assert calls == 19, calls                      # 10 steps: two calls each, the last step one
    one_call = scheduler("euler", 10)               # the same 10 steps' positions with one call per step
    steps_on = late_gate.adapted_steps(one_call, 0.75)
    on = late_gate.adapted_steps(s, 0.75)
    assert on == [k for k in range(calls) if k // 2 in steps_on], (on, steps_on)
    assert on[0] % 2 == 0                          # switches on at a step's first call, never at a corrector
    assert late_gate.adapted_steps(s, 0.0) == list(range(calls))


def test_lcm_four_steps_adapts_the_last_only():
    assert late_gate.adapted_steps(scheduler("lcm", 4), 0.75) == [3]


def test_unknown_scheduler_is_a_clear_error():
    with pytest.raises(gen.EngineError, match="unknown scheduler"):
        scheduler("nonsense", 4)


@pytest.fixture(scope="module")
def engine():
    return engine_models.tiny_engine_models(motion=True)


def adapter_for(engine, seed=3):
    sia_peft.attach(engine.unet, 4, 4.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in sia_peft.lora_layers(engine.unet).values():
            b = layer.lora_B[sia_peft.ADAPTER_NAME].weight
            b.copy_(torch.randn(b.shape, generator=g))
    adapter = sia_peft.extract(engine.unet, 4.0, AdapterInfo(name="zoe", trigger="embedding:zoe woman",
                                                             training={"class_word": "woman"}),
                               embedding=torch.randn(1, 32, generator=g))
    sia_peft.detach(engine.unet)
    return adapter


SMALL = dict(frames=2, width=64, height=64, steps=8, cfg=2.0, seed=1)


def test_generation_switches_the_adapter_on_for_exactly_the_gated_steps_and_leaves_the_unet_as_it_was(engine):
    adapter = adapter_for(engine)
    plain = gen.generate(engine, gen.GenerateSettings(prompt="embedding:zoe woman smiling", **SMALL))["frames"]
    seen = []

    def record(i, total, adapted):
        layer = next(iter(sia_peft.lora_layers(engine.unet).values()))
        seen.append((i, adapted, not layer.disable_adapters))

    out = gen.generate(engine, gen.GenerateSettings(prompt="embedding:zoe woman smiling", **SMALL), adapter, record)
    assert out["adapted_steps"] == [6, 7] and out["steps"] == 8
    assert [s[1] for s in seen] == [False] * 6 + [True] * 2
    assert [s[2] for s in seen] == [False] * 6 + [True] * 2
    assert out["frames"].shape == (2, 3, 64, 64) and 0 <= float(out["frames"].min()) <= float(out["frames"].max()) <= 1
    assert not sia_peft.lora_layers(engine.unet)                       # taken off again
    assert (out["frames"] - plain).abs().max() > 1e-3                  # the token and the adapter act
    again = gen.generate(engine, gen.GenerateSettings(prompt="embedding:zoe woman smiling", **SMALL))["frames"]
    torch.testing.assert_close(again, plain, rtol=0, atol=0)          # the UNet is as it was
    off = gen.generate(engine, gen.GenerateSettings(prompt="a woman smiling", strength=0.0, **SMALL), adapter)
    base = gen.generate(engine, gen.GenerateSettings(prompt="a woman smiling", **SMALL))
    torch.testing.assert_close(off["frames"], base["frames"], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["lcm", "euler_a", "ddpm", "dpmpp_2m"])
def test_the_seed_fixes_the_video_whatever_the_global_random_state(engine, name):
    """LCM, Euler ancestral and DDPM add noise at every step: it comes from the seed, never from torch's global
    generator, so a seed gives the same video in any process (here: the global state set otherwise before each
    run), and a generation leaves the caller's global random state as it found it."""
    import dataclasses

    settings = gen.GenerateSettings(prompt="a woman smiling", scheduler=name, **dict(SMALL, steps=4))
    torch.manual_seed(1)
    first = gen.generate(engine, settings)["frames"]
    torch.manual_seed(2)
    torch.rand(7)
    state = torch.get_rng_state()
    second = gen.generate(engine, settings)["frames"]
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    assert torch.equal(torch.get_rng_state(), state)
    other = gen.generate(engine, dataclasses.replace(settings, seed=2))["frames"]
    assert float((other - first).abs().max()) > 1e-3


def test_the_token_replaces_embedding_name_and_token_placeholders(engine):
    prompts = TokenPrompts(engine.text_encoder, engine.tokenizer, "woman", "zoe")
    assert prompts.text("embedding:zoe woman on a beach") == prompts.text("{token} {class_word} on a beach")
    v = torch.randn(32)
    with torch.no_grad():
        a = prompts.encode("embedding:zoe woman", v)
        b = prompts.encode("embedding:zoe woman", None)
        c = prompts.encode("a woman", v)
    assert (a - b).abs().max() > 1e-3
    torch.testing.assert_close(c, prompts.encode("a woman", None))


@pytest.mark.parametrize("ext", [".gif", ".webp", ".mp4"])
def test_video_files_are_written_whole(tmp_path, ext):
    frames = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    path = gen.write_video(frames, str(tmp_path / f"clip{ext}"), fps=8)
    assert [p.name for p in tmp_path.iterdir()] == [f"clip{ext}"]
    if ext == ".mp4":
        import av

        with av.open(path) as container:
            assert sum(1 for _ in container.decode(video=0)) == 3
    else:
        from PIL import Image

        with Image.open(path) as im:
            assert im.n_frames == 3
    with pytest.raises(gen.EngineError, match="must end in"):
        gen.write_video(frames, str(tmp_path / "clip.avi"))


def test_the_single_file_vae_decodes_as_comfyuis(tmp_path):
    with torch.inference_mode():
        vae = tiny_models.tiny_vae()
        sd = {k: v.clone() for k, v in vae.first_stage_model.state_dict().items()}
        z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        want = vae.first_stage_model.decode(z.clone())
    ours = models.vae_from_ldm(sd)
    with torch.no_grad():
        got = ours.decode(z).sample
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
