"""One seed per run, one independent random stream per purpose (docs/design.md, "Seeds").

A run has a single ``seed``. Every random draw it makes comes from a *named stream* whose seed
is a keyed hash of (run seed, stream name, index...): the data and its split, the model's
initialisation, each epoch's batch order and noise, the sampling noise, the real samples that
metrics compare with, the floors' real-vs-real draws and so on. Streams never overlap (unlike
``seed + 1`` / ``seed + 100`` offsets, where run 1's sampling stream is run 2's training
stream), adding a stream changes no other, and any of them can be re-derived from the seed
alone, which is what makes resume exact and a sample reproducible from its run.

The hash is BLAKE2b with an 8-byte digest, keyed with a constant; the result is taken
modulo 2**63 so that it is a valid seed for torch, numpy and Python alike.
"""

from __future__ import annotations

import hashlib

#: Largest seed a run accepts (torch's ``manual_seed`` takes 64-bit values; numpy any
#: non-negative int; 2**63 - 1 keeps the value a signed 64-bit integer everywhere).
MAX_SEED = 2**63 - 1

#: The streams of a run and what draws from them (documentation, and a guard against typos).
STREAMS: dict[str, str] = {
    "data": "synthetic data and the train/test split of datasets whose seed is null",
    "init": "the denoiser's initial weights",
    "train": "each epoch's batch order, timesteps, noise and augmentation (index: epoch)",
    "dropout": "torch's global RNG during each epoch: dropout, label dropout (index: epoch)",
    "augment": "per-example augmentation of the streaming data path (index: epoch, example)",
    "sample": "noise of the samples a run draws, per sample (diffctl.samplers.noise)",
    "reference": "the real sample the generated samples are compared with",
    "floors": "the real-vs-real draws of each metric's floor",
    "checkpoint-sample": "samples drawn for metrics at checkpoints during training",
    "checkpoint-reference": "the real sample of the metrics at checkpoints",
    "heldout": "the noise and timesteps of model metrics on held-out data (test-loss)",
    "reconstruction": "the noise of the reconstruction evaluation (psnr, ssim, lpips)",
    "inpaint": "which held-out images are inpainted",
    "c2st": "the cross-validation folds of classifier two-sample tests",
    "study-errors": "a size study's analysis: held-out noise and timesteps of the prediction "
                    "errors (the teacher run's seed)",
    "study-sample": "a size study's analysis: x_T (and sampler noise) of the denoising, "
                    "trajectory and latency draws (the teacher run's seed)",
}

_KEY = b"diffctl-seed-streams-v1"


def stream_seed(seed: int, stream: str, *index: int) -> int:
    """The seed of ``stream`` (and optional integer ``index``, e.g. an epoch) of run ``seed``.

    A value in [0, 2**63); equal inputs give equal seeds on every platform and Python.
    """
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r} (known: {', '.join(STREAMS)})")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, {MAX_SEED}], got {seed}")
    text = ":".join([str(seed), stream, *(str(int(i)) for i in index)])
    digest = hashlib.blake2b(text.encode(), digest_size=8, key=_KEY).digest()
    return int.from_bytes(digest, "little") & MAX_SEED
