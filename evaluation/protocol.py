"""The scoring protocol, as the ConsisID and OpenS2V-Eval benchmarks publish it, and what is comparable.

- Frames are sampled uniformly over the video (all of them by default).
- In each frame the largest face is used (by box area); faces smaller than :data:`MIN_FACE_PX` count as
  no face.
- A frame's similarity is the cosine similarity of its face embedding with each reference face's
  embedding, clipped at 0, averaged over the references.
- The video's face similarity is the mean over the frames where a face was found; the frames without a
  face are counted and reported, never scored as 0.
"""
from __future__ import annotations

MIN_FACE_PX = 20  # shorter side of the box, pixels

# what each recogniser's number can be compared with
COMPARABILITY = {
    "dlib": ("dlib's ResNet (128-D) is independent of training, but its embeddings lie in a narrow cone: "
             "different people typically score 0.75-0.85 cosine and the same person 0.9-0.97. Its cosine (the "
             "JSON's mean and similarity) is NOT on the scale of the paper's 62.35 or the benchmarks' FaceSim: read "
             "the verdict and identity_match, which come from dlib_distance (Euclidean, below 0.6 = the same person "
             "by dlib's own threshold)."),
    "training": ("the training recogniser (antelopev2 glintr100, ArcFace) with this protocol is the benchmarks' "
                 "FaceSim-Arc (ConsisID, OpenS2V-Eval): same recogniser and protocol, so the scale matches "
                 "(x100 for the paper's 62.35), but it is the quantity the adapter was optimised on, so it "
                 "flatters the adapter; the paper itself evaluated with a different recogniser."),
    "onnx": ("an ArcFace-contract recogniser other than the training one (e.g. buffalo_l's w600k_r50) is on "
             "roughly the ArcFace cosine scale and independent of the training weights: the closest to the "
             "paper's 62.35 (x100), which was measured on its own 1000 videos, 20 identities and 50 prompts, "
             "so only the scale, not the number, carries over. CurricularFace IR-101 (the benchmarks' "
             "FaceSim-Cur) works here when you have it as an ArcFace-contract ONNX file."),
}

MOTION_NOTE = ("motion is an approximation of VBench's dynamic degree: OpenCV's DIS optical flow instead of RAFT, "
               "on every round(fps / 8)-th frame when the frame rate is given, as VBench samples (about 8 per second: "
               "every frame at AnimateDiff's 8 fps, every 2nd at Wan's 16, every 3rd at Wan 2.2 TI2V's 24), "
               "otherwise on the frames as given; per frame pair the mean of the largest "
               "5% flow magnitudes, a pair moves when it exceeds 6 px x (shorter side / 256), and the video is "
               "dynamic when at least round(4 x frames / 16) pairs move. The paper's 17.80 is the percentage "
               "of its 1000 videos judged dynamic; one video gives yes or no.")

CONSISTENCY_NOTE = ("identity consistency is the spread of the per-frame similarities and the mean cosine "
                    "similarity of consecutive frames' face embeddings (paced like the motion pairs when the frame "
                    "rate is given); the paper's temporal consistency "
                    "(0.9935) is a CLIP frame-to-frame measure of the whole picture and is not computed here.")


def sample_indices(count: int, max_frames: int = 0) -> list:
    """``max_frames`` frame indices spread uniformly over ``count`` frames (all of them when 0 or more)."""
    if count <= 0:
        return []
    if max_frames <= 0 or max_frames >= count:
        return list(range(count))
    if max_frames == 1:
        return [count // 2]
    step = (count - 1) / (max_frames - 1)
    return sorted({int(round(i * step)) for i in range(max_frames)})


def clipped_cosine(value: float) -> float:
    return max(0.0, float(value))
