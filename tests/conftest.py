import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

torch.set_num_threads(1)

import host  # noqa: E402

host.bootstrap()  # the pack is importable as `comfyui_personalvideo` from here on
