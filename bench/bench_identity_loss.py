"""Benchmark: identity loss forward+backward per 512x512 frame, and encoder conversion time.

Uses the real ResNet-100 architecture of glintr100 with random weights (exported
to ONNX here, then converted the way users' glintr100.onnx is) and the test
suite's SCRFD-contract detector.  Runs on CPU with one thread; also on CUDA when
available (the detector stays on onnxruntime CPU either way, as it would with a
CPU-only onnxruntime).

    OMP_NUM_THREADS=1 python bench/bench_identity_loss.py [--frames 2] [--repeats 3] [--depth r100]
"""
import os

os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(1)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # `training.face` (no ComfyUI needed)
sys.path.insert(0, os.path.join(REPO, "tests"))  # the test detector and photos

from training.face import iresnet  # noqa: E402
from training.face.detector import FaceDetector  # noqa: E402
from training.face.encoder import load_onnx_recognizer  # noqa: E402
from training.face.identity_loss import IdentityLoss  # noqa: E402
from training.face.references import embed_references  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(device: torch.device, encoder, detector, frames_n: int, repeats: int):
    encoder.to(device)
    from face_fixtures import photo_image

    refs = embed_references(detector, encoder, [photo_image("astronaut"), photo_image("grace_hopper")[:, :512]])
    loss_fn = IdentityLoss(detector, encoder, refs.embeddings.to(device))
    base = photo_image("astronaut")[0, :512, :512].movedim(-1, 0)
    frames = base[None].repeat(frames_n, 1, 1, 1).to(device)
    fwd, bwd, det = [], [], []
    for i in range(repeats + 1):  # the first run warms up
        x = frames.clone().requires_grad_(True)
        _sync(device)
        t0 = time.perf_counter()
        loss_fn.find_transforms(x)
        t_det = time.perf_counter() - t0
        _sync(device)
        t0 = time.perf_counter()
        out = loss_fn(x)
        _sync(device)
        t1 = time.perf_counter()
        out.loss.backward()
        _sync(device)
        t2 = time.perf_counter()
        assert out.skipped == 0 and x.grad is not None
        if i:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            det.append(t_det)
    per = lambda v: min(v) / frames_n  # noqa: E731
    print(f"[{device}] frames/batch {frames_n}: forward (detect+warp+encode) {per(fwd) * 1000:.0f} ms/frame "
          f"(of which detection {per(det) * 1000:.0f} ms), backward {per(bwd) * 1000:.0f} ms/frame, "
          f"forward+backward {(per(fwd) + per(bwd)) * 1000:.0f} ms/frame (best of {repeats})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--depth", default="r100", choices=sorted(iresnet.LAYOUTS))
    args = ap.parse_args()
    from face_fixtures import export_detector, face_spec, photo_kps

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"CUDA {'available: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'not available'}")
    with tempfile.TemporaryDirectory() as tmp:
        model = iresnet.randomize_(iresnet.build_iresnet(args.depth), seed=0)
        onnx_path = os.path.join(tmp, "glintr100.onnx")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, torch.zeros(1, 3, 112, 112), onnx_path, input_names=["input.1"],
                              output_names=["embedding"], dynamic_axes={"input.1": {0: "N"}, "embedding": {0: "N"}},
                              opset_version=13, dynamo=False)
        print(f"{args.depth}: exported random weights to ONNX ({os.path.getsize(onnx_path) / 2**20:.0f} MiB) "
              f"in {time.perf_counter() - t0:.1f} s")
        cache = os.path.join(tmp, "cache")
        t0 = time.perf_counter()
        encoder = load_onnx_recognizer(onnx_path, cache)
        print(f"first conversion (onnx2torch + onnxruntime check + cache write): {time.perf_counter() - t0:.1f} s, "
              f"max abs diff {encoder.report.max_abs_diff:.3g} (tolerance {encoder.report.tolerance:.3g})")
        t0 = time.perf_counter()
        encoder = load_onnx_recognizer(onnx_path, cache)
        assert encoder.report.from_cache
        print(f"cached load (graph rebuilt from ONNX, weights from safetensors): {time.perf_counter() - t0:.1f} s")

        det_path = export_detector(os.path.join(tmp, "scrfd.onnx"), [face_spec(photo_kps("astronaut"), (512, 512))])
        detector = FaceDetector.from_file(det_path, "CPU")
        run(torch.device("cpu"), encoder, detector, args.frames, args.repeats)
        if torch.cuda.is_available():
            run(torch.device("cuda"), encoder, detector, args.frames, args.repeats)


if __name__ == "__main__":
    main()
