"""Memory savings of the trainer on the real host with tiny models: gradient checkpointing of the gradient
step (same gradients, far fewer bytes kept for backward, model exactly restored) and mixed precision with fp32
adapter weights."""
import contextlib
import math
import threading
import warnings
import weakref

import pytest
import torch

from comfyui_personalvideo.sia import apply_sia
from comfyui_personalvideo.training import checkpointing, devices, few_step_sampler, precision, sia_trainer
from comfyui_personalvideo.training.errors import TrainingError

from autograd_memory import SavedTensorBytes
from face_fixtures import tiny_onnx  # noqa: F401
from test_train_core import new_adapter, run_sia, setup  # noqa: F401
from test_train_identity import face_analysis, parts, photo  # noqa: F401


def _gradient_step(setup, adapter, gradient_checkpointing, autocast=None, latent=8, before_backward=None,
                   backward=None, unet_wrapper=None, spared=()):  # noqa: F811
    """One 4-step generation whose last step decodes a frame and backpropagates a loss on its pixels
    (``backward(loss)`` in place of ``loss.backward()``; ``unet_wrapper``: the MODEL's unet function wrapper)."""
    model, clip, vae, tp, vector, _ = setup
    with torch.inference_mode():
        patched = apply_sia(model, adapter, 1.0, start_percent=1.0)[0]
        if unet_wrapper is not None:
            patched.set_model_unet_function_wrapper(unet_wrapper)
        cond, neg = tp.conditioning("{token} {class_word} smiling", vector), tp.conditioning("", vector)
        sigmas = few_step_sampler.lcm_schedule(patched, 4)
    meter = SavedTensorBytes()
    seen = {}

    def last_step(denoised):
        seen["wrapped"] = sum(getattr(m.forward, "_pv_checkpointing", False)
                              for m in checkpointing.regions_of(patched.model.diffusion_model, vae.first_stage_model))
        seen["weights"] = _weights(patched.model, vae.first_stage_model)
        with autocast() if autocast else contextlib.nullcontext():
            pixels = sia_trainer.decode_latent(vae, patched.model, denoised[1:2])
        if before_backward is not None:
            before_backward()
        loss = (pixels.float() - 0.3).pow(2).mean()
        loss.backward() if backward is None else backward(loss)

    sampler = few_step_sampler.FewStepTrainingSampler(last_step, torch.Generator().manual_seed(1),
                                                      extra_modules=(vae.first_stage_model,),
                                                      gradient_checkpointing=gradient_checkpointing,
                                                      autocast=autocast, load_first=(patched, vae.patcher),
                                                      spared=spared)
    with torch.inference_mode(False):
        noise = torch.randn((2, 4, latent, latent), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode(), meter:
        few_step_sampler.run_few_steps(patched, sampler, sigmas, cond, neg, noise, 0)
    grads = {k: p.grad.detach().clone() for k, p in zip(_names(adapter), adapter.parameters())}
    seen["meter"] = meter
    return grads, meter.bytes, sampler, seen


def _names(adapter):
    return [f"{kind}:{p}" for p in adapter.paths for kind in ("down", "up")]


def _weights(*modules):
    """name -> (the tensor object, its memory, its device) of every parameter and buffer."""
    return {f"{i}.{n}": (id(t), t.data_ptr(), t.device) for i, m in enumerate(modules)
            for n, t in list(m.named_parameters()) + list(m.named_buffers())}


def test_gradient_step_reads_the_models_weights_in_place(setup):  # noqa: F811
    """No weight is swapped for a copy during the gradient step: every parameter is the very object it
    was, in the same memory, and what autograd keeps of the weights is that memory, not a copy."""
    model, _, vae = setup[:3]
    before = _weights(model.model, vae.first_stage_model)
    adapter = new_adapter(model)
    _, _, _, seen = _gradient_step(setup, adapter, False)
    assert seen["weights"] == before == _weights(model.model, vae.first_stage_model)
    weight_memory = {ptr for _, ptr, _ in before.values()}
    adapter_memory = {p.data_ptr() for p in adapter.parameters()}
    saved = seen["meter"].weight_storages - adapter_memory
    assert len(saved) > 20 and saved <= weight_memory, len(saved - weight_memory)


class ShrinkingFreeMemory:
    """The host's free memory as it behaves in training: plenty while the forward runs, little once the
    forward's activations hold it (``drop()``, called before backward). Real free memory moves by itself;
    this double moves the same way, reproducibly."""

    def __init__(self, high=64 << 30, low=8 << 20):
        self.value, self.low = high, low

    def drop(self):
        self.value = self.low

    def __call__(self, dev=None, torch_free_too=False):
        return (self.value, self.value) if torch_free_too else self.value


BACKENDS = ("pytorch", "split", "sub_quad", "basic")


def use_attention(monkeypatch, backend, *models):
    """The host's attention as ``--use-pytorch-cross-attention``, ``--use-split-cross-attention`` or the
    default sub-quadratic one would set it, for the UNet (module-level choice) and the VAE (per block)."""
    import comfy.ldm.modules.attention as attention
    import comfy.ldm.modules.diffusionmodules.model as vae_model

    vae_fn = vae_model.pytorch_attention if backend == "pytorch" else vae_model.normal_attention
    use_attention_functions(monkeypatch, getattr(attention, f"attention_{backend}"), vae_fn, *models)


def use_attention_functions(monkeypatch, fn, vae_fn, *models):
    """``fn`` as the UNet's attention (and AnimateDiff-Evolved's motion attention in ``models``), ``vae_fn`` as
    every VAE block's in ``models``; put back when the test ends."""
    import comfy.ldm.modules.attention as attention

    monkeypatch.setattr(attention, "optimized_attention", fn)
    monkeypatch.setattr(attention, "optimized_attention_masked", fn)
    for root in models:
        for module in root.modules():
            if callable(getattr(module, "optimized_attention", None)):
                monkeypatch.setattr(module, "optimized_attention", vae_fn)
            if callable(getattr(module, "actual_attention", None)):   # AnimateDiff-Evolved's motion attention
                monkeypatch.setattr(module, "actual_attention", fn)


def _relative_error(got, want):
    num = sum(float((got[k] - want[k]).pow(2).sum()) for k in want) ** 0.5
    return num / max(sum(float(want[k].pow(2).sum()) for k in want) ** 0.5, 1e-30)


@pytest.mark.parametrize("smart_memory", [True, False], ids=["smart-memory", "disable-smart-memory"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_checkpointing_gives_the_same_gradients_under_every_attention_backend(setup, monkeypatch, backend,
                                                                             smart_memory):  # noqa: F811
    """A 32x32 latent (1024 tokens at the first level), so split and sub-quadratic attention slice the work
    by the free memory: plenty in the forward, little when backward recomputes."""
    import comfy.model_management

    model, _, vae = setup[:3]
    use_attention(monkeypatch, backend, model.model.diffusion_model, vae.first_stage_model)
    monkeypatch.setattr(comfy.model_management, "DISABLE_SMART_MEMORY", not smart_memory)
    grads = {}
    for on in (False, True):
        free = ShrinkingFreeMemory()
        monkeypatch.setattr(comfy.model_management, "get_free_memory", free)
        grads[on] = _gradient_step(setup, new_adapter(model), on, latent=32, before_backward=free.drop)[0]
    assert sum(float(g.abs().sum()) for g in grads[False].values()) > 0
    assert _relative_error(grads[True], grads[False]) < 1e-4, backend


@pytest.mark.parametrize("backend", ["split", "sub_quad"])
def test_the_free_memory_double_reaches_the_recomputation(setup, monkeypatch, backend):  # noqa: F811
    """Without the forward's readings replayed, backward's recomputation reads the double's low free memory
    and slices its attention by it (so it computes something else than the forward did); with them replayed it
    reads none: the test above means something."""
    import comfy.model_management

    from comfyui_personalvideo.training import free_memory_replay

    model, _, vae = setup[:3]
    use_attention(monkeypatch, backend, model.model.diffusion_model, vae.first_stage_model)
    low_readings = {}
    for replay in (True, False):
        free = ShrinkingFreeMemory()
        calls = []
        monkeypatch.setattr(comfy.model_management, "get_free_memory",
                            lambda *a, **k: calls.append(free.value) or free(*a, **k))
        if not replay:
            monkeypatch.setattr(free_memory_replay, "replaying", lambda readings: contextlib.nullcontext())
        try:
            _gradient_step(setup, new_adapter(model), True, latent=32, before_backward=free.drop)
        except Exception as error:   # sliced for 8 MiB, the host's attention may give up: the same point
            low_readings[replay] = ("failed", type(error).__name__)
            continue
        low_readings[replay] = sum(1 for value in calls if value == free.low)
    assert low_readings[True] == 0, low_readings
    assert low_readings[False] != 0, low_readings


def _one_call_per_frame(apply_model, args):
    """The step's model evaluation made as one call per frame, each with its own noise level tensor, as
    ComfyUI makes separate calls when cond and uncond do not fit together, and context windows do."""
    x, t, c = args["input"], args["timestep"], args["c"]
    outputs = []
    for i in range(x.shape[0]):
        part = {k: v[i:i + 1] if torch.is_tensor(v) and v.shape[0] == x.shape[0] else v for k, v in c.items()}
        part["transformer_options"] = dict(c.get("transformer_options", {}), sigmas=t[i:i + 1])
        outputs.append(apply_model(x[i:i + 1], t[i:i + 1], **part))
    return torch.cat(outputs)


def _backward_on_another_thread(loss):
    """Backward on a thread of its own, as CUDA's autograd engine runs it: no sampler frame is on its stack."""
    failures = []

    def run():
        try:
            loss.backward()
        except BaseException as error:  # handed back to the test's thread
            failures.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if failures:
        raise failures[0]


def test_recomputation_on_another_thread_runs_the_gate_as_the_forward_did(setup):  # noqa: F811
    """The gate (adapter on in the last step only) cannot find the sampler from autograd's thread; each
    checkpointed region replays the gate state its forward ended with, so the gradients are those of the
    computation the forward made."""
    model = setup[0]
    plain = _gradient_step(setup, new_adapter(model), False, unet_wrapper=_one_call_per_frame)[0]
    replayed = _gradient_step(setup, new_adapter(model), True, unet_wrapper=_one_call_per_frame,
                              backward=_backward_on_another_thread)[0]
    assert sum(float(g.abs().sum()) for g in plain.values()) > 0   # the adapter acted in the gradient step
    assert _relative_error(replayed, plain) < 1e-4


def test_checkpointing_gives_the_same_gradients_and_keeps_far_fewer_bytes(setup):  # noqa: F811
    model, _, vae = setup[:3]
    plain_grads, plain_bytes, plain_sampler, plain_seen = _gradient_step(setup, new_adapter(model), False)
    ckpt_grads, ckpt_bytes, ckpt_sampler, ckpt_seen = _gradient_step(setup, new_adapter(model), True)
    assert plain_sampler.checkpointed_regions == 0 and plain_seen["wrapped"] == 0
    # the module hooks aliased every inference tensor the step read: no per-operation fallback (far slower), with
    # the steps before it run in inference mode as plain sampling runs them
    assert not plain_sampler.per_operation_fallback and not ckpt_sampler.per_operation_fallback
    # every layer of the UNet's blocks and every block of the VAE decoder was checkpointed during the step
    regions = checkpointing.regions_of(model.model.diffusion_model, vae.first_stage_model)
    assert ckpt_sampler.checkpointed_regions == ckpt_seen["wrapped"] == len(regions) > 20
    assert sum(float(g.abs().sum()) for g in ckpt_grads.values()) > 0
    assert plain_grads.keys() == ckpt_grads.keys()
    for k in plain_grads:
        torch.testing.assert_close(ckpt_grads[k], plain_grads[k], msg=k)
    print("saved bytes", ckpt_bytes, plain_bytes)
    assert ckpt_bytes < 0.4 * plain_bytes, (ckpt_bytes, plain_bytes)
    # afterwards no layer keeps a checkpointing forward
    for root in (model.model.diffusion_model, vae.first_stage_model):
        assert not [n for n, m in root.named_modules() if getattr(m.forward, "_pv_checkpointing", False)]


def test_partial_checkpointing_leaves_the_spared_layers_out_with_the_same_gradients(setup):  # noqa: F811
    """Layers given as spared (what auto's partial choice finds room for) run as without checkpointing: they are
    not wrapped, what they keep counts as without checkpointing, and the gradients are the same."""
    model, _, vae = setup[:3]
    regions = checkpointing.regions_of(model.model.diffusion_model, vae.first_stage_model)
    spared = regions[1::2]
    plain_grads, plain_bytes = _gradient_step(setup, new_adapter(model), False)[:2]
    ckpt_bytes = _gradient_step(setup, new_adapter(model), True)[1]
    grads, partial_bytes, sampler, seen = _gradient_step(setup, new_adapter(model), True, spared=spared)
    assert sampler.checkpointed_regions == seen["wrapped"] == len(regions) - len(spared) > 10
    assert ckpt_bytes < partial_bytes < plain_bytes, (ckpt_bytes, partial_bytes, plain_bytes)
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0
    for k in plain_grads:
        torch.testing.assert_close(grads[k], plain_grads[k], msg=k)
    for root in (model.model.diffusion_model, vae.first_stage_model):
        assert not [n for n, m in root.named_modules() if getattr(m.forward, "_pv_checkpointing", False)]


def test_a_checkpointed_adapted_layer_recomputes_bit_for_bit_what_its_forward_computed_in_half_precision(setup):  # noqa: F811
    """Checkpointing backpropagates through the recomputation, so the recomputation must compute what the forward
    computed. The adapter's layers once took the merged product (weight + delta, one rounding) in the forward,
    which runs without gradient, and added the delta to the output in the recomputation: in bf16 the output of
    every adapted transformer differed between the two (by up to 0.016 on the tiny UNet)."""
    import tiny_models

    with torch.inference_mode():
        half = (tiny_models.tiny_sd15_model(seed=0, dtype=torch.bfloat16),) + tuple(setup[1:])
    adapter = new_adapter(half[0])
    with torch.inference_mode(False), torch.no_grad():
        for p in adapter.parameters():   # a trained adapter: its delta is not zero
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    outputs = {}

    def record(module, args, output):
        if not torch.is_inference_mode_enabled():   # the gradient step's forward, then its recomputation
            outputs.setdefault(id(module), []).append(output.detach().clone())

    blocks = [m for m in half[0].model.diffusion_model.modules() if type(m).__name__ == "SpatialTransformer"]
    handles = [block.proj_out.register_forward_hook(record) for block in blocks]
    try:
        grads, _, sampler, _ = _gradient_step(half, adapter, True)
    finally:
        for h in handles:
            h.remove()
    assert sampler.checkpointed_regions > 20 and sum(float(g.abs().sum()) for g in grads.values()) > 0
    assert len(outputs) == len(blocks) > 5
    for runs in outputs.values():
        assert len(runs) == 2 and runs[0].dtype == torch.bfloat16
        assert torch.equal(runs[0], runs[1]), float((runs[0].float() - runs[1].float()).abs().max())


def test_layers_before_the_first_adapter_are_not_recomputed(setup, monkeypatch):  # noqa: F811
    """The UNet's first convolution and ResBlock hold nothing trainable and get no input that needs a gradient:
    under checkpointing they run once and backward never recomputes them; every layer from the first one that
    holds the adapter on is recomputed; the gradients are those of the step without checkpointing."""
    model = setup[0]
    blocks = model.model.diffusion_model.input_blocks
    first = {"conv_in": blocks[0][0], "first ResBlock": blocks[1][0], "first SpatialTransformer": blocks[1][1]}
    assert type(first["first ResBlock"]).__name__ == "ResBlock"
    assert type(first["first SpatialTransformer"]).__name__ == "SpatialTransformer"
    recomputed = dict.fromkeys(first, 0)
    for name, layer in first.items():   # a recomputation calls the class's forward (looked up at the call)
        cls = type(layer)

        def counting(self, *args, _forward=cls.forward, _name=name, _layer=layer, **kwargs):
            if self is _layer and checkpointing.recomputing():
                recomputed[_name] += 1
            return _forward(self, *args, **kwargs)
        monkeypatch.setattr(cls, "forward", counting)
    plain = _gradient_step(setup, new_adapter(model), False)[0]
    ckpt = _gradient_step(setup, new_adapter(model), True)[0]
    assert recomputed["conv_in"] == recomputed["first ResBlock"] == 0, recomputed
    assert recomputed["first SpatialTransformer"] >= 1, recomputed   # once per model call of the gradient step
    for k in plain:
        torch.testing.assert_close(ckpt[k], plain[k], msg=k)


def test_checkpointed_puts_back_exactly_the_forward_a_layer_had():
    plain, patched = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    object_patch = patched.forward = lambda x: x * 2   # what a ModelPatcher object patch looks like
    x = torch.randn(2, 3, requires_grad=True)
    with checkpointing.checkpointed([plain, patched, plain]) as count:
        assert count == 2 and "forward" in plain.__dict__
        assert torch.equal(patched(x), x * 2)
        y = plain(x)
    y.sum().backward()
    assert "forward" not in plain.__dict__ and patched.__dict__["forward"] is object_patch
    torch.testing.assert_close(x.grad, plain.weight.sum(0).expand(2, 3))


def test_a_checkpointed_layers_inputs_are_freed_once_its_backward_has_run():
    """The trainer holds its loss, and so the whole graph, until backward returns: a layer's inputs must go when
    its own backward is done, not stay with its node for the rest of backward (at the default settings the VAE
    decoder's inputs, 0.66 GiB, stayed through the UNet's backward)."""
    layers = [torch.nn.Linear(64, 64) for _ in range(3)]
    x = torch.randn(4, 64, requires_grad=True)
    with checkpointing.checkpointed(layers):
        h = layers[0](x)
        middle = weakref.ref(h)
        out = layers[2](layers[1](h))
        del h
    assert middle() is not None   # kept for the second layer's recomputation
    out.sum().backward()
    assert middle() is None and out.grad_fn is not None
    assert x.grad is not None and layers[0].weight.grad is not None


def test_checkpointed_regions_see_the_transformer_options_of_their_first_call():
    """The UNet changes transformer_options in place as it goes; recomputation must see the original values."""
    seen = []

    class Layer(torch.nn.Module):
        def forward(self, x, transformer_options):
            seen.append(transformer_options["block"])
            transformer_options["block_index"] = 1
            return torch.sin(x)   # saves x for backward, so backward recomputes

    layer, options = Layer(), {"block": ("input", 1)}
    x = torch.randn(2, requires_grad=True)
    with checkpointing.checkpointed([layer]):
        y = layer(x, options)
    options["block"] = ("output", 11)
    y.sum().backward()
    assert seen == [("input", 1), ("input", 1)]   # the forward, then the recomputation in backward
    assert "block_index" not in options


def test_recomputation_runs_with_the_groupnorm_the_forward_ran_with():
    """Packs swap GroupNorm.forward only while the diffusion model runs (AnimateDiff-Evolved's frame-aware
    GroupNorm); backward recomputes later, so it must put the forward's version back for the recomputation."""
    original = torch.nn.GroupNorm.forward
    calls = []

    def frame_aware(self, x):
        calls.append(tuple(x.shape))
        return original(self, x) * 1.5 + x.mean(0, keepdim=True)   # mixes the frames of the batch

    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.GroupNorm(2, 4))
    x = torch.randn(3, 4, 5, 5)

    def grads(checkpointing):
        block.zero_grad()
        with checkpointing_ctx(checkpointing):
            torch.nn.GroupNorm.forward = frame_aware     # on only during the "model call"
            try:
                y = block[1](block[0](x))
            finally:
                torch.nn.GroupNorm.forward = original
        y.pow(2).sum().backward()
        return [p.grad.clone() for p in block.parameters()]

    def checkpointing_ctx(on):
        return checkpointing.checkpointed([block[1]], on)

    reference = grads(False)
    assert len(calls) == 1
    for got, want in zip(grads(True), reference):
        torch.testing.assert_close(got, want)
    assert len(calls) == 3 and torch.nn.GroupNorm.forward is original   # forward + recomputation


def test_bf16_autocast_run_keeps_fp32_adapter_and_optimizer_state(setup, monkeypatch):  # noqa: F811
    """The mixed-precision path, exercised on the CPU with bf16 autocast (CUDA picks bf16/fp16 itself)."""
    optimizers = []

    class RecordedAdamW(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            optimizers.append(self)

    monkeypatch.setattr(torch.optim, "AdamW", RecordedAdamW)
    adapter = new_adapter(setup[0])
    history = run_sia(setup, adapter, iterations=2, lr=1e-2, precision="bf16")
    assert history.precision == "bf16"
    assert all(math.isfinite(v) for v in history.loss)
    (optimizer,) = optimizers
    state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.ndim > 0]
    assert len(state) == 2 * len(adapter.parameters()) and all(t.dtype == torch.float32 for t in state)
    for p in adapter.parameters():
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
        assert torch.isfinite(p.grad).all()
    assert any(float(u.detach().abs().max()) > 0 for u in adapter.up.values())   # it trained
    # the gradient pass really ran in bf16: the same step in fp32 gives other gradients
    grads_bf16, _, _, _ = _gradient_step(setup, new_adapter(setup[0]), True,
                                         autocast=precision.resolve("bf16", "cpu").autocast)
    grads_fp32, _, _, _ = _gradient_step(setup, new_adapter(setup[0]), True)
    assert any(not torch.equal(grads_bf16[k], grads_fp32[k]) for k in grads_fp32)
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads_bf16.values())


def _cpu_autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:   # torch 2.4: no device argument
        return torch.is_autocast_cpu_enabled()


def _unet_precision_seen(setup, adapter, choice):
    """(dtype of the first spatial transformer's input, autocast on) in the gradient step with precision
    ``choice`` resolved for the MODEL of ``setup`` as the trainer resolves it."""
    model = setup[0]
    chosen = precision.resolve(choice, "cpu", devices.compute_dtype_of(model))
    seen = []
    block = next(m for m in model.model.diffusion_model.modules() if type(m).__name__ == "SpatialTransformer")

    def look(module, args):
        if torch.is_grad_enabled() and not seen:
            seen.append((args[0].dtype, _cpu_autocast_on()))

    handle = block.register_forward_pre_hook(look)
    try:
        grads, _, _, _ = _gradient_step(setup, adapter, False, autocast=chosen.autocast)
    finally:
        handle.remove()
    return seen[0], grads, chosen


def test_auto_precision_trains_a_half_precision_model_in_its_own_dtype(setup):  # noqa: F811
    """ComfyUI loads SD1.5 in fp16/bf16 on a GPU and samples it without autocast; auto trains it the same way
    (autocast over it would cast every weight at every layer). A bf16 UNet on the CPU stands in for it."""
    import tiny_models

    with torch.inference_mode():
        half = (tiny_models.tiny_sd15_model(seed=0, dtype=torch.bfloat16),) + tuple(setup[1:])
    (dtype, autocast_on), grads, chosen = _unet_precision_seen(half, new_adapter(half[0]), "auto")
    assert (chosen.name, chosen.native, chosen.scaler) == ("bf16", True, None)
    assert dtype == torch.bfloat16 and not autocast_on
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for g in grads.values())
    # forcing bf16 autocast on the same model really autocasts; on an fp32 model auto stays fp32, no autocast
    assert _unet_precision_seen(half, new_adapter(half[0]), "bf16")[0] == (torch.bfloat16, True)
    assert _unet_precision_seen(setup, new_adapter(setup[0]), "auto")[0] == (torch.float32, False)
    history = run_sia(half, new_adapter(half[0]), iterations=2, lr=1e-2)
    assert history.precision == "bf16" and all(math.isfinite(v) for v in history.loss)


def test_compute_dtype_is_the_manual_cast_dtype_where_the_model_has_one():
    """ComfyUI stores weights in one dtype and computes in another (fp8 or fp16 weights on a GPU without fast
    fp16): auto goes by the dtype it computes in."""
    import comfy.model_base
    import tiny_models

    config = tiny_models.sd15_model_config(tiny_models.sd15_unet_config())
    config.set_inference_dtype(torch.float16, torch.float32)
    with torch.inference_mode():
        base = comfy.model_base.BaseModel(config, device="cpu")
    assert base.get_dtype() == torch.float16 and devices.compute_dtype_of(base) == torch.float32
    assert devices.compute_dtype_of(object()) is None
    assert precision.resolve("auto", "cpu", devices.compute_dtype_of(base)).name == "fp32"


def test_gradient_scaler_state_goes_into_a_checkpoint_and_back():
    """fp16 training on a GPU scales the loss; a resumed run continues from the interrupted run's scale (a CPU
    scaler stands in for CUDA's here: the same class and state)."""
    import json

    run = precision.Precision("cpu", "fp16", torch.amp.GradScaler("cpu", init_scale=2.0 ** 10))
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    assert not run.backward_and_step((weight * float("inf")).sum(), optimizer)   # overflow: skipped, scale halved
    assert torch.equal(weight.detach(), torch.ones(2))
    state = json.loads(json.dumps(run.scaler_state()))   # the checkpoint keeps it as JSON
    resumed = precision.Precision("cpu", "fp16", torch.amp.GradScaler("cpu", init_scale=2.0 ** 10))
    resumed.restore_scaler(state)
    assert resumed.scaler.get_scale() == run.scaler.get_scale() == 2.0 ** 9
    optimizer.zero_grad(set_to_none=True)
    assert run.backward_and_step(weight.sum(), optimizer) and not torch.equal(weight.detach(), torch.ones(2))
    assert precision.Precision("cpu", "fp32").scaler_state() == {}
    precision.Precision("cpu", "fp32").restore_scaler(state)   # no scaler: nothing to restore, no error


def test_the_fused_adapter_update_under_the_gradient_scaler_skips_an_overflow_and_unscales():
    """Under the fp16 gradient scaler the adapter's fused AdamW unscales inside its kernel and skips on the
    scaler's overflow flag: an overflowing step changes nothing and counts no step; the next ones are the
    unscaled multi-tensor update."""
    from comfyui_personalvideo.training.sia_settings import SIATrainSettings, adapter_optimizer

    settings = SIATrainSettings(lr=0.1)
    scaled, plain = torch.nn.Parameter(torch.linspace(-1, 1, 6)), torch.nn.Parameter(torch.linspace(-1, 1, 6))
    run = precision.Precision("cpu", "fp16", torch.amp.GradScaler("cpu", init_scale=2.0 ** 10))
    fused = adapter_optimizer([scaled], settings)
    assert fused.defaults["fused"]
    assert not run.backward_and_step((scaled * float("inf")).sum(), fused)
    assert torch.equal(scaled.detach(), plain.detach()) and run.scaler.get_scale() == 2.0 ** 9
    reference = torch.optim.AdamW([plain], lr=0.1, betas=settings.betas, eps=settings.eps,
                                  weight_decay=settings.weight_decay, foreach=True)
    target = torch.tensor([3.0, -2.0, 1.0, 0.5, -0.25, 2.0])
    for _ in range(2):
        fused.zero_grad(set_to_none=True)
        assert run.backward_and_step(((scaled - target) ** 2).sum(), fused)
        reference.zero_grad(set_to_none=True)
        ((plain - target) ** 2).sum().backward()
        reference.step()
    assert fused.state[scaled]["step"].item() == reference.state[plain]["step"].item() == 2
    torch.testing.assert_close(scaled.detach(), plain.detach(), rtol=1e-6, atol=1e-6)
    assert not torch.equal(scaled.detach(), torch.linspace(-1, 1, 6))


def test_precision_choice():
    assert precision.resolve("auto", "cpu").name == "fp32"
    with warnings.catch_warnings():   # GradScaler warns where CUDA is missing
        warnings.simplefilter("ignore")
        on_gpu = precision.resolve("auto", "cuda", torch.float16)
    assert (on_gpu.name, on_gpu.native, on_gpu.scaler is not None) == ("fp16", True, True)
    assert isinstance(on_gpu.autocast(), contextlib.nullcontext)
    assert precision.resolve("auto", "cuda", torch.bfloat16).scaler is None
    assert precision.resolve("bf16", "cpu").dtype == torch.bfloat16
    assert precision.resolve("fp16", "cpu").scaler is None   # a gradient scaler only on CUDA
    with pytest.raises(TrainingError, match="precision must be one of"):
        sia_trainer.SIATrainSettings(precision="int8").check()
    with pytest.raises(TrainingError, match="precision must be one of"):
        precision.resolve("int8", "cpu")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sub_quad", "split"])
def test_full_size_token_step_on_a_real_photo_matches_with_checkpointing(sd15_checkpoint, monkeypatch, backend):
    """The failure users saw: stage 1 on the SD1.5-size UNet with a real photo (grace_hopper.jpg, its face
    crop at 256x256: 1024 tokens at the first level) under split / sub-quadratic attention, free memory
    shrinking before backward. The token's gradient must be the same with and without checkpointing."""
    import random

    import comfy.model_management
    import nodes

    import face_fixtures as ff
    from comfyui_personalvideo.training.face import references
    from comfyui_personalvideo.training.inference_tensors import gradient_window
    from comfyui_personalvideo.training import textual_inversion as ti

    with torch.inference_mode():
        model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(sd15_checkpoint.name)[:3]
    photo = ff.photo_image("grace_hopper")[0]
    box = references.crop_box(ff.box_from_kps(ff.photo_kps("grace_hopper")), (photo.shape[1], photo.shape[0]),
                              (256, 256))
    crop = references._resample(photo, box, 256, 256)[None]
    use_attention(monkeypatch, backend, model.model.diffusion_model)
    grads = {}
    for on in (False, True):
        free = ShrinkingFreeMemory()
        monkeypatch.setattr(comfy.model_management, "get_free_memory", free)
        settings = ti.TISettings(steps=1, batch_size=1, gradient_checkpointing=on, precision="fp32")
        with torch.inference_mode():
            _, loss_of = ti._prepare(model, clip, vae, crop, "woman", settings)
            start = ti.class_word_vector(clip, "woman")
            with torch.inference_mode(False), gradient_window(model.model.diffusion_model, clip.cond_stage_model):
                vector = torch.nn.Parameter(start.clone())
                draw = ti.draw_batch(random.Random(0), torch.Generator().manual_seed(0), loss_of.latents, 1)
                loss = loss_of(vector, draw)
                free.drop()
                loss.backward()
        grads[on] = {"vector": vector.grad.detach().clone()}
    assert float(grads[False]["vector"].abs().sum()) > 0
    assert _relative_error(grads[True], grads[False]) < 1e-4
