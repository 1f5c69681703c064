import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

torch.set_num_threads(1)

import host  # noqa: E402

host.bootstrap()  # the pack is importable as `comfyui_personalvideo` from here on

import pytest  # noqa: E402

import tiny_models  # noqa: E402


@pytest.fixture
def tiny_model():
    """A fresh small SD1.5-layout MODEL (ModelPatcher) with random weights."""
    return tiny_models.tiny_sd15_model(seed=0)


@pytest.fixture
def conds(tiny_model):
    return tiny_models.random_cond(tiny_model, 1), tiny_models.random_cond(tiny_model, 2)


AMPLE_FREE_MEMORY = 64 * 1024 ** 3


@pytest.fixture
def ample_free_memory(monkeypatch):
    """ComfyUI's free-memory reading pinned at 64 GiB, for tests that compare sampling or training runs call by
    call or bit for bit. ComfyUI decides by the free memory at call time whether cond and uncond go into one
    model call, and how its split and sub-quadratic attention slice their work. On a machine short of memory
    (two test workers, one of them holding SD1.5-size models) the reading moves from call to call, so a run
    could make two calls where the test expects one, or sum its attention otherwise than the run it is compared
    with. Tests that are about memory set their own reading on top."""
    import comfy.model_management

    def get_free_memory(dev=None, torch_free_too=False):
        return (AMPLE_FREE_MEMORY, AMPLE_FREE_MEMORY) if torch_free_too else AMPLE_FREE_MEMORY

    monkeypatch.setattr(comfy.model_management, "get_free_memory", get_free_memory)


@pytest.fixture(scope="session")
def make_adapter():
    """Build an adapter for a model with non-zero (random) up weights, so it has an effect."""
    import random_adapters

    def make(model, seed=1, rank=4, alpha=4.0, std=0.3, name="tester"):
        return random_adapters.random_adapter(model, seed=seed, rank=rank, alpha=alpha, std=std, name=name)

    return make


@pytest.fixture(scope="session")
def sd15_checkpoint():
    """Path of an SD1.5-size random-weight checkpoint (built once per session, ~25 s)."""
    import full_models

    path = host.models_dir() / "checkpoints" / "sd15_random.safetensors"
    with torch.inference_mode():
        full_models.save_sd15_checkpoint(str(path))
    return path


@pytest.fixture(scope="session")
def animatelcm_motion_model():
    """Path of a random AnimateLCM-layout motion model in the host's animatediff_models folder (built once
    per session); skips where AnimateDiff-Evolved is not in the host."""
    import folder_paths
    import full_models

    if not full_models.has_animatediff_evolved():
        pytest.skip("AnimateDiff-Evolved is not installed in this ComfyUI host")
    path = os.path.join(folder_paths.get_folder_paths("animatediff_models")[0], "AnimateLCM_random.safetensors")
    with torch.inference_mode():
        full_models.save_animatelcm_motion_model(path)
    return path


@pytest.fixture(scope="session")
def comfy_server():
    import comfy_server

    # a user's extra_model_paths.yaml with a `sia:` entry, to check the pack merges with it
    yaml_models = host.scratch_dir() / "yaml_models"
    (yaml_models / "sia").mkdir(parents=True, exist_ok=True)
    config = host.scratch_dir() / "extra_model_paths.yaml"
    config.write_text(f"personalvideo_tests:\n    base_path: {yaml_models}\n    sia: sia\n")
    srv = comfy_server.ComfyServer(stand_ins=True)  # third-party packs the host lacks: test stand-ins
    srv.yaml_sia = yaml_models / "sia"
    srv.start(extra_args=["--extra-model-paths-config", str(config)])
    yield srv
    srv.stop()


# On several workers (pytest-xdist; .ci/run passes -n 2 --dist loadgroup --no-loadscope-reorder) the work is dealt
# out in groups: the tests of one file stay together on one worker (their module fixtures are built once, and they
# run in order), and every `slow` test (SD1.5-size models of several GB, the main job) and every test that uses the
# SD1.5-size checkpoint goes to one group, put first, so one worker runs those one after another and no two
# SD1.5-size jobs ever hold memory at once.
SD15_GROUP = "sd15"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if not getattr(config.option, "loadgroup", False):   # what pytest-xdist tells its workers of --dist loadgroup
        return
    for item in items:
        group = SD15_GROUP if holds_sd15(item) else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: not holds_sd15(item))   # stable: the SD1.5 group first


def holds_sd15(item) -> bool:
    """Whether a test holds SD1.5-size models in memory: the slow ones, and any that uses the SD1.5-size
    checkpoint (building it and a server loading it take several GB, beside the other worker's slow job)."""
    return bool(item.get_closest_marker("slow")) or "sd15_checkpoint" in getattr(item, "fixturenames", ())
