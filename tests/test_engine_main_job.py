"""The main job's engine part (tools/main_job_engine.py) on small files: the same base layout the main job makes
(checkpoint, face pack, reference photo), a small motion-module file already in place; the engine then trains and
generates in child processes and the report says where things ran."""
import os
import shutil
from types import SimpleNamespace

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")

# the main job's part, like tests/test_main_job.py: the pinned lane runs it (the newest lane's engine tests cover
# diffusers' and peft's newest releases: test_engine_cli, test_engine_interop, test_engine_training, ...)
pytestmark = pytest.mark.slow

import host  # noqa: E402
from pv_tools import main_job_engine  # noqa: E402
from test_engine_cli import files  # noqa: E402,F401
from face_fixtures import tiny_onnx  # noqa: E402,F401


def test_the_engine_part_trains_and_generates_an_animation(files, tmp_path):  # noqa: F811
    base, out = tmp_path / "base", tmp_path / "out"
    models = base / "models"
    for folder in ("checkpoints", "animatediff_models", "input"):
        (models / folder if folder != "input" else base / folder).mkdir(parents=True)
    shutil.copy(files["checkpoint"], models / "checkpoints" / "pv_random_sd15.safetensors")
    shutil.copy(files["motion"], models / "animatediff_models" / main_job_engine.MOTION_FILE)
    shutil.copytree(files["faces"], models / "insightface")
    shutil.copy(files["photo"], base / "input" / "reference.png")
    out.mkdir()
    settings = SimpleNamespace(output=str(out), ti_steps=2, sia_iterations=2, train_frames=2, frames=2, size=64,
                               steps=4, seed=0)
    run = SimpleNamespace(settings=settings, files={}, workflows={})
    main_job_engine.engine_video(run, host.host_root(), base)
    assert "error" not in run.workflows["engine"], (run.workflows, (out / "engine.log").read_text()[-3000:])
    from PIL import Image

    with Image.open(run.files["engine_animation"][0]) as anim:
        assert anim.format == "WEBP" and anim.n_frames == 2 and anim.size == (64, 64)
    assert all(os.path.getsize(p) > 0 for p in run.files["engine_identity"])
    log = (out / "engine.log").read_text()
    assert "adapter on step(s) 4 of 4" in log and "Traceback" not in log
