"""The host's free-memory reading under gradient checkpointing (:mod:`training.free_memory_replay`): one patch
for the length of a checkpointed pass, which each region's forward points at its recording and each
recomputation at its replay, on its own thread only, and the host's own function back afterwards."""
import threading

from torch import nn


class _Readings:
    """A free-memory double: each reading is the next number."""

    def __init__(self):
        self.value = 0

    def __call__(self, *args, **kwargs):
        self.value += 1
        return self.value


def test_recording_and_replay_go_through_one_patch_and_stay_on_their_thread(monkeypatch):
    import comfy.model_management as host

    from comfyui_personalvideo.training import free_memory_replay

    real = _Readings()
    monkeypatch.setattr(host, "get_free_memory", real)
    recorded, elsewhere = [], []
    with free_memory_replay.installed():
        installed = host.get_free_memory
        assert installed is not real
        with free_memory_replay.installed():   # nested (a pass inside a pass): the same patch
            assert host.get_free_memory is installed
        with free_memory_replay.recording(recorded):
            assert host.get_free_memory is installed   # pointed at, not patched again
            first, second = host.get_free_memory(), host.get_free_memory()
            other = threading.Thread(target=lambda: elsewhere.append(host.get_free_memory()))
            other.start()
            other.join()
        assert recorded == [first, second] and elsewhere == [3]   # the other thread read the real value
        assert host.get_free_memory() == 4   # no region: the real reading
        with free_memory_replay.replaying(recorded):
            assert [host.get_free_memory() for _ in range(3)] == [first, second, 5]   # then the real ones
    assert host.get_free_memory is real


def test_without_the_pass_patch_a_recording_patches_the_host_for_its_own_length(monkeypatch):
    import comfy.model_management as host

    from comfyui_personalvideo.training import free_memory_replay

    real = _Readings()
    monkeypatch.setattr(host, "get_free_memory", real)
    recorded = []
    with free_memory_replay.recording(recorded):
        assert host.get_free_memory is not real
        host.get_free_memory()
    assert host.get_free_memory is real and recorded == [1]
    with free_memory_replay.replaying(recorded):
        assert host.get_free_memory() == 1 and host.get_free_memory() == 2
    assert host.get_free_memory is real


def test_a_checkpointed_pass_puts_the_host_reading_back_after_an_error(monkeypatch):
    import comfy.model_management as host

    from comfyui_personalvideo.training.checkpointing import checkpointed

    real = _Readings()
    monkeypatch.setattr(host, "get_free_memory", real)
    layer = nn.Linear(4, 4)
    try:
        with checkpointed([layer]):
            assert host.get_free_memory is not real
            raise KeyError("stopped")
    except KeyError:
        pass
    assert host.get_free_memory is real
