"""The optional early end of stage 2 (training/early_stop.py): the rule, the trainer stopping by it, the mark
on the curve."""
import math

import numpy as np
import torch

from comfyui_personalvideo.training import early_stop, sia_trainer
from comfyui_personalvideo.training.curves import render_curves
from comfyui_personalvideo.training.early_stop import EarlyStop

from face_fixtures import tiny_onnx  # noqa: F401
from test_train_core import new_adapter, run_sia, setup  # noqa: F401
from test_train_identity import face_analysis, parts, photo  # noqa: F401


def stop_point(values, **rule):
    stopper = EarlyStop(**rule)
    for n in range(1, len(values) + 1):
        if stopper.update(values[:n]):
            return n
    return None


def test_the_rule_as_written():
    assert (early_stop.WINDOW, early_stop.PATIENCE, early_stop.MIN_RISE, early_stop.MIN_ITERATIONS) == \
        (40, 60, 0.005, 150)
    flat = [0.3] * 400
    assert stop_point(flat) == 150                     # first smoothed value at 40, +60 = 100: held to 150
    rising = [0.3 + 0.001 * i for i in range(400)]    # +0.04 per window: a rise every few iterations
    assert stop_point(rising) is None
    # rises until 200, then flat: the smoothed mean keeps rising, ever more slowly, for 40 more; its last rise
    # of more than 0.005 comes between 200 and 240, and 60 iterations later it stops
    plateau = [0.3 + 0.002 * min(i, 200) for i in range(400)]
    n = stop_point(plateau)
    assert 260 < n <= 301, n
    # iterations without a face are left out of the mean; a whole window without a face gives no value
    gaps = [math.nan if i % 2 else 0.3 for i in range(400)]
    assert stop_point(gaps) == 150
    assert stop_point([math.nan] * 400) is None


def test_noise_below_the_minimum_rise_does_not_count_as_a_rise():
    rng = np.random.default_rng(0)
    noisy = list(0.5 + 0.002 * rng.standard_normal(400))
    assert stop_point(noisy) is not None and stop_point(noisy) < 250


def test_the_trainer_stops_by_the_rule_and_keeps_the_stop_point(setup, monkeypatch):  # noqa: F811
    """A short rule (window 2, patience 3, never before 5) and a minimum rise no similarity can make: the
    stage stops after iteration 5 of 8, with the last video and the stop point kept."""
    monkeypatch.setattr(sia_trainer, "EarlyStop",
                        lambda: EarlyStop(window=2, patience=3, min_rise=1.0, min_iterations=5))
    history = run_sia(setup, new_adapter(setup[0]), iterations=8, early_stop=True)
    assert len(history.loss) == len(history.similarity) == len(history.smoothed) == 5
    assert history.early_stop == {"window": 2, "patience": 3, "min_rise": 1.0, "min_iterations": 5,
                                  "stopped_at": 5}
    assert history.last_latent is not None and history.last_latent.shape[0] == 2
    off = run_sia(setup, new_adapter(setup[0]), iterations=8)
    assert len(off.loss) == 8 and off.early_stop is None and off.smoothed == []


def test_the_stop_point_is_drawn_on_the_curve():
    series = {"token loss": [1.0, 0.9, 0.8], "adapter loss": [0.6, 0.55, 0.5, 0.5, 0.5],
              "face similarity": [0.3, 0.35, 0.4, 0.4, 0.4]}
    plain = render_curves(series)
    marked = render_curves(series, stopped_at=4, smoothed=[math.nan, 0.33, 0.38, 0.4, 0.4])
    assert plain.shape == marked.shape and not torch.equal(plain, marked)
    mark = torch.tensor([0x94, 0x67, 0xbd]) / 255.0     # curves.STOP_COLOUR
    near = (marked[0] - mark).abs().max(-1).values < 0.08
    assert near.sum() > 50 and ((plain[0] - mark).abs().max(-1).values < 0.08).sum() == 0
