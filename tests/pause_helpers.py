"""Waiting for a job stopped by the test-only pause (``checkpoint.PAUSE_ENV``): the one
wait loop the kill and interrupt tests share. Nothing here depends on timing: the job
cannot finish first, it blocks at the pause until a signal comes."""

import sys
import time

TRAIN_CLI = [sys.executable, "-m", "collapse_spectroscopy.cli", "train"]


def pausable_training(
    prepared, max_updates: int, eval_every: int, checkpoint_every: int, engine: str = "numba"
) -> list[str]:
    """The ``train`` options of the kill and resume tests: 6 latents on ``prepared`` with
    early stopping out of reach (patience 30000 > any budget here), so that every point
    trains to its pause and then to ``max_updates``."""
    return [
        "--data",
        str(prepared),
        "--latents",
        "6",
        "--max-updates",
        str(max_updates),
        "--patience",
        "30000",
        "--eval-every",
        str(eval_every),
        "--checkpoint-every",
        str(checkpoint_every),
        "--engine",
        engine,
    ]


def wait_paused(proc, checkpoint, pause_at: int) -> str:
    """Wait until ``proc`` waits at update ``pause_at`` in the training whose checkpoint is
    ``checkpoint`` (its ``<checkpoint>.paused`` marker appears); remove the marker and
    return what it held. A job that ends, or never pauses, is killed and fails the test."""
    marker = checkpoint.parent / f"{checkpoint.name}.paused"
    deadline = time.time() + 300  # only a failed start gets here (it ends, or hangs)
    try:
        while not marker.exists():
            assert proc.poll() is None, f"ended before update {pause_at}: {proc.communicate()}"
            assert time.time() < deadline, f"no pause at update {pause_at} in 300 s"
            time.sleep(0.05)
    except BaseException:
        proc.kill()  # never leave a waiting job behind
        proc.communicate()
        raise
    text = marker.read_text()
    marker.unlink()
    return text
