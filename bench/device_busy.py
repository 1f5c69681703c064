"""How busy the GPU is while the host drives it, read from torch.profiler traces (``bench_train.py --busy``).

For a stretch of work (one stage-2 iteration, one plain generation) the profiler records every torch operation
the host dispatches and, on CUDA, every kernel and copy the GPU runs, on one clock. From that trace:

- **GPU busy**: the share of the stretch's wall time in which at least one kernel or copy runs (the union of
  their intervals). Near 100 %, the GPU's arithmetic is the limit: only fewer or faster kernels help. Well below
  it, the GPU waits for the host (Python, torch's dispatch, kernel launches, synchronisations): fewer operations,
  or cheaper ones per operation, are what make the stretch faster;
- **kernels**: how many kernels and copies the GPU ran, and the stretch's wall time per one;
- **host operations**: the torch operations the host dispatched at the top level (``aten::`` operations not
  inside another one; backward's included), on any device, so the CPU counts what a GPU would be asked to do;
- the kernels that took the most of the busy time.

The profiler adds host time to every operation, so a profiled stretch runs slower than the same stretch
unprofiled, and where the host is the limit the busy share it reads errs low. Its times are wall times.
"""
from __future__ import annotations

import collections
import contextlib
import statistics

import bench_common  # (first: one thread, as in every bench)
import torch

STRETCH = "pv_busy_stretch"   # the profiler range around each measured stretch


def union_length(intervals, start: float, end: float) -> float:
    """The length of the union of ``intervals`` ((begin, finish) pairs) within [start, end]."""
    total, reach = 0.0, start
    for begin, finish in sorted((max(b, start), min(f, end)) for b, f in intervals):
        if finish <= max(begin, reach):
            continue
        total += finish - max(begin, reach)
        reach = finish
    return total


def _is_device(event) -> bool:
    return event.device_type != torch.autograd.DeviceType.CPU


def _inside(event, start, end) -> bool:
    return event.time_range.start < end and event.time_range.end > start


def _top_level(event) -> bool:
    if not event.name.startswith("aten::"):
        return False
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return False
        parent = parent.cpu_parent
    return True


def stretch_figures(events) -> dict:
    """Figures of the stretch marked by the :data:`STRETCH` range in ``events`` (torch.profiler's
    ``FunctionEvent`` list; times in microseconds): its wall and busy seconds, the counts of device events
    (kernels and copies) and host operations, and the seconds of each kernel name within the stretch."""
    marks = [e for e in events if e.name == STRETCH and not _is_device(e)]
    if len(marks) != 1:
        raise ValueError(f"the trace holds {len(marks)} '{STRETCH}' ranges, not one")
    start, end = marks[0].time_range.start, marks[0].time_range.end
    kernels = [e for e in events if _is_device(e) and _inside(e, start, end)]
    by_name = collections.Counter()
    for k in kernels:
        by_name[k.name] += (min(k.time_range.end, end) - max(k.time_range.start, start)) / 1e6
    return {"wall": (end - start) / 1e6,
            "busy": union_length([(k.time_range.start, k.time_range.end) for k in kernels], start, end) / 1e6,
            "kernels": len(kernels),
            "operations": sum(1 for e in events if not _is_device(e) and _inside(e, start, end) and _top_level(e)),
            "by_kernel": by_name}


class BusyMeter:
    """Profiles stretches of work by label: of each label's stretches, ``count`` after the first ``skip``
    (:attr:`profiled` says which, so a caller's timings can leave them out: they run slower)."""

    def __init__(self, device, skip: int = 1, count: int = 2):
        self.cuda = torch.device(device).type == "cuda"
        self.skip, self.count = skip, count
        self.seen = collections.Counter()
        self.profiled = collections.defaultdict(list)   # label -> the indices of its stretches that were profiled
        self._traces = collections.defaultdict(list)    # read when the figures are asked for, not while timing

    @classmethod
    def last_two(cls, device, stretches: int) -> "BusyMeter":
        """A meter for the last two of ``stretches`` stretches of each label (never the first, which warms up)."""
        return cls(device, skip=max(1, stretches - 2), count=2)

    @contextlib.contextmanager
    def stretch(self, label: str):
        n = self.seen[label]
        self.seen[label] += 1
        if not self.skip <= n < self.skip + self.count:
            yield
            return
        from torch.profiler import ProfilerActivity, profile, record_function

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        if self.cuda:
            torch.cuda.synchronize()   # nothing from before runs inside the stretch
        with profile(activities=activities) as trace:
            with record_function(STRETCH):
                yield
                if self.cuda:
                    torch.cuda.synchronize()   # the stretch ends when its last kernel does
        self.profiled[label].append(n)
        self._traces[label].append(trace)

    def timed(self, label: str, fn):
        """``fn`` with each call a stretch of ``label``."""
        def run(*args, **kwargs):
            with self.stretch(label):
                return fn(*args, **kwargs)
        return run

    @contextlib.contextmanager
    def around_training_sampler(self, label: str = "adapter"):
        """Within the block every call of the stage-2 training sampler (one adapter iteration: its steps, the
        gradient step, decode, loss, backward and optimiser step) is a stretch of ``label``."""
        from comfyui_personalvideo.training.few_step_sampler import FewStepTrainingSampler

        with bench_common.patched((FewStepTrainingSampler, "sample", self.timed(label, FewStepTrainingSampler.sample))):
            yield self

    def summary(self, label: str) -> dict | None:
        """Means over the label's measured stretches (the kernels' busy seconds summed), or None."""
        if not self._traces.get(label):
            return None
        runs = [stretch_figures(trace.events()) for trace in self._traces[label]]
        mean = {k: statistics.fmean(r[k] for r in runs) for k in ("wall", "busy", "kernels", "operations")}
        mean["by_kernel"] = sum((r["by_kernel"] for r in runs), collections.Counter())
        mean["stretches"] = len(runs)
        return mean


def report(meter: BusyMeter, names, top: int = 5) -> None:
    """Prints each label's figures (``names``: (label, what it is) pairs), the host operations of the first
    against the last, and the first label's busiest kernels."""
    found = [(label, name, meter.summary(label)) for label, name in names]
    found = [(label, name, s) for label, name, s in found if s is not None]
    if not found:
        print("  busy: nothing was profiled (it profiles stage-2 iterations after the first: use more iterations)")
        return
    print(f"  busy (torch.profiler; mean of {found[0][2]['stretches']} profiled stretch(es) each, wall time under "
          "the profiler):")
    for _, name, s in found:
        line = f"    {name}: {s['wall']:.4f} s, {s['operations']:.0f} host operations " \
               f"({1e6 * s['wall'] / max(s['operations'], 1):.1f} us of wall each)"
        if meter.cuda:
            line += f", GPU busy {100 * s['busy'] / s['wall']:.1f} %, {s['kernels']:.0f} kernels and copies " \
                    f"({1e6 * s['wall'] / max(s['kernels'], 1):.1f} us of wall each)"
        print(line)
    if len(found) > 1 and found[-1][2]["operations"]:
        print(f"    host operations, {found[0][1]} / {found[-1][1]}: "
              f"{found[0][2]['operations'] / found[-1][2]['operations']:.2f}x")
    if not meter.cuda:
        print("    (GPU busy share and kernels: with --device cuda)")
        return
    first = found[0][2]
    busy = sum(first["by_kernel"].values()) or 1.0
    print(f"    busiest kernels of {found[0][1]} (share of kernel time):")
    for name, seconds in first["by_kernel"].most_common(top):
        print(f"      {100 * seconds / busy:5.1f} %  {name[:90]}")
