"""The trainer end to end on the real host with tiny models: both stages, files, restoration, errors."""
import os

import numpy as np
import pytest
import torch

import comfy.model_management
import folder_paths
import nodes
from comfyui_personalvideo.nodes.train_identity import TrainPersonalVideoIdentity
from comfyui_personalvideo.sia import discover_targets, load_adapter
from comfyui_personalvideo.training import identity_files, run_state
from comfyui_personalvideo.training.errors import TrainingError
from comfyui_personalvideo.training.face.errors import FaceStackError
from comfyui_personalvideo.training.identity_training import train_identity

import face_fixtures as ff
import tiny_models
from face_fixtures import tiny_onnx  # noqa: F401

pytestmark = pytest.mark.usefixtures("ample_free_memory")   # conftest.py says why

SMALL = dict(ti_steps=4, ti_learning_rate=1e-2, ti_batch_size=2, sia_iterations=3, sia_learning_rate=1e-2,
             sia_rank=4, reg_lambda=1e-2, frames=2, width=64, height=64, sampling_steps=4, seed=5)


@pytest.fixture(scope="module", autouse=True)
def _model_folders_as_found():
    """The identity files this module trains are removed after it, so later modules that train the same names
    (alice) find the folders as they were."""
    def files():
        return {os.path.join(d, f) for kind in ("sia", "embeddings") for d in folder_paths.get_folder_paths(kind)
                if os.path.isdir(d) for f in os.listdir(d) if os.path.isfile(os.path.join(d, f))}

    before = files()
    yield
    for path in files() - before:
        os.unlink(path)


@pytest.fixture(scope="module")
def face_analysis(tmp_path_factory, tiny_onnx):  # noqa: F811
    """Detector that finds one large face in the middle of any textured frame; tiny random recogniser."""
    return ff.centre_face_analysis(tmp_path_factory.mktemp("insightface-train"), recognizer=tiny_onnx,
                                   encoder_cache=tmp_path_factory.mktemp("enc-cache"))


@pytest.fixture(scope="module")
def photo():
    img = ff.photo_image("astronaut").movedim(-1, 1)
    return torch.nn.functional.interpolate(img, size=(64, 64), mode="area").movedim(1, -1).contiguous()


@pytest.fixture(scope="module")
def parts():
    with torch.inference_mode():
        return tiny_models.tiny_sd15_model(seed=0), tiny_models.tiny_clip(), tiny_models.tiny_vae()


def snapshot(*modules):
    out = []
    with torch.inference_mode(False):
        for m in modules:
            out.append({n: (id(t), t.detach().clone()) for n, t in list(m.named_parameters()) + list(m.named_buffers())})
    return out


def assert_same(before, after):
    for b, a in zip(before, after):
        assert b.keys() == a.keys()
        for k in b:
            assert b[k][0] == a[k][0], f"{k} was replaced"
            assert torch.equal(b[k][1], a[k][1]), f"{k} changed"


def generate(model, clip, vae, text="a photo of a person"):
    import sampling

    with torch.inference_mode():
        (pos,) = nodes.CLIPTextEncode().encode(clip, text)
        (neg,) = nodes.CLIPTextEncode().encode(clip, "")
        latent, _ = sampling.sample(model, pos, neg, steps=4, frames=2, size=64, seed=3)
        return pos[0][0].clone(), vae.decode(latent).clone()


def identity_files_of(name):
    return [p for p in identity_files.identity_paths(name).values() if os.path.exists(p)]


def leftovers():
    """Hidden files in the model folders (temporary files); the run-state folder of resumable runs aside."""
    found = []
    for kind in ("sia", "embeddings"):
        for d in folder_paths.get_folder_paths(kind):
            if os.path.isdir(d):
                found += [f for f in os.listdir(d) if f.startswith(".") and f != run_state.FOLDER]
    return found


def run(parts, face_analysis, photo, name, **overrides):
    model, clip, vae = parts
    kwargs = dict(SMALL, **overrides)
    with torch.inference_mode():
        return train_identity(model, clip, vae, photo, face_analysis, name, "man",
                              "{token} {class_word} walking on a beach\n{token} {class_word} reading", **kwargs)


@pytest.fixture(scope="module")
def trained(parts, face_analysis, photo):
    model, clip, vae = parts
    before_out = generate(model, clip, vae)
    before = snapshot(model.model, clip.cond_stage_model, vae.first_stage_model)
    result = run(parts, face_analysis, photo, "alice")
    return result, before, before_out


def test_user_models_are_bit_identical_afterwards(parts, trained):
    model, clip, vae = parts
    result, before, before_out = trained
    assert_same(before, snapshot(model.model, clip.cond_stage_model, vae.first_stage_model))
    after_out = generate(model, clip, vae)
    assert torch.equal(before_out[0], after_out[0]) and torch.equal(before_out[1], after_out[1])
    assert not model.object_patches and not model.patches  # the adapter went on a clone only


def test_only_token_and_adapter_change_and_are_saved(parts, trained):
    result, _, _ = trained
    adapter, vector = result["adapter"], result["vector"]
    assert any(float(u.abs().max()) > 0 for u in adapter.up.values())  # trained away from the no-op start
    files = identity_files_of("alice")
    assert len(files) == 2 and not leftovers()
    loaded = load_adapter(result["paths"]["sia"])
    for p in adapter.paths:
        assert torch.equal(loaded.down[p], adapter.down[p]) and torch.equal(loaded.up[p], adapter.up[p])
    assert torch.equal(loaded.embedding.reshape(-1), vector.reshape(-1))
    assert loaded.info.trigger == result["trigger"] == "embedding:alice man"
    assert loaded.info.training["sia"]["iterations"] == 3 and loaded.info.training["textual_inversion"]["steps"] == 4
    assert result["curve"].ndim == 4 and result["curve"].shape[-1] == 3
    # the trained frames of iterations 0 and 1 (start and middle), then both frames of the last video
    history = result["history"]
    assert [it for it, _ in history.snapshots] == [0, 1] and result["preview"].shape == (4, 64, 64, 3)
    assert torch.equal(result["preview"][:2], torch.cat([f.movedim(1, -1) for _, f in history.snapshots]))
    assert len(result["token_losses"]) == 4 and len(result["history"].loss) == 3


def test_embedding_works_in_comfyui_prompts_at_once(parts, trained):
    _, clip, _ = parts
    result, _, _ = trained
    with torch.inference_mode():
        (with_token,) = nodes.CLIPTextEncode().encode(clip, "embedding:alice man")
        (plain,) = nodes.CLIPTextEncode().encode(clip, "man")
    assert not torch.equal(with_token[0][0], plain[0][0])
    # ComfyUI's own loading gives the trained vector, as the trainer's own injection does
    from comfyui_personalvideo.training.textual_inversion import TokenPrompts

    ours = TokenPrompts(clip, "man").conditioning("{token} {class_word}", result["vector"])[0][0]
    torch.testing.assert_close(ours, with_token[0][0].float(), atol=1e-5, rtol=0)


def test_name_collision_is_refused_before_training_with_error(parts, face_analysis, photo, trained):
    path = trained[0]["paths"]["sia"]
    stamp = os.path.getmtime(path), open(path, "rb").read()
    with pytest.raises(TrainingError, match="exists already.*if_exists to overwrite"):
        run(parts, face_analysis, photo, "alice", if_exists="error")
    assert (os.path.getmtime(path), open(path, "rb").read()) == stamp


def test_names_are_sanitised():
    assert identity_files.sanitise_name("../../etc/passwd") == "etc_passwd"
    assert identity_files.sanitise_name(" Alice Smith ") == "Alice_Smith"
    sia_dir = folder_paths.get_folder_paths("sia")[0]
    assert os.path.dirname(identity_files.identity_paths("../x")["sia"]) == sia_dir
    for bad in ("", "..", "/", "con"):
        with pytest.raises(TrainingError, match="identity_name"):
            identity_files.sanitise_name(bad)


def _refused_cleanly(parts, name, before, error, match, call):
    """``call()`` raises ``error`` matching ``match``; no file of ``name``, no temporary file, models unchanged."""
    model, clip, vae = parts
    with pytest.raises(error, match=match):
        call()
    assert identity_files_of(name) == [] and not leftovers()
    assert_same(before, snapshot(model.model, clip.cond_stage_model, vae.first_stage_model))
    assert not model.object_patches and not model.patches


@pytest.fixture
def before(parts):
    model, clip, vae = parts
    return snapshot(model.model, clip.cond_stage_model, vae.first_stage_model)


@pytest.mark.parametrize("stage", ["token", "adapter"])
def test_cancel_mid_run_leaves_nothing_and_model_restored(parts, face_analysis, photo, before, stage):
    def hook(at, i, loss, sim):
        if at == stage and i == 0:
            comfy.model_management.interrupt_current_processing(True)

    _refused_cleanly(parts, "cancelled", before, comfy.model_management.InterruptProcessingException, None,
                     lambda: run(parts, face_analysis, photo, "cancelled", progress_hook=hook, resume=False))
    # stage 1 done, the adapter stage cancelled: the token is kept for a resume (no identity file, though)
    assert os.path.exists(run_state.state_folder("cancelled")) == (stage == "adapter")
    run_state.RunState("cancelled", {}).clear()


def test_no_face_in_references_is_a_clear_error(parts, face_analysis, before):
    blank = torch.full((2, 64, 64, 3), 0.5)
    _refused_cleanly(parts, "blank", before, FaceStackError, "none of the 2 reference image",
                     lambda: run(parts, face_analysis, blank, "blank"))


def _tiny_sdxl_layout_model():
    """An SDXL-family MODEL (ComfyUI's SDXL classes, small widths) on the meta device: no memory, no weights."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models

    unet = dict(tiny_models.sd15_unet_config(), use_linear_in_transformer=True, context_dim=64,
                adm_in_channels=2816, num_classes="sequential", num_head_channels=16, num_heads=-1,
                transformer_depth=[0, 0, 2, 2], transformer_depth_output=[0, 0, 0, 2, 2, 2],
                transformer_depth_middle=2)
    config = comfy.supported_models.SDXL(dict(unet))
    config.unet_config.update(num_heads=-1, num_head_channels=16)
    return comfy.model_patcher.ModelPatcher(comfy.model_base.SDXL(config, device="meta"), "cpu", "cpu")


def test_non_sd15_inputs_are_refused_before_any_work(parts, face_analysis, photo, before):
    from types import SimpleNamespace

    model, clip, vae = parts
    xl = _tiny_sdxl_layout_model()
    assert discover_targets(xl.model.diffusion_model).targets   # its attention alone would not tell
    for what, kwargs in (("model", dict(model=xl)), ("image_model", dict(image_model=xl))):
        args = dict(dict(model=model, clip=clip, vae=vae), **kwargs)
        _refused_cleanly(parts, "x", before, TrainingError, f"the {what} input is not an SD1.5-family model "
                         r"\(it is SDXL\)", lambda: train_identity(
                             reference_images=photo, face_analysis=None, identity_name="x", class_word="man",
                             prompts="{token} {class_word}", **dict(SMALL, **args)))
    wide_clip = tiny_models.tiny_clip(hidden=48)
    with torch.inference_mode():
        _refused_cleanly(parts, "x", before, TrainingError, "CLIP gives 48-wide text features but the MODEL expects "
                         "32", lambda: train_identity(model, wide_clip, vae, photo, None, "x", "man",
                                                       "{token} {class_word}", **SMALL))
    # a CLIP that is not CLIP-L at all (SDXL's has clip_l and clip_g): a stand-in with those attributes only
    fake_clip = SimpleNamespace(cond_stage_model=SimpleNamespace(clip_l=None, clip_g=None))
    with torch.inference_mode():
        _refused_cleanly(parts, "x", before, TrainingError, "not an SD1.5 text encoder", lambda: train_identity(
            model, fake_clip, vae, photo, None, "x", "man", "{token} {class_word}", **SMALL))


def test_bad_settings_are_refused_before_any_work(parts, photo, before):
    model, clip, vae = parts
    for overrides, match in ((dict(identity_name=".."), "identity_name"), (dict(class_word="{x}"), "class_word"),
                             (dict(prompts=" \n# comment"), "prompts input is empty"),
                             (dict(width=100), "width must be a multiple of 8"),
                             (dict(sampling_steps=1), "sampling_steps must be at least 2")):
        kwargs = dict(dict(SMALL, identity_name="x", class_word="man", prompts="{token} {class_word}"), **overrides)
        with torch.inference_mode():
            _refused_cleanly(parts, kwargs["identity_name"].strip(".") or "x", before, TrainingError, match,
                             lambda: train_identity(model, clip, vae, photo, None, **kwargs))


@pytest.fixture
def full_disk(monkeypatch):
    """The disk fills up while the adapter file is written (after the token file was staged)."""
    import safetensors.torch

    real = safetensors.torch.save_file

    def failing(tensors, path, metadata=None):
        if any(k.startswith("lora_unet_") for k in tensors):
            raise OSError(28, "No space left on device")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", failing)


def test_disk_write_failure_leaves_no_files(parts, face_analysis, photo, full_disk, before):
    _refused_cleanly(parts, "diskfull", before, TrainingError, "No space left.*Nothing was saved",
                     lambda: run(parts, face_analysis, photo, "diskfull", ti_steps=0, sia_iterations=1))


def test_failure_keeps_an_existing_identity_when_overwriting(parts, face_analysis, photo, trained, full_disk):
    """if_exists=overwrite and the disk fails while writing: the identity that was there is still there, intact."""
    paths = trained[0]["paths"]
    kept = {k: open(p, "rb").read() for k, p in paths.items()}
    with pytest.raises(TrainingError, match="Nothing was saved"):
        run(parts, face_analysis, photo, "alice", ti_steps=0, sia_iterations=1, if_exists="overwrite")
    assert {k: open(p, "rb").read() for k, p in paths.items()} == kept and not leftovers()


def test_node_declares_inputs_outputs_and_tooltips():
    spec = TrainPersonalVideoIdentity.INPUT_TYPES()
    assert TrainPersonalVideoIdentity.RETURN_TYPES == ("SIA_ADAPTER", "STRING", "IMAGE", "IMAGE", "FLOAT", "FLOAT")
    assert TrainPersonalVideoIdentity.RETURN_NAMES[4:] == ("final_similarity", "identity_score")
    req = spec["required"]
    for key, kind in (("model", "MODEL"), ("clip", "CLIP"), ("vae", "VAE"), ("reference_images", "IMAGE"),
                      ("face_analysis", "FACEANALYSIS"), ("identity_name", "STRING"), ("class_word", "STRING"),
                      ("prompts", "STRING")):
        assert req[key][0] == kind
    assert spec["optional"]["image_model"][0] == "MODEL"
    defaults = {k: v[1].get("default") for k, v in req.items() if len(v) > 1}
    assert (defaults["ti_steps"], defaults["ti_learning_rate"], defaults["ti_batch_size"]) == (400, 1e-3, 4)
    assert (defaults["sia_iterations"], defaults["sia_learning_rate"], defaults["sampling_steps"]) == (400, 1e-4, 4)
    assert (defaults["frames"], defaults["width"], defaults["height"]) == (16, 512, 512)
    assert defaults["prompts"].count("\n") == 49
    assert req["if_exists"][0] == ["reuse", "overwrite", "error"] and defaults["if_exists"] == "reuse"
    for group in spec.values():
        for key, value in group.items():
            assert value[1].get("tooltip"), key
    assert nodes.NODE_CLASS_MAPPINGS["PV_TrainIdentity"] is TrainPersonalVideoIdentity
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["PV_TrainIdentity"] == "Train PersonalVideo Identity"


class _RecordingServer:
    """Stands in for ComfyUI's PromptServer.instance (no websocket client in-process): records the texts."""

    last_node_id = "17"

    def __init__(self, fail=False):
        self.texts, self.fail = [], fail

    def send_progress_text(self, text, node_id):
        if self.fail:
            raise ConnectionError("socket closed")
        self.texts.append((node_id, text))


def _install_server(monkeypatch, instance):
    import sys
    from types import SimpleNamespace

    if "server" in sys.modules:
        monkeypatch.setattr(sys.modules["server"].PromptServer, "instance", instance, raising=False)
    else:
        monkeypatch.setitem(sys.modules, "server", SimpleNamespace(PromptServer=SimpleNamespace(instance=instance)))


def _record_progress(monkeypatch):
    import comfy.utils

    calls = []
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK",
                        lambda value, total, preview=None, **kw: calls.append((value, total, preview)))
    return calls


def test_progress_shows_loss_similarity_and_preview_frames(parts, face_analysis, photo, monkeypatch):
    from PIL import Image

    calls = _record_progress(monkeypatch)
    server = _RecordingServer()
    _install_server(monkeypatch, server)
    try:   # modern hosts tell a node its id through the executing context; older ones through the server
        from comfy_execution.utils import CurrentNodeContext
        context, node = CurrentNodeContext("prompt-1", "42"), "42"
    except ImportError:
        import contextlib
        context, node = contextlib.nullcontext(), "17"
    with context:
        run(parts, face_analysis, photo, "progress")
    ti_steps, iterations = SMALL["ti_steps"], SMALL["sia_iterations"]
    assert [c[:2] for c in calls] == [(v, ti_steps + iterations) for v in range(1, ti_steps + iterations + 1)]
    assert all(c[2] is None for c in calls[:ti_steps])           # no previews while the token trains
    previews = {value - ti_steps - 1: c for value, _, c in calls[ti_steps:] if c is not None}
    assert {0, iterations - 1} <= set(previews)                    # first and last iteration at least
    for kind, image, max_size in previews.values():
        assert kind == "JPEG" and isinstance(image, Image.Image) and max_size >= 64
        assert image.size == (SMALL["width"], SMALL["height"]) and image.mode == "RGB"
        assert np.asarray(image).std() > 0                        # a decoded frame, not a blank
    assert [n for n, _ in server.texts] == [node] * (ti_steps + iterations)
    assert all("loss" in t for _, t in server.texts)
    assert all("face similarity" in t for _, t in server.texts[ti_steps:])
    assert server.texts[-1][1].startswith(f"adapter (stage 2) {iterations}/{iterations}")


def test_progress_without_a_server_or_with_a_failing_one(monkeypatch):
    from comfyui_personalvideo.training.progress import TrainingProgress

    calls = _record_progress(monkeypatch)
    frame = torch.rand(1, 3, 16, 16)
    for instance in (None, _RecordingServer(fail=True)):
        _install_server(monkeypatch, instance)
        ticks = iter([0.0, 0.5, 1.0, 2.5, 3.0])
        shown = TrainingProgress(1, 5, preview_interval_s=2.0, clock=lambda: next(ticks))
        shown.token_step(0, 0.5)
        for it in range(5):
            shown.adapter_iteration(it, 0.25 if it != 2 else float("nan"), 0.1, frame)
        with_preview = [i for i, (_, _, p) in enumerate(calls[-5:]) if p is not None]
        assert with_preview == [0, 3, 4]                   # first, then throttled to every 2 s, and the last
        assert "loss n/a" in shown.texts[3] and len(shown.texts) == 6


def test_results_are_written_first_and_kept_when_the_preview_fails(parts, face_analysis, photo, before,
                                                                   monkeypatch):
    """The files are written as soon as stage 2 ends; a failure after that (here: drawing the loss curve)
    keeps them and says so. The face encoder is back on the CPU whatever happens."""
    from comfyui_personalvideo.sia.file_format import load_adapter as load
    from comfyui_personalvideo.training import curves
    from comfyui_personalvideo.training.face import analysis

    encoder = analysis.load_face_stack(face_analysis).encoder()
    moves = []
    real_to = encoder.to
    monkeypatch.setattr(encoder, "to", lambda device, *a, **k: (moves.append(str(device)), real_to(device, *a, **k))[1])

    def broken(series, **kwargs):
        raise MemoryError("no memory left for the chart")

    monkeypatch.setattr(curves, "render_curves", broken)
    with pytest.raises(TrainingError, match="'late' is trained and saved.*MemoryError.*no need to train again"):
        run(parts, face_analysis, photo, "late", ti_steps=1, sia_iterations=1)
    files = identity_files_of("late")
    assert len(files) == 2 and not leftovers()
    assert load(identity_files.identity_paths("late")["sia"]).info.trigger == "embedding:late man"
    assert moves and moves[-1] == "cpu" and next(encoder.parameters()).device.type == "cpu"
    model, clip, vae = parts
    assert_same(before, snapshot(model.model, clip.cond_stage_model, vae.first_stage_model))


def test_node_takes_an_image_list_of_photos_of_different_sizes(parts, face_analysis, photo):
    """Two Load Image nodes with photos of different sizes and shapes, as ComfyUI hands them to a node
    with INPUT_IS_LIST: every input a list, the photos one tensor each."""
    model, clip, vae = parts
    wide = ff.photo_image("grace_hopper").movedim(-1, 1)
    wide = torch.nn.functional.interpolate(wide, size=(72, 136), mode="area").movedim(1, -1).contiguous()
    inputs = dict(SMALL, model=model, clip=clip, vae=vae, face_analysis=face_analysis, identity_name="listed",
                  class_word="man", prompts="{token} {class_word} reading", if_exists="error", ti_steps=2,
                  sia_iterations=1)
    listed = {k: [v] for k, v in inputs.items()}
    listed["reference_images"] = [photo, wide]
    assert TrainPersonalVideoIdentity.INPUT_IS_LIST
    with torch.inference_mode():
        out = TrainPersonalVideoIdentity().train(**listed)
    adapter = out["result"][0]
    assert adapter.info.training["references"] == 2
    assert len(identity_files_of("listed")) == 2


def test_same_seed_same_identity(parts, face_analysis, photo):
    """Both stages, crops included, twice with one seed: the very same token and adapter."""
    a = run(parts, face_analysis, photo, "seeded_a", ti_steps=2, sia_iterations=2)
    b = run(parts, face_analysis, photo, "seeded_b", ti_steps=2, sia_iterations=2)
    assert torch.equal(a["vector"], b["vector"]) and a["token_losses"] == b["token_losses"]
    assert a["history"].loss == b["history"].loss
    for p in a["adapter"].paths:
        assert torch.equal(a["adapter"].up[p], b["adapter"].up[p])
        assert torch.equal(a["adapter"].down[p], b["adapter"].down[p])
