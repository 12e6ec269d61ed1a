"""Seeds and random states.

Training randomness that matters for reproducibility is *derived*, not drawn from
global state: each sample's augmentation and each micro-batch's point sampling use
a generator seeded from ``(seed, purpose, position in the sample stream)``. A
sample therefore gets the same random draws whatever the number of processes,
data workers or accumulation steps, and after a resume. The global python / numpy
/ torch generators are still seeded per rank and saved in checkpoints for
anything else that draws from them.
"""
from __future__ import annotations

import random

import numpy as np
import torch

AUGMENT = 1  # purpose tags for derive_seed
CRITERION = 2


def derive_seed(*values: int) -> int:
    """A 63-bit seed that is a well-mixed function of non-negative ints."""
    return int(np.random.SeedSequence(list(values)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """This process's global random states, as types ``torch.load(weights_only=True)`` accepts."""
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {**numpy_state, "state": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                                           "pos": int(numpy_state["state"]["pos"])}},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()  # the current device's
    return state


def set_rng_state(state: dict) -> None:
    """Restores what ``rng_state`` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(state["numpy"])
    key, pos = numpy_state["state"]["key"], numpy_state["state"]["pos"]
    numpy_state["state"] = {"key": key.numpy().astype(np.uint32), "pos": pos}
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
