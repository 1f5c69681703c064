"""Benchmark: seconds per 512x512 frame for identity scoring on the CPU, for each detector and recogniser.

Detectors: dlib HOG, dlib CNN (mmod), MTCNN (real weights from the registry packages). Recognisers: dlib's
ResNet (real weights) and an ArcFace-contract ONNX recogniser: the file given with --onnx (e.g. glintr100.onnx
or w600k_r50.onnx), else a random-weight iResNet of glintr100's architecture (r100) exported here, which costs
what glintr100 costs. Motion (DIS optical flow) per frame pair too. One thread; the photo is scikit-image's
astronaut at 512x512 (one face).

    scripts/bench bench/bench_score.py [--repeats 3] [--onnx PATH] [--skip-cnn]
"""
import os

os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALIAS = "personalvideo_bench_pack"
if ALIAS not in sys.modules:  # the pack's packages without its __init__ (which needs ComfyUI)
    sys.modules[ALIAS] = types.ModuleType(ALIAS)
    sys.modules[ALIAS].__path__ = [REPO]


def _module(name):
    return importlib.import_module(f"{ALIAS}.{name}")


def _seconds(fn, repeats):
    fn()  # warm-up (model loading, first-call allocations)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _random_r100_onnx(folder):
    import torch

    iresnet = _module("training.face.iresnet")
    model = iresnet.randomize_(iresnet.build_iresnet("r100"), 0).eval()
    path = os.path.join(folder, "random_r100.onnx")
    torch.onnx.export(model, torch.zeros(1, 3, 112, 112), path, input_names=["input"], output_names=["embedding"],
                      dynamic_axes={"input": {0: "n"}, "embedding": {0: "n"}}, dynamo=False)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--onnx", help="an ArcFace-contract recogniser file (default: a random r100 exported here)")
    parser.add_argument("--skip-cnn", action="store_true", help="skip dlib's CNN detector (slow on a CPU)")
    args = parser.parse_args(argv)
    import numpy as np
    import skimage.data
    import torch

    torch.set_num_threads(1)
    detectors = _module("evaluation.detectors")
    recognisers = _module("evaluation.recognisers")
    motion = _module("evaluation.motion")
    frame = np.ascontiguousarray(skimage.data.astronaut())  # 512x512 RGB
    print(f"identity scoring on the CPU, one thread, 512x512 frame, best of {args.repeats}")
    names = ["dlib_hog", "mtcnn"] + ([] if args.skip_cnn else ["dlib_cnn"])
    face = None
    for name in names:
        try:
            det = detectors.make_detector(name)
        except Exception as exc:  # noqa: BLE001
            print(f"  detector {name:10s}: skipped ({exc})")
            continue
        s = _seconds(lambda: det.detect(frame), args.repeats)
        found = det.detect(frame)
        face = face or (found[0] if found else None)
        print(f"  detector {name:10s}: {s:7.3f} s/frame ({len(found)} face(s))")
    if face is None:
        print("  no detector found the face: recognisers not measured")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = args.onnx or _random_r100_onnx(tmp)
        for label, make in (("dlib_resnet", recognisers.DlibRecogniser),
                            (f"onnx {os.path.basename(onnx_path)}", lambda: recognisers.OnnxArcFaceRecogniser(onnx_path))):
            try:
                rec = make()
            except Exception as exc:  # noqa: BLE001
                print(f"  recogniser {label}: skipped ({exc})")
                continue
            s = _seconds(lambda: rec.embed(frame, face), args.repeats)
            print(f"  recogniser {label:24s}: {s:7.3f} s/face")
    nxt = np.roll(frame, (3, 5), axis=(0, 1))
    s = _seconds(lambda: motion.pair_magnitudes([frame, nxt]), args.repeats)
    print(f"  motion (DIS flow)         : {s:7.3f} s/frame pair")
    return 0


if __name__ == "__main__":
    sys.exit(main())
