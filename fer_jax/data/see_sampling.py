"""SEE frame sampling as the authors' code does it (hrdhrd/MCO-E-Net ``temporal_transforms.py``).

Their loader (train and inference alike) composes ``TemporalSubsampling(4)`` -- every 4th frame from a
random offset ``random.randint(0, 4)`` (both ends included: 5 offsets) -- with
``TemporalRandomCrop(4)`` -- a window of 4 consecutive subsampled frames starting at
``random.randint(0, max(0, n - 4 - 1))`` (their ``- 1`` keeps the last window from ever being chosen;
kept), loop-padded when shorter. The model reads the window's first and last frame, so the two frames
are 12 RAW frames apart at a random position. That needs shards holding every raw frame
(``data_prep.build --frames 0``): on 16 evenly spaced stored frames the same indices would be 12 STORED
frames apart, about 0.75 of the sequence.

``config.data.see_sampling``: ``"stride4"`` (default; fer_jax.preprocess.frames.sample_indices,
configs/demo_see.py's path) or ``"authors"`` (this module; configs/see_reference.py).
"""

from __future__ import annotations

import numpy as np

SEE_SAMPLINGS = ("stride4", "authors")
STRIDE = 4  # opts.sample_t_stride
DURATION = 4  # opts.sample_duration / inference_sample_duration
MAX_OFFSET = 4  # TemporalSubsampling: random.randint(0, 4)


def authors_window(num_available: int, rng: np.random.Generator | None) -> np.ndarray:
    """The 4 raw-frame indices their temporal transforms pick from a sequence of ``num_available``
    frames; ``rng`` None: offset 0 and the first window (deterministic)."""
    if num_available < 1:
        raise ValueError(f"cannot sample from {num_available} frames")
    offset = int(rng.integers(0, MAX_OFFSET + 1)) if rng is not None else 0
    # their frame_indices[num::4] is empty when num >= n (they never meet it: SEE has >= 18 frames)
    sub = list(range(min(offset, num_available - 1), num_available, STRIDE))
    rand_end = max(0, len(sub) - DURATION - 1)
    begin = int(rng.integers(0, rand_end + 1)) if rng is not None else 0
    out = sub[begin : begin + DURATION]
    for index in list(out):  # LoopPadding
        if len(out) >= DURATION:
            break
        out.append(index)
    while len(out) < DURATION:  # their loop pads one pass; a 1-frame window repeats itself
        out.append(out[-1])
    return np.asarray(out, np.int64)


def authors_indices(num_available: int, num_frames: int, rng: np.random.Generator | None) -> np.ndarray:
    """``(num_frames,)`` indices: the window's first and last frame for ``num_frames=2`` (the official
    model reads ``[:, :, 0]`` and ``[:, :, -1]``), else ``num_frames`` spread over the window."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    window = authors_window(num_available, rng)
    pos = np.round(np.linspace(0, len(window) - 1, num_frames)).astype(np.int64)
    return window[pos]
