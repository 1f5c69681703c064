"""Two identities in one picture: adapters given a MASK act in their own region of spatial self-attention only.

The proof runs through the host's own sampling (cond and uncond batched, a video's frames as the batch) on an
SD1.5-layout UNet with three resolutions: every self-attention call of the run with two masked adapters is
replayed, with the very same input, on the MODEL with adapter A alone, with adapter B alone, and plain; token by
token the outputs must agree where the masks say.
"""
import pytest
import torch

import comfy.model_base
import comfy.model_patcher
from comfyui_personalvideo.sia import SIAError, apply_sia, discover_targets
from comfyui_personalvideo.sia.regional import RegionalAttention
from comfyui_personalvideo.sia.token_mask import frame_of_rows, resize_to_grid, token_grid

import sampling
import tiny_models

pytestmark = pytest.mark.usefixtures("ample_free_memory")   # conftest.py says why

FRAMES, ROWS, COLUMNS = 3, 8, 12        # latent 8x12 (64x96 px): token grids 8x12, 4x6, 2x3


def _three_level_model():
    config = tiny_models.sd15_model_config(tiny_models.sd15_unet_config(channel_mult=(1, 2, 2)))
    base = comfy.model_base.BaseModel(config, device="cpu")
    tiny_models.initialise(base.diffusion_model, 0)
    base.eval()
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"),
                                            offload_device=torch.device("cpu"))


@pytest.fixture
def model():
    return _three_level_model()


def _column_masks(columns_a, columns_b, frames=1):
    """Masks at latent size whose regions are whole columns of the coarsest token grid (4 latent columns)."""
    a, b = torch.zeros(frames, ROWS, COLUMNS), torch.zeros(frames, ROWS, COLUMNS)
    for f in range(frames):
        for column in columns_a[f % len(columns_a)]:
            a[f, :, 4 * column:4 * column + 4] = 1
        for column in columns_b[f % len(columns_b)]:
            b[f, :, 4 * column:4 * column + 4] = 1
    return a, b


def _attention_modules(model):
    found = discover_targets(model.model.diffusion_model)
    modules = dict(model.model.diffusion_model.named_modules())
    return [modules[p] for p in dict.fromkeys(t.path.rsplit(".", 1)[0] for t in found.targets)]


class AttentionRecorder:
    """Records every attn1 call of a run (input, output), or replays recorded inputs into another run."""

    def __init__(self, model, replay=None):
        self.calls, self.replay, self.handles = [], replay, []
        for module in _attention_modules(model):
            self.handles.append(module.register_forward_pre_hook(self._before, with_kwargs=True))
            self.handles.append(module.register_forward_hook(self._after))

    def _before(self, module, args, kwargs):
        if self.replay is None:
            self.calls.append([args[0].clone(), None])
            return None
        recorded = self.replay[len(self.calls)][0]
        self.calls.append([recorded, None])
        kwargs = {k: (recorded if v is args[0] else v) for k, v in kwargs.items()}
        return (recorded,) + tuple(args[1:]), kwargs

    def _after(self, module, args, output):
        self.calls[-1][1] = output.detach().clone()

    def close(self):
        for handle in self.handles:
            handle.remove()


def _run(model, conds, replay=None, steps=4):
    recorder = AttentionRecorder(model, replay)
    try:
        sampling.sample(model, *conds, steps=steps, cfg=2.0, latent=torch.zeros(FRAMES, 4, ROWS, COLUMNS))
    finally:
        recorder.close()
    return recorder.calls


def _conds(model):
    return tiny_models.random_cond(model, 1), tiny_models.random_cond(model, 2)


def _token_masks(mask, tokens, batch):
    """The masks' weights on a call's tokens: [batch, tokens] (rows are cond/uncond x frames)."""
    grid = {ROWS * COLUMNS: (ROWS, COLUMNS), 24: (4, 6), 6: (2, 3)}[tokens]
    weights = resize_to_grid(mask, *grid)
    return weights[[b % FRAMES if mask.shape[0] > 1 else 0 for b in range(batch)]]


@pytest.mark.parametrize("layout", ["complementary", "with a gap", "moving per frame"])
def test_each_region_gets_exactly_its_own_adapter_at_every_resolution(model, make_adapter, layout):
    adapter_a, adapter_b = make_adapter(model, seed=1, name="alice"), make_adapter(model, seed=2, name="bob")
    if layout == "complementary":
        mask_a, mask_b = _column_masks([[0]], [[1, 2]])
    elif layout == "with a gap":
        mask_a, mask_b = _column_masks([[0]], [[2]])
    else:  # the two people walk: A from left to right, B the other way; column 1 between them is nobody's
        mask_a, mask_b = _column_masks([[0], [1], [2]], [[2], [0], [1]], frames=FRAMES)
    both = apply_sia(apply_sia(model, adapter_a, 1.0, 0.75, mask=mask_a)[0], adapter_b, 1.0, 0.75, mask=mask_b)[0]
    conds = _conds(model)
    stacked = _run(both, conds)
    only_a = _run(apply_sia(model, adapter_a, 1.0, 0.75)[0], conds, replay=stacked)
    only_b = _run(apply_sia(model, adapter_b, 1.0, 0.75)[0], conds, replay=stacked)
    plain = _run(model, conds, replay=stacked)

    per_step = len(stacked) // 4
    assert per_step == len(_attention_modules(model)) and len(stacked) == 4 * per_step
    seen = {}
    for index, ((_, out), (_, out_a), (_, out_b), (_, out_p)) in enumerate(zip(stacked, only_a, only_b, plain)):
        if index < 3 * per_step:           # the gate is closed before the last of 4 steps: the plain model, bit for bit
            assert torch.equal(out, out_p)
            continue
        batch, tokens = out.shape[:2]
        assert batch == 2 * FRAMES         # cond and uncond batched, the frames inside each
        w_a, w_b = _token_masks(mask_a, tokens, batch), _token_masks(mask_b, tokens, batch)
        in_a, in_b, outside = w_a == 1, w_b == 1, (w_a == 0) & (w_b == 0)
        assert in_a.any() and in_b.any() and (outside.any() or layout == "complementary")
        torch.testing.assert_close(out[in_a], out_a[in_a], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[in_b], out_b[in_b], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[outside], out_p[outside], rtol=1e-5, atol=1e-6)
        # the adapters do change these tokens: the regions are not equal by accident
        assert not torch.allclose(out_a[in_a], out_p[in_a], atol=1e-4)
        assert not torch.allclose(out_b[in_b], out_p[in_b], atol=1e-4)
        assert not torch.allclose(out_a[in_b], out_b[in_b], atol=1e-4)
        seen[tokens] = seen.get(tokens, 0) + 1
    assert set(seen) == {ROWS * COLUMNS, 24, 6}     # every resolution of the UNet, the middle block included


def test_a_region_moves_with_the_frames(model, make_adapter):
    adapter = make_adapter(model, seed=1)
    moving, _ = _column_masks([[0], [1], [2]], [[]], frames=FRAMES)
    conds = _conds(model)
    stacked = _run(apply_sia(model, adapter, 1.0, 0.75, mask=moving)[0], conds)
    only = _run(apply_sia(model, adapter, 1.0, 0.75)[0], conds, replay=stacked)
    plain = _run(model, conds, replay=stacked)
    out, out_a, out_p = stacked[-1][1], only[-1][1], plain[-1][1]      # the last block, full resolution
    grid = out.reshape(2 * FRAMES, ROWS, COLUMNS, -1)
    for b in range(2 * FRAMES):
        frame = b % FRAMES
        inside = slice(4 * frame, 4 * frame + 4)
        torch.testing.assert_close(grid[b, :, inside], out_a.reshape(grid.shape)[b, :, inside], rtol=1e-5, atol=1e-6)
        others = [c for c in range(COLUMNS) if not 4 * frame <= c < 4 * frame + 4]
        torch.testing.assert_close(grid[b, :, others], out_p.reshape(grid.shape)[b, :, others], rtol=1e-5, atol=1e-6)


def test_full_mask_samples_as_the_unmasked_adapter_and_empty_mask_as_the_plain_model(model, make_adapter):
    adapter = make_adapter(model)
    conds = _conds(model)
    latent = torch.zeros(2, 4, 5, 7)   # odd latent size: the grids 5x7, 3x4, 2x2 are found by rounding up
    whole, _ = sampling.sample(apply_sia(model, adapter, 1.0, 0.75)[0], *conds, cfg=2.0, latent=latent)
    full, _ = sampling.sample(apply_sia(model, adapter, 1.0, 0.75, mask=torch.ones(40, 56))[0], *conds, cfg=2.0,
                              latent=latent)
    plain, _ = sampling.sample(model, *conds, cfg=2.0, latent=latent)
    empty, _ = sampling.sample(apply_sia(model, adapter, 1.0, 0.75, mask=torch.zeros(1, 5, 7))[0], *conds, cfg=2.0,
                               latent=latent)
    assert not torch.allclose(whole, plain, atol=1e-4)
    torch.testing.assert_close(full, whole, rtol=1e-5, atol=1e-6)
    assert torch.equal(empty, plain)


def test_soft_edges_blend_the_region_and_the_plain_attention(model, make_adapter):
    adapter = make_adapter(model)
    soft = torch.full((1, ROWS, COLUMNS), 0.25)
    conds = _conds(model)
    masked = _run(apply_sia(model, adapter, 1.0, 0.0, mask=soft)[0], conds, steps=2)
    only = _run(apply_sia(model, adapter, 1.0, 0.0)[0], conds, replay=masked, steps=2)
    plain = _run(model, conds, replay=masked, steps=2)
    for (_, out), (_, out_a), (_, out_p) in zip(masked, only, plain):
        torch.testing.assert_close(out, 0.75 * out_p + 0.25 * out_a, rtol=1e-4, atol=1e-5)


def test_overlapping_masks_share_the_tokens_they_both_claim(model, make_adapter):
    adapter_a, adapter_b = make_adapter(model, seed=1), make_adapter(model, seed=2)
    ones = torch.ones(1, ROWS, COLUMNS)
    conds = _conds(model)
    both = apply_sia(apply_sia(model, adapter_a, 1.0, 0.0, mask=ones)[0], adapter_b, 1.0, 0.0, mask=ones)[0]
    stacked = _run(both, conds, steps=2)
    only_a = _run(apply_sia(model, adapter_a, 1.0, 0.0)[0], conds, replay=stacked, steps=2)
    only_b = _run(apply_sia(model, adapter_b, 1.0, 0.0)[0], conds, replay=stacked, steps=2)
    for (_, out), (_, out_a), (_, out_b) in zip(stacked, only_a, only_b):
        torch.testing.assert_close(out, 0.5 * out_a + 0.5 * out_b, rtol=1e-4, atol=1e-5)


def test_the_models_connected_are_left_as_they_were(model, make_adapter):
    mask_a, mask_b = _column_masks([[0]], [[1, 2]])
    first = apply_sia(model, make_adapter(model, seed=1), 1.0, 0.75, mask=mask_a)[0]
    second = apply_sia(first, make_adapter(model, seed=2), 1.0, 0.75, mask=mask_b)[0]
    assert not model.object_patches and not model.model_options.get("transformer_options", {}).get("patches")
    regional = [p for p in first.object_patches.values() if isinstance(p, RegionalAttention)]
    stacked = [p for p in second.object_patches.values() if isinstance(p, RegionalAttention)]
    assert len(regional) == len(stacked) == len(_attention_modules(model))
    assert {len(p.regions) for p in regional} == {1} and {len(p.regions) for p in stacked} == {2}


def test_mask_input_errors_name_the_input(model, make_adapter):
    adapter = make_adapter(model)
    with pytest.raises(SIAError, match="must be a MASK"):
        apply_sia(model, adapter, mask=torch.zeros(1, 8, 8, 3))          # an IMAGE
    with pytest.raises(SIAError, match="must be a MASK"):
        apply_sia(model, adapter, mask="left")
    with pytest.raises(SIAError, match="is empty"):
        apply_sia(model, adapter, mask=torch.zeros(0, 8, 8))
    with pytest.raises(SIAError, match="NaN or infinite"):
        apply_sia(model, adapter, mask=torch.full((8, 8), float("nan")))
    two_frames = apply_sia(model, adapter, 1.0, 0.0, mask=torch.ones(2, 8, 8))[0]
    with pytest.raises(SIAError, match="has 2 frames but the video being sampled has 3"):
        sampling.sample(two_frames, *_conds(model), steps=2, cfg=2.0, latent=torch.zeros(3, 4, 8, 8))


def test_token_grid_and_frames_follow_the_hosts_options():
    assert token_grid(12, {"original_shape": [2, 4, 5, 7]}) == (3, 4)
    assert token_grid(4, {"original_shape": [2, 4, 5, 7]}) == (2, 2)
    assert token_grid(24, {"activations_shape": [6, 320, 4, 6], "original_shape": [6, 4, 8, 12]}) == (4, 6)
    with pytest.raises(SIAError, match="cannot place the region mask"):
        token_grid(13, {"original_shape": [1, 4, 8, 8]})
    assert frame_of_rows(6, {"cond_or_uncond": [0, 1]}, 3) == [0, 1, 2, 0, 1, 2]
    assert frame_of_rows(4, {"cond_or_uncond": [0, 1]}, 1) == [0, 0, 0, 0]
    # an AnimateDiff-Evolved context window of frames 4..7 of 10, cond and uncond batched
    window = {"cond_or_uncond": [0, 1], "ad_params": {"sub_idxs": [4, 5, 6, 7], "full_length": 10}}
    assert frame_of_rows(8, window, 10) == [4, 5, 6, 7] * 2
    with pytest.raises(SIAError, match="has 8 frames but the video being sampled has 10"):
        frame_of_rows(8, window, 8)


def test_lora_weight_patches_on_the_attention_stay_in_every_regions_attention(model, make_adapter):
    """A style LoRA on q/k/v/out of the self-attention (weight patches) acts in both regions and outside them."""
    import os

    import folder_paths
    import nodes

    name = "regions_style.safetensors"
    tiny_models.save_kohya_lora(os.path.join(folder_paths.get_folder_paths("loras")[0], name), model,
                                lambda p: ".attn1." in p)
    (styled,) = nodes.NODE_CLASS_MAPPINGS["LoraLoaderModelOnly"]().load_lora_model_only(model, name, 1.0)
    adapter_a, adapter_b = make_adapter(model, seed=1), make_adapter(model, seed=2)
    mask_a, mask_b = _column_masks([[0]], [[2]])
    both = apply_sia(apply_sia(styled, adapter_a, 1.0, 0.0, mask=mask_a)[0], adapter_b, 1.0, 0.0, mask=mask_b)[0]
    conds = _conds(model)
    stacked = _run(both, conds, steps=2)
    only_a = _run(apply_sia(styled, adapter_a, 1.0, 0.0)[0], conds, replay=stacked, steps=2)
    plain_styled = _run(styled, conds, replay=stacked, steps=2)
    plain = _run(model, conds, replay=stacked, steps=2)
    (_, out), (_, out_a), (_, out_s), (_, out_p) = stacked[-1], only_a[-1], plain_styled[-1], plain[-1]
    w_a, w_b = _token_masks(mask_a, out.shape[1], out.shape[0]), _token_masks(mask_b, out.shape[1], out.shape[0])
    in_a, outside = w_a == 1, (w_a == 0) & (w_b == 0)
    torch.testing.assert_close(out[in_a], out_a[in_a], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[outside], out_s[outside], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out_s[outside], out_p[outside], atol=1e-4)      # the LoRA does act there
