"""The main job (scripts/main_job = python -m tools.main_job), reduced, on the test host.

It runs as users run it, in a process of its own with its own scratch host; it reuses the
session's random SD1.5 checkpoint (--checkpoint) instead of building another.
"""
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest
from PIL import Image

import full_models
import host

pytestmark = [pytest.mark.server, pytest.mark.slow]
# the engine's part (--engine: a second training and video through diffusers) is checked on small files by
# tests/test_engine_main_job.py
REDUCED = ["--frames", "2", "--train-frames", "2", "--steps", "2", "--ti-steps", "1", "--sia-iterations", "1",
           "--size", "64"]


def main_job_command(out, checkpoint, *extra):
    return [sys.executable, "-m", "tools.main_job", "--output", str(out), "--checkpoint", str(checkpoint),
            *REDUCED, *extra]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _server_is_gone(stdout: str) -> bool:
    url = re.search(r"ComfyUI is up at (http://127\.0\.0\.1:\d+)", stdout).group(1)
    try:
        urllib.request.urlopen(url + "/object_info", timeout=5)
    except OSError:
        return True
    return False


def test_main_job_trains_and_generates_over_http(tmp_path, sd15_checkpoint):
    out = tmp_path / "out"
    done = subprocess.run(main_job_command(out, sd15_checkpoint), cwd=host.PACK_DIR, capture_output=True, text=True,
                          timeout=1200, env=_env())
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "ok" and "random weights" in report["note"]
    assert "random weights" in done.stdout  # the console says so too
    video = full_models.has_animatediff_evolved()
    assert report["variant"] == ("video" if video else "image-only")
    if not video:
        assert "AnimateDiff-Evolved" in report["variant_reason"]
        assert "engine" not in report["workflows"] and "engine video" not in report["timings_s"]   # not by default
    # the animation: as many frames as asked, at the asked size
    with Image.open(report["files"]["animation"][0]) as anim:
        assert anim.format == "WEBP" and anim.size == (64, 64) and getattr(anim, "n_frames", 1) == 2
    with Image.open(report["files"]["loss_curve"][0]) as curve:
        assert curve.format == "PNG" and curve.size[0] > 100
    adapter, token = report["files"]["identity"]
    from safetensors import safe_open

    with safe_open(adapter, "pt") as f:
        assert f.metadata()["format"] == "personalvideo-sia" and len(list(f.keys())) >= 48 * 2
    assert os.path.getsize(token) > 0
    for name in ("doctor.txt", "comfyui.log", "models.log", "animation.webp", "loss_curve.png"):
        assert name in report["files"]["listing"]
    assert report["doctor"]["exit_code"] == 0 and "FAIL" not in (out / "doctor.txt").read_text()
    assert report["versions"]["torch"] and report["versions"]["comfyui"] and report["versions"]["pack"]
    assert set(report["timings_s"]) >= {"random models", "doctor", "server start", "training workflow",
                                        "generation workflow", "total"}
    # each phase: its time and what it did; what did not run says why
    phases = {p["phase"]: p for p in report["phases"]}
    assert set(phases) == (set(report["timings_s"]) - {"total"}) | {"engine video"}
    assert all(p["what"] and p["seconds"] == report["timings_s"][name] for name, p in phases.items()
               if name in report["timings_s"])
    assert f"({report['variant']} variant)" in phases["training workflow"]["what"]
    assert phases["engine video"]["seconds"] is None and phases["engine video"]["what"].startswith("not run")
    # the prompts went through the frontend's route: queued with a client id, followed over /ws
    assert "train: running node" in done.stdout and "generate: running node" in done.stdout
    assert "(2 frames, 64x64)" in done.stdout  # node titles printed with the sizes this run uses
    # the host's start-up chatter while the models are built stays in models.log
    assert "Traceback" not in done.stdout and (out / "models.log").is_file()
    assert _server_is_gone(done.stdout)
    # the scorer ran on what the job made; random weights: the report says what the number means there
    score = report["identity_score"]
    assert "random-weight" in score["note"] and "random-weight" in done.stdout
    try:
        import dlib  # noqa: F401
    except ImportError:
        assert score["exit_code"] == 1 and "dlib is not installed" in score["skipped"]
        return
    assert score["exit_code"] in (0, 3), score
    scored = json.loads((out / "identity_score.json").read_text())
    assert len(scored["identity"]["per_frame"]) == 2 and scored["motion"]["pair_magnitudes_px"]
    assert score["face_similarity"] == scored["identity"]["mean"]
    assert score["identity_match"] == scored["identity"]["identity_match"] and score["verdict"]
    with Image.open(out / "identity_score.png") as chart:
        assert chart.size == (768, 512)
    assert (out / "identity_score.txt").read_text().startswith("Identity: ")


def test_main_job_stops_its_server_on_ctrl_c(tmp_path, sd15_checkpoint):
    out = tmp_path / "out"
    # a terminal's Ctrl-C; SIGINT is restored to its default in case this test runs in the background (where
    # shells start commands with SIGINT ignored, and Python then keeps ignoring it)
    proc = subprocess.Popen(main_job_command(out, sd15_checkpoint), cwd=host.PACK_DIR, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "train: running node" in line:
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stdout = "".join(lines) + rest
    assert proc.returncode == 130, stdout[-4000:]
    assert "ComfyUI stopped" in stdout and _server_is_gone(stdout)
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted"
