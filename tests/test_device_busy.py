"""bench/device_busy.py: the GPU busy share, kernel and host-operation counts read from a profiler trace.

The trace of a CUDA stretch is made here of torch's own profiler event class (``FunctionEvent``) with CUDA
kernel events at known times (no GPU here); the CPU side runs the real profiler.
"""
import sys
from pathlib import Path

import pytest
import torch
from torch.autograd import DeviceType
from torch.autograd.profiler_util import FunctionEvent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import device_busy  # noqa: E402

_ids = iter(range(1, 10 ** 6))


def event(name, start, end, device=DeviceType.CPU, parent=None):
    e = FunctionEvent(id=next(_ids), name=name, thread=0, start_us=start, end_us=end, device_type=device)
    if parent is not None:
        e.set_cpu_parent(parent)
    return e


def test_union_length_counts_overlaps_once_and_clips_to_the_stretch():
    assert device_busy.union_length([], 0, 10) == 0
    assert device_busy.union_length([(1, 3), (2, 5), (7, 8)], 0, 10) == 5          # 1..5 and 7..8
    assert device_busy.union_length([(1, 9), (2, 3), (4, 5)], 0, 10) == 8          # nested inside one
    assert device_busy.union_length([(-5, 2), (8, 20), (30, 40)], 0, 10) == 4      # clipped; one outside
    assert device_busy.union_length([(1, 2), (2, 3)], 0, 10) == 2                  # touching


def test_stretch_figures_read_a_cuda_trace():
    stretch = event(device_busy.STRETCH, 100, 1100)
    linear = event("aten::linear", 110, 130)
    autograd = event("autograd::engine::evaluate_function: MmBackward0", 600, 700)
    events = [
        stretch, linear,
        event("aten::addmm", 112, 128, parent=linear),                   # inside another operation: not counted
        autograd, event("aten::mm", 610, 690, parent=autograd),          # backward's operation: top level
        event("aten::empty", 1500, 1510),                                # after the stretch
        event("gemm_kernel", 150, 350, DeviceType.CUDA), event("gemm_kernel", 300, 500, DeviceType.CUDA),
        event("softmax_kernel", 900, 1200, DeviceType.CUDA),             # runs past the stretch's end: clipped
        event("late_kernel", 1200, 1300, DeviceType.CUDA),               # after it
    ]
    f = device_busy.stretch_figures(events)
    assert f["wall"] == pytest.approx(1000e-6)
    assert f["busy"] == pytest.approx(550e-6)          # 150..500 and 900..1100
    assert f["kernels"] == 3 and f["operations"] == 2
    assert f["by_kernel"]["gemm_kernel"] == pytest.approx(400e-6)
    assert f["by_kernel"]["softmax_kernel"] == pytest.approx(200e-6) and "late_kernel" not in f["by_kernel"]
    with pytest.raises(ValueError, match="0 'pv_busy_stretch' ranges"):
        device_busy.stretch_figures(events[1:])


def test_meter_profiles_the_stretches_asked_for_on_the_cpu(capsys):
    meter = device_busy.BusyMeter("cpu", skip=1, count=2)
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    step = meter.timed("work", lambda: torch.mm(a, b).relu())
    for _ in range(4):
        step()
    with meter.stretch("other"):
        torch.mm(a, b)
    assert meter.profiled == {"work": [1, 2]} and meter.summary("other") is None
    work = meter.summary("work")
    assert work["stretches"] == 2 and work["operations"] == 2     # mm and relu, each at the top level
    assert work["kernels"] == 0 and work["busy"] == 0 and work["wall"] > 0
    device_busy.report(meter, [("work", "the work"), ("other", "other work")])
    out = capsys.readouterr().out
    assert "the work:" in out and "2 host operations" in out and "other work" not in out
    assert "with --device cuda" in out
