"""The `personalvideo` command end to end on small single files (an SD1.5-layout checkpoint, an AnimateDiff-layout
motion-module file, a photo), and what it does with bad input."""
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from comfyui_personalvideo.engine import cli, models  # noqa: E402
from comfyui_personalvideo.sia import load_adapter  # noqa: E402

import engine_models  # noqa: E402
import face_fixtures as ff  # noqa: E402
import host  # noqa: E402
from face_fixtures import tiny_onnx  # noqa: E402,F401

PACK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_onnx):  # noqa: F811
    root = tmp_path_factory.mktemp("cli")
    ff.centre_face_pack(root / "insightface", recognizer=tiny_onnx)
    return {"root": root, "checkpoint": engine_models.save_tiny_checkpoint(str(root / "tiny_sd15.safetensors")),
            "motion": models.save_motion_module(engine_models.tiny_motion_adapter(), str(root / "motion.safetensors")),
            "photo": ff.save_small_photo(root / "photo.png"), "faces": str(root / "insightface"),
            "tokenizer": os.path.join(host.host_root(), "comfy", "sd1_tokenizer")}


def common(files):
    return ["--checkpoint", files["checkpoint"], "--motion-model", files["motion"], "--tokenizer", files["tokenizer"],
            "--models-dir", str(files["root"] / "models"), "--device", "cpu"]


SMALL_TRAIN = ["--ti-steps", "2", "--ti-batch-size", "1", "--sia-iterations", "2", "--frames", "2", "--width", "64",
               "--height", "64"]


def test_motion_module_files_round_trip_in_the_animatediff_layout(files):
    from safetensors.torch import load_file

    sd = load_file(files["motion"])
    assert any(".temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight" in k for k in sd)
    assert not any(".attn1." in k or k.endswith(".pe") for k in sd)
    back = models.motion_adapter_from_file(files["motion"])
    original = engine_models.tiny_motion_adapter().state_dict()
    mine = back.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in original.items() if not k.endswith(".pe"))  # pe: computed


def test_train_then_generate_from_the_command_line(files, capsys):
    rc = cli.main(["train", "--photos", files["photo"], "--name", "bob", "--class-word", "man", "--faces",
                   files["faces"]] + common(files) + SMALL_TRAIN)
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "use it with: embedding:bob man" in out.out and "adapter" in out.err  # tqdm bars on stderr
    adapter = load_adapter(str(files["root"] / "models" / "sia" / "bob.safetensors"))
    assert adapter.info.training["motion_modules"] is True and adapter.embedding is not None
    training = adapter.info.training     # what the node writes too: the record, the history, the independent score
    assert len(training["record"]["photos"]) == 1 and training["record"]["settings"]["class_word"] == "man"
    assert len(training["history"]["adapter_loss"]) == 2 and "face_similarity" in training["identity_score"]

    video = files["root"] / "bob.gif"
    rc = cli.main(["generate", "--identity", "bob", "--prompt", "walking on a beach", "--output", str(video),
                   "--frames", "2", "--width", "64", "--height", "64", "--steps", "4", "--cfg", "1.5"]
                  + common(files))
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "adapter on step(s) 4 of 4" in out.out
    from PIL import Image

    with Image.open(video) as im:
        assert im.n_frames == 2 and im.size == (64, 64)

    rc = cli.main(["train", "--photos", files["photo"], "--name", "bob", "--class-word", "man", "--faces",
                   files["faces"]] + common(files) + SMALL_TRAIN)
    assert rc == cli.EXIT_INPUT and "exists already" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["generate", "--prompt", "x", "--output", "o.gif", "--checkpoint", "missing.safetensors"], "not found"),
    (["generate", "--identity", "nobody", "--prompt", "x", "--output", "o.gif", "--checkpoint", "x",
      "--models-dir", "/nonexistent"], "identity 'nobody' not found"),
])
def test_bad_input_is_one_clear_line_and_exit_code_1(argv, message, capsys):
    assert cli.main(argv) == cli.EXIT_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path, capsys, files):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a safetensors file")
    argv = ["generate", "--prompt", "x", "--output", str(tmp_path / "o.gif"), "--checkpoint", str(bad),
            "--tokenizer", files["tokenizer"]]
    assert cli.main(argv) == cli.EXIT_INPUT
    assert str(bad) in capsys.readouterr().err


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--name", "x"])
    assert exc.value.code == cli.EXIT_USAGE


def test_the_command_runs_from_the_pack_folder_without_comfyui_diffusers_or_ray_loaded():
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for args in (["--help"], ["train", "--help"], ["generate", "--help"], ["train-many", "--help"],
                 ["score", "--help"]):
        run = subprocess.run([sys.executable, os.path.join(PACK, "engine")] + args, capture_output=True, text=True,
                             env=env, cwd=str(PACK), timeout=120)
        assert run.returncode == 0, run.stderr
        assert "usage:" in run.stdout
    probe = ("import runpy, sys; sys.argv = ['engine', '--help']\n"
             "try:\n    runpy.run_path(sys.argv_path, run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('diffusers', 'peft', 'ray', 'folder_paths', 'comfy') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", probe.replace("sys.argv_path", repr(os.path.join(PACK, "engine")))],
                         capture_output=True, text=True, env=env, cwd=str(PACK), timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_animatelcm_keys_of_animatediff_evolved_map_onto_the_engines_motion_adapter_exactly():
    """The key layout of an AnimateLCM file (as AnimateDiff-Evolved builds it, SD1.5 widths, on the meta device:
    no memory) against diffusers' MotionAdapter from the shipped config, both ways."""
    import full_models
    from comfyui_personalvideo.engine import checkpoint_keys
    from comfyui_personalvideo.engine.shipped_configs import shipped_config
    from diffusers import MotionAdapter

    if not full_models.has_animatediff_evolved():
        pytest.skip("AnimateDiff-Evolved is not installed in this ComfyUI host")
    ad, sd, info = full_models.animatelcm_layout("AnimateLCM_layout.safetensors")
    with torch.device("meta"):
        theirs = {k: v for k, v in ad.AnimateDiffModel(sd, info).state_dict().items() if "pos_encoder" not in k}
        config = checkpoint_keys.motion_layout(checkpoint_keys.motion_to_diffusers(theirs),
                                               shipped_config("animatelcm_motion"))
        ours = MotionAdapter.from_config(config).state_dict()
    mapped = checkpoint_keys.motion_to_diffusers(theirs)
    assert set(mapped) == {k for k in ours if not k.endswith(".pe")}
    assert all(tuple(mapped[k].shape) == tuple(ours[k].shape) for k in mapped)
    assert set(checkpoint_keys.motion_from_diffusers(ours)) == set(theirs)
