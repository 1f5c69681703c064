"""The `personalvideo` command: train, generate, score and train-many outside ComfyUI.

    personalvideo train --photos a.jpg b.jpg --name alice --class-word woman \\
        --checkpoint realisticVision.safetensors --motion-model AnimateLCM_sd15_t2v.ckpt --comfyui-root ~/ComfyUI
    personalvideo generate --identity alice --prompt "embedding:alice woman walking on a beach" \\
        --checkpoint realisticVision.safetensors --motion-model AnimateLCM_sd15_t2v.ckpt --comfyui-root ~/ComfyUI \\
        --output alice.mp4
    personalvideo score --video alice.mp4 --refs a.jpg b.jpg
    personalvideo train-many identities.csv --checkpoint ... --motion-model ... --comfyui-root ~/ComfyUI
    personalvideo train --backbone wan --checkpoint Wan2.1-T2V-1.3B-Diffusers --photos a.jpg --name alice \
        --class-word woman --faces ~/insightface
    personalvideo generate --backbone wan --checkpoint Wan2.1-T2V-1.3B-Diffusers --identity alice \
        --prompt "a woman walking on a beach" --output alice.webp

Model names are paths, or file names in the ComfyUI root's model folders.  The identity
files go to ``<models-dir>/sia`` and ``<models-dir>/embeddings`` (``<ComfyUI>/models`` with
a ComfyUI root), where the nodes find them.  ``--backbone wan`` (train and generate) runs Wan 2.1 / 2.2
text-to-video from a diffusers Wan folder (:mod:`.wan_job`); SD1.5 is the default.  Exit codes: 0 done, 1 an input problem (the
message says what to do), 2 a usage error, 3 scored but no face in any frame, 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys

from .train_job import DEFAULT_MODELS_DIR, load_engine_models, models_dir_of, resolve_device, train_one

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


SD15, WAN = "sd15", "wan"
# defaults that differ by backbone (None on the command line: the backbone's own)
SD15_DEFAULTS = {"train": dict(frames=16, width=512, height=512, sampling_steps=4, ti_steps=400),
                 "generate": dict(frames=16, width=512, height=512, steps=25, cfg=7.5)}


def _backbone_argument(parser):
    parser.add_argument("--backbone", default=SD15, choices=[SD15, WAN],
                        help="sd15 (default): SD1.5 + AnimateDiff; wan: Wan 2.1 / 2.2 text-to-video from a diffusers "
                             "Wan folder (adapter only: no token stage on Wan yet)")
    parser.add_argument("--shift", type=float, default=8.0,
                        help="Wan only: the flow schedule's shift (default 8, core's Wan 2.1 default)")


def _model_arguments(parser, motion_required: bool):
    parser.add_argument("--checkpoint", required=True,
                        help="SD1.5 checkpoint: a .safetensors file, a diffusers folder, or a name in "
                             "<ComfyUI>/models/checkpoints; with --backbone wan a diffusers Wan T2V folder (or its "
                             "name in <ComfyUI>/models/diffusers)")
    parser.add_argument("--motion-model", default=None,
                        help="AnimateDiff / AnimateLCM motion-module file (or diffusers MotionAdapter folder, or a "
                             "name in <ComfyUI>/models/animatediff_models)" + ("" if motion_required else
                                                                             "; without it, single frames"))
    parser.add_argument("--comfyui-root", default=os.environ.get("COMFYUI_ROOT"),
                        help="a ComfyUI folder: its models/ folders are searched and written to, and its "
                             "comfy/sd1_tokenizer used (default: $COMFYUI_ROOT)")
    parser.add_argument("--tokenizer", help="folder with SD1.5's CLIP tokenizer (vocab.json, merges.txt), when "
                                            "there is no ComfyUI root")
    parser.add_argument("--models-dir", help="where identities live (sia/ and embeddings/ inside; default "
                                             f"<ComfyUI>/models, else ./{DEFAULT_MODELS_DIR})")
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda, cuda:1 ...")


def _train_arguments(parser):
    from ..training.sia_settings import NEGATIVE_PROMPT, TRAINING_CFG

    parser.add_argument("--faces", help="insightface folder (default <ComfyUI>/models/insightface) or the folder "
                                        "holding the pack's .onnx files")
    parser.add_argument("--face-pack", default="antelopev2", help="antelopev2 (default) or buffalo_l")
    parser.add_argument("--prompts", help="a text file of prompt templates, one per line (default: the pack's 50)")
    parser.add_argument("--ti-steps", type=int, default=None, help="token training steps (default 400; none on Wan)")
    parser.add_argument("--ti-lr", type=float, default=1e-3, help="token learning rate (default 1e-3)")
    parser.add_argument("--ti-batch-size", type=int, default=4, help="token batch size (default 4)")
    parser.add_argument("--sia-iterations", type=int, default=400, help="adapter iterations (default 400)")
    parser.add_argument("--sia-lr", type=float, default=1e-4, help="adapter learning rate (default 1e-4)")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank of the adapter (default 4)")
    parser.add_argument("--reg-lambda", type=float, default=1e-2, help="weight-space regulariser (default 1e-2)")
    parser.add_argument("--frames", type=int, default=None, help="frames of the training videos (default 16; "
                                                                   "Wan: 17, 4k + 1)")
    parser.add_argument("--width", type=int, default=None, help="training width (default 512; Wan 448)")
    parser.add_argument("--height", type=int, default=None, help="training height (default 512; Wan 448)")
    parser.add_argument("--sampling-steps", type=int, default=None,
                        help="steps per training video (default 4 LCM steps; Wan: 8 Euler steps)")
    parser.add_argument("--training-cfg", type=float, default=None,
                        help=f"guidance of the training videos (default {TRAINING_CFG}, as the example workflows "
                             "generate; Wan: 5)")
    parser.add_argument("--training-negative", default=NEGATIVE_PROMPT,
                        help="negative prompt of the training videos (default: the example workflows' one)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--precision", default="auto",
                        help="auto (default; on CUDA SD1.5's UNet in fp16 and VAE in bf16, trained in them as the "
                             "node trains them; Wan under bf16 autocast; fp32 on the CPU), fp32, or bf16 / fp16 "
                             "(autocast over fp32 weights)")
    parser.add_argument("--gradient-checkpointing", default="auto", choices=["auto", "on", "off"],
                        help="gradient checkpointing: on saves memory, off saves time; auto (default): on a CUDA "
                             "device, off on the CPU")
    parser.add_argument("--overwrite", action="store_true", help="replace an identity of the same name")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="personalvideo", description="PersonalVideo outside ComfyUI: train an "
                                     "identity from a few photos, generate videos with it, score them.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one identity from photos",
                           description="Train one identity (token + Spatial Identity Adapter) from photos.")
    train.add_argument("--photos", required=True, nargs="+", help="photos of the person (files or folders)")
    train.add_argument("--name", required=True, help="identity name (the file name and embedding:<name>)")
    train.add_argument("--class-word", required=True, help="man, woman, person ...")
    _model_arguments(train, motion_required=True)
    _backbone_argument(train)
    _train_arguments(train)

    gen = sub.add_parser("generate", help="generate a video with an identity",
                         description="Generate a video; the adapter acts on the late steps only.")
    gen.add_argument("--identity", help="identity name in <models-dir>/sia, or an adapter .safetensors file")
    gen.add_argument("--prompt", required=True, help="the prompt; name the identity with embedding:<name> or "
                                                     "{token} (its trigger phrase is put in front otherwise)")
    gen.add_argument("--negative", default="", help="negative prompt")
    gen.add_argument("--output", required=True, help="the video file: .mp4, .webp or .gif")
    _model_arguments(gen, motion_required=False)
    _backbone_argument(gen)
    gen.add_argument("--frames", type=int, default=None, help="frames (default 16; Wan: 17, 4k + 1)")
    gen.add_argument("--width", type=int, default=None, help="width (default 512; Wan 448, a multiple of 16)")
    gen.add_argument("--height", type=int, default=None, help="height (default 512; Wan 448, a multiple of 16)")
    gen.add_argument("--steps", type=int, default=None, help="denoising steps (default 25; Wan 30)")
    gen.add_argument("--cfg", type=float, default=None, help="guidance scale (default 7.5; Wan 5)")
    gen.add_argument("--scheduler", default="ddim", help="ddim (default), euler, euler_a, dpmpp_2m, unipc, lcm, "
                                                         "pndm, heun, ddpm or any diffusers scheduler class name "
                                                         "(Wan: always core's euler on the simple schedule)")
    gen.add_argument("--strength", type=float, default=1.0, help="adapter strength (default 1.0)")
    gen.add_argument("--start-percent", type=float, default=None,
                     help="adapter from this point of the noise schedule (default 0.75, the last quarter)")
    gen.add_argument("--end-percent", type=float, default=1.0, help="adapter up to this point (default 1.0)")
    gen.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    gen.add_argument("--fps", type=int, default=8, help="frames per second of the file (default 8)")

    sub.add_parser("score", help="score a video against reference photos: the pack's scorer (python -m evaluation "
                                 "score; see personalvideo score --help)")

    many = sub.add_parser("train-many", help="train many identities from a manifest on Ray",
                          description="Train one identity per manifest row as Ray tasks (one GPU each where there "
                                      "are GPUs), skip finished ones, retry a failure once, write a summary.")
    many.add_argument("manifest", help="CSV with columns name, class_word, photos (paths or a folder, ';' between "
                                       "several) and optional overrides (ti_steps, sia_iterations, rank, seed, ...)")
    _model_arguments(many, motion_required=True)
    _train_arguments(many)
    many.add_argument("--address", help="an existing Ray cluster (ray://host:10001 or auto); default: a local Ray")
    many.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    many.add_argument("--gpus-per-task", type=float, default=None,
                      help="GPUs per identity (default 1 where the cluster has GPUs, else 0)")
    many.add_argument("--summary", default="train_many_summary",
                      help="summary file stem: writes STEM.csv and STEM.json (default train_many_summary)")
    many.add_argument("--retries", type=int, default=1, help="retries of a failed identity (default 1)")
    args = parser.parse_args(argv)
    _backbone_defaults(parser, args)
    return args


def _backbone_defaults(parser, args) -> None:
    """Fill the options left out with the backbone's defaults; --motion-model is required on SD1.5 training."""
    from ..training.sia_settings import TRAINING_CFG

    backbone = getattr(args, "backbone", SD15)
    if args.command in ("train", "train-many") and backbone == SD15 and not args.motion_model:
        parser.error("the following arguments are required: --motion-model (or --backbone wan)")
    if backbone == WAN:
        from .wan_job import GENERATE_DEFAULTS, TRAIN_DEFAULTS

        defaults = dict(TRAIN_DEFAULTS) if args.command == "train" else dict(GENERATE_DEFAULTS)
    else:
        defaults = dict(SD15_DEFAULTS["generate" if args.command == "generate" else "train"])
        if args.command != "generate":
            defaults["training_cfg"] = TRAINING_CFG
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def cmd_train(args) -> int:
    if args.backbone == WAN:
        return cmd_train_wan(args)
    result = train_one(args, args.photos, args.name, args.class_word)
    print(f"trained {result['name']}: {result['paths']['sia']} and {result['paths']['embedding']}; final face "
          f"similarity {result['final_similarity']}; use it with: {result['trigger']}")
    return EXIT_OK


def cmd_train_wan(args) -> int:
    from . import wan_job
    from .train_job import _Bars

    bars = _Bars()
    try:
        result = wan_job.train(args, bars)
    finally:
        bars.close()
    print(f"trained {result['name']} on Wan: {result['paths']['sia']} (adapter only: no token stage on Wan); final "
          f"face similarity {result['final_similarity']}; use it with: {result['trigger']} (Load SIA Adapter, then "
          "Apply SIA at Late Steps on the Wan model)")
    return EXIT_OK


def identity_file(args) -> str | None:
    if not args.identity:
        return None
    if os.path.isfile(args.identity):
        return args.identity
    from ..training.identity_files import sanitise_name
    from .errors import EngineError

    path = os.path.join(models_dir_of(args), "sia", sanitise_name(args.identity) + ".safetensors")
    if not os.path.isfile(path):
        raise EngineError(f"identity {args.identity!r} not found ({path}); train it first or give the adapter file.")
    return path


def cmd_generate(args) -> int:
    import torch
    from tqdm import tqdm

    from ..sia import load_adapter
    from ..sia.adapter import DEFAULT_START_PERCENT
    from .generate import GenerateSettings, generate, write_video

    path = identity_file(args)
    adapter = load_adapter(path) if path else None
    if args.backbone == WAN:
        return _generate_wan(args, adapter)
    prompt = args.prompt
    if adapter is not None and "{token}" not in prompt and f"embedding:{adapter.info.name}" not in prompt:
        prompt = f"{adapter.info.trigger}, {prompt}"
    start = args.start_percent if args.start_percent is not None else DEFAULT_START_PERCENT
    settings = GenerateSettings(prompt=prompt, negative=args.negative, frames=args.frames, width=args.width,
                                height=args.height, steps=args.steps, cfg=args.cfg, seed=args.seed,
                                scheduler=args.scheduler, strength=args.strength, start_percent=start,
                                end_percent=args.end_percent)
    settings.check()
    device = resolve_device(args.device)
    engine, motion = load_engine_models(args, motion=True)
    if motion is not None:
        from .models import add_motion

        add_motion(engine, motion)
    engine.to(device, torch.float16 if device.type == "cuda" else torch.float32)
    bar = tqdm(total=args.steps, desc="generate", unit="step", file=sys.stderr)

    def progress(i, total, adapted):
        bar.total = total
        bar.set_postfix(adapter="on" if adapted else "off")
        bar.update(1)

    try:
        out = generate(engine, settings, adapter, progress)
    finally:
        bar.close()
    write_video(out["frames"], args.output, args.fps)
    steps = ", ".join(str(i + 1) for i in out["adapted_steps"]) or "none"
    print(f"wrote {os.path.abspath(args.output)} ({args.frames} frames; adapter on step(s) {steps} of {out['steps']})")
    return EXIT_OK


def _generate_wan(args, adapter) -> int:
    from tqdm import tqdm

    from . import wan_job
    from .generate import write_video

    bars = []     # made at the first step: the models and settings are checked before

    def progress(i, total, adapted):
        if not bars:
            bars.append(tqdm(total=total, desc="generate", unit="step", file=sys.stderr))
        bars[0].set_postfix(adapter="on" if adapted else "off")
        bars[0].update(1)

    try:
        out = wan_job.generate(args, adapter, progress)
    finally:
        for bar in bars:
            bar.close()
    write_video(out["frames"], args.output, args.fps)
    steps = ", ".join(str(i + 1) for i in out["adapted_steps"]) or "none"
    print(f"wrote {os.path.abspath(args.output)} ({args.frames} frames on Wan; adapter on step(s) {steps} of "
          f"{out['steps']})")
    return EXIT_OK


def cmd_train_many(args) -> int:
    from .train_many import run_manifest

    summary = run_manifest(args)
    failed = [row for row in summary["rows"] if row["status"] == "failed"]
    print(f"{len(summary['rows'])} identities: "
          + ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
          + f"; summary in {summary['csv']} and {summary['json']}")
    return EXIT_INPUT if failed else EXIT_OK


COMMANDS = {"train": cmd_train, "generate": cmd_generate, "train-many": cmd_train_many}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["score"]:  # the scorer parses its own arguments (and --help)
        from ..evaluation import command

        return command.main(argv)
    args = parse_args(argv)
    from ..evaluation.errors import EvaluationError
    from ..sia.errors import SIAError
    from ..training.errors import TrainingError
    from ..training.face.errors import FaceStackError
    from .errors import EngineError

    try:
        return COMMANDS[args.command](args)
    except (EngineError, TrainingError, FaceStackError, SIAError, EvaluationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was left behind", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INPUT
