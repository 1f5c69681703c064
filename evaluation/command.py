"""The scorer as a command, for many videos outside the graph (the same numbers as the node):

    python -m evaluation score --video out.webp --refs a.jpg b.jpg --json report.json
    python -m evaluation score --video frames/ --refs a.jpg --recognizer models/insightface/models/buffalo_l/w600k_r50.onnx

Run it from the pack folder (``custom_nodes/ComfyUI-PersonalVideo``) with the Python that runs ComfyUI, or as
``python custom_nodes/ComfyUI-PersonalVideo/evaluation score ...``.  Exit codes: 0 scored, 1 an input problem
(the message says what to do), 2 a usage error, 3 scored but no face in any frame.
"""
from __future__ import annotations

import argparse
import os
import sys

from .detectors import DETECTORS
from .errors import EvaluationError

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_NO_FACE = 0, 1, 2, 3


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m evaluation",
                                     description="Score how well an identity came out in a video (face similarity "
                                                 "to reference photos with an independent recogniser, identity "
                                                 "consistency, and an optical-flow motion score).")
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="score one video against reference photos",
                           description="Score one video against reference photos; prints the text report.")
    score.add_argument("--video", required=True, help="the video: animated WEBP/GIF/PNG, mp4/webm/mov, or a folder "
                                                      "of frame images (sorted by name)")
    score.add_argument("--refs", required=True, nargs="+", help="reference photo(s) of the person")
    score.add_argument("--recognizer", default="dlib",
                       help="dlib (default: dlib's ResNet, independent of training) or the path of an "
                            "ArcFace-contract .onnx recogniser (glintr100.onnx = the training recogniser, "
                            "w600k_r50.onnx of buffalo_l)")
    score.add_argument("--detector", default="dlib_hog", choices=[d for d in DETECTORS if d not in
                                                                  ("auto", "face_analysis")],
                       help="face detector (default dlib_hog)")
    score.add_argument("--max-frames", type=int, default=0, help="score this many frames spread uniformly "
                                                                 "(default 0: every frame)")
    score.add_argument("--fps", type=float, default=None,
                       help="the video's frame rate (default: what the file declares; a folder of frames: unknown, "
                            "frames used as given). Motion and the frame-to-frame cosine use frames about 1/8 s "
                            "apart, as VBench does: 8 for AnimateDiff, 16 for Wan 2.1 / 2.2 A14B, 24 for Wan 2.2 TI2V")
    score.add_argument("--json", help="write the full report as JSON to this file")
    score.add_argument("--plot", help="write the chart (PNG) to this file")
    score.add_argument("--text", help="write the text report to this file")
    args = parser.parse_args(argv)
    if args.max_frames < 0:
        parser.error("--max-frames must be 0 or more")
    if args.fps is not None and not args.fps > 0:
        parser.error("--fps must be above 0")
    return args


def write_outputs(report: dict, json_path=None, plot_path=None, text_path=None) -> list:
    """The report's files (each written whole or not at all); returns the paths written."""
    from .report import report_json, report_text, write_atomic

    written = []
    if json_path:
        written.append(write_atomic(json_path, report_json(report).encode()))
    if text_path:
        written.append(write_atomic(text_path, (report_text(report) + "\n").encode()))
    if plot_path:
        import io

        from PIL import Image

        from .chart import render_chart

        buf = io.BytesIO()
        Image.fromarray(render_chart(report)).save(buf, format="PNG")
        written.append(write_atomic(plot_path, buf.getvalue()))
    return written


def score(args) -> int:
    from .evaluate import evaluate_video
    from .report import report_text
    from .video_files import read_photo, read_video, video_fps

    frames = read_video(args.video)
    fps = args.fps if args.fps is not None else video_fps(args.video)
    refs = [read_photo(p) for p in args.refs]
    report = evaluate_video(frames, refs, recogniser=args.recognizer, detector=args.detector,
                            max_frames=args.max_frames, fps=fps)
    report["video"], report["references"] = os.path.abspath(args.video), [os.path.abspath(p) for p in args.refs]
    print(report_text(report))
    for path in write_outputs(report, args.json, args.plot, args.text):
        print(f"wrote {path}")
    return EXIT_NO_FACE if report["identity"]["mean"] is None else EXIT_OK


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return score(args)
    except EvaluationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:  # an output file that cannot be written
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INPUT
