"""What a training job's log says while it runs (issue 20, items 2 and 4): a line when the
numba kernels are made ready (compiled or loaded from the cache), and progress lines with
the update, the losses, the active latents and updates/s, so a job is never silent.

No test depends on timing: the first validation window always gets a progress line, and
the interval between lines is set to 0 where a test wants one line per window.
"""

from __future__ import annotations

import re

import pytest

from collapse_spectroscopy.training import protocol, scan_point
from collapse_spectroscopy.training.engines.numba import engine as numba_engine
from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point
from synthetic_gaussian import gaussian_splits

SPECTRUM = [0.6, 0.3, 0.1, 0.0]
LINE = re.compile(
    r"T=0\.05 \(beta=[0-9.e+-]+\), seed=0: update ([0-9,]+)/[0-9,]+, batch loss [0-9.e+-]+, "
    r"validation loss [0-9.e+-]+ \(best [0-9.e+-]+ at [0-9,]+\), (\d) of 4 latents active, "
    r"[0-9,]+ updates/s"
)


def progress_lines(text: str) -> list[re.Match]:
    return [m for m in map(LINE.fullmatch, text.splitlines()) if m]


@pytest.fixture(scope="module")
def splits():
    xtr, xva, _, _, _ = gaussian_splits(SPECTRUM, sizes=(3000, 1000, 1000), seed=3)
    return xtr, xva


def test_one_progress_line_per_window_with_the_active_latents(splits, capsys, monkeypatch):
    """With the interval at 0 every validation window logs a line. At T = 0.05 the modes
    with lambda/V = 0.6, 0.3, 0.1 are active and the structural zero is not (docs/science.md
    §2: a mode is active below T_k = lambda_k / V); trained to early stopping, the last line
    counts 3 of 4 (the collapsed latent's rho is ~1e-3 at equilibrium, far below 0.05)."""
    monkeypatch.setattr(protocol, "PROGRESS_EVERY_S", 0.0)
    config = TrainConfig(max_updates=40_000, eval_every=500, patience=0.25)
    result = train_scan_point(*splits, 0.05, latents=4, config=config)
    lines = progress_lines(capsys.readouterr().err)
    assert [int(m.group(1).replace(",", "")) for m in lines] == list(
        range(500, result.updates_run + 1, 500)
    )
    assert lines[-1].group(2) == "3"
    assert "loss spike" not in capsys.readouterr().err  # an ordinary training has none


class SpikeAt:
    """A real engine whose reported batch loss at update ``at`` (1-based) is ``factor``
    times larger: the trainer sees a spike at a known update without one being trained."""

    def __init__(self, engine, at: int, factor: float):
        self.engine, self.at, self.factor, self.done = engine, at, factor, 0
        self.name, self.windows = engine.name, []

    def run_window(self, n):
        losses = self.engine.run_window(n).copy()
        if self.done < self.at <= self.done + n:
            losses[self.at - self.done - 1] *= self.factor
        self.done += n
        self.windows.append(losses)
        return losses

    def __getattr__(self, key):
        return getattr(self.engine, key)


def spiked_training(splits, at: int, factor: float, capsys, monkeypatch, engines=None):
    """The job log of a training whose batch loss at update ``at`` is ``factor`` times the
    real one; the wrapped engine goes to ``engines`` if given."""
    real = scan_point.make_engine

    def make(name, problem):
        engine = SpikeAt(real(name, problem), at, factor)
        if engines is not None:
            engines.append(engine)
        return engine

    monkeypatch.setattr(scan_point, "make_engine", make)
    result = train_scan_point(
        *splits, 0.05, latents=4, config=TrainConfig(max_updates=2000, eval_every=500)
    )
    if engines is not None:
        engines.append(result)
    return capsys.readouterr().err


SPIKE = re.compile(
    r"T=0\.05 \(beta=[0-9.e+-]+\), seed=0: a loss spike at update 1,234: batch loss "
    r"([0-9.e+-]+), ([0-9.e+-]+) times the best validation loss \(([0-9.]+) at 1,000\); "
    r"1 batch\(es\) of updates 1,001-1,500 over 100 times; training goes on, early stopping "
    r"keeps the best weights \(docs/science.md §7b\)"
)


def test_a_loss_spike_is_reported_with_its_update(splits, capsys, monkeypatch):
    """A batch loss 1e6 times the ordinary one at update 1,234 gets one line naming that
    update, its window and its ratio to the best validation loss of the windows before
    (update 1,000 here: the loss still falls at this T over the first 2,000 updates); the
    numbers are checked against each other, not pinned."""
    engines = []
    err = spiked_training(splits, 1234, 1e6, capsys, monkeypatch, engines)
    lines = [m for m in map(SPIKE.fullmatch, err.splitlines()) if m]
    assert len(lines) == 1 and err.count("loss spike") == 1
    loss, ratio, best = (float(g) for g in lines[0].groups())
    # printed to 3 significant figures: the ratio agrees with loss / best to ~0.1 %
    assert ratio == pytest.approx(loss / best, rel=2e-3)
    assert ratio > 1e5  # an ordinary batch loss times 1e6, over a best of the same scale
    # the training log keeps each window's largest batch loss: the spike's in its window
    engine, result = engines
    assert list(result.log["train_loss_max"]) == [float(w.max()) for w in engine.windows]
    assert result.log["train_loss_max"].iloc[2] == float(engine.windows[2][233])
    assert list(result.log["train_loss"]) == [float(w.mean()) for w in engine.windows]


@pytest.mark.parametrize(("at", "factor"), [(300, 1e6), (1234, 20.0)])
def test_no_spike_line_in_the_first_window_or_under_the_factor(
    splits, capsys, monkeypatch, at, factor
):
    """The first window has no validation loss to compare with (its early batch losses are
    far above the trained loss anyway); 20 times an ordinary batch loss is under the factor
    100 (an ordinary batch at update 1,234 is within ~2x the best validation loss: 256
    samples' and one noise draw's scatter around a loss that still falls slowly)."""
    assert "loss spike" not in spiked_training(splits, at, factor, capsys, monkeypatch)


def test_first_window_always_logs_and_later_ones_wait(splits, capsys, monkeypatch):
    """With an interval no run reaches, exactly the first window's line is written."""
    monkeypatch.setattr(protocol, "PROGRESS_EVERY_S", 1e9)
    train_scan_point(*splits, 0.05, latents=4, config=TrainConfig(max_updates=2000, eval_every=500))
    lines = progress_lines(capsys.readouterr().err)
    assert [m.group(1) for m in lines] == ["500"]


def test_the_kernels_line_comes_before_training_and_once(splits, capsys, monkeypatch):
    """A process says once that it made the kernels ready (here: loaded from the cache or
    compiled, whichever this machine's cache holds), before the first progress line; the
    compile is not part of the training's elapsed time (it happens in the engine's
    construction, before the trainer's clock starts)."""
    monkeypatch.setattr(numba_engine, "_READY", set())
    config = TrainConfig(max_updates=1000, eval_every=500)
    train_scan_point(*splits, 0.05, latents=4, config=config)
    err = capsys.readouterr().err
    ready = [i for i, s in enumerate(err.splitlines()) if s.startswith("training kernels ")]
    first = next(i for i, s in enumerate(err.splitlines()) if LINE.fullmatch(s))
    assert len(ready) == 1 and ready[0] < first
    assert re.fullmatch(
        r"training kernels (compiled|loaded from the cache) in [0-9.]+ s",
        err.splitlines()[ready[0]],
    )
    train_scan_point(*splits, 0.05, latents=4, config=config)
    assert "training kernels " not in capsys.readouterr().err
