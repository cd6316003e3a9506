"""Input normalisation shared by the training pipeline and predict (uint8 pixels -> float32 model inputs).

- DFEW faces: ImageNet mean / std per RGB channel (the EfficientNetV2 / ResNet ports expect it).
- SEE / DSEE: the public SEE loaders' scalar statistics (REFERENCES.md): frames mean 0.22616537 / std
  0.118931554, JPEG event frames mean 0.504413 / std 0.06928615. Voxel grids (float, already standardised
  per grid by ``events_to_voxel_grid``) use the mean / std the builder measured and put in the manifest.
"""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
SEE_FRAME_MEAN, SEE_FRAME_STD = 0.22616537, 0.118931554
SEE_EVENT_MEAN, SEE_EVENT_STD = 0.504413, 0.06928615


def imagenet(frames: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 RGB -> float32 ImageNet-normalised."""
    return ((np.asarray(frames, np.float32) / 255.0) - IMAGENET_MEAN) / IMAGENET_STD


def imagenet_to_uint8(frames: np.ndarray) -> np.ndarray:
    """Inverse of :func:`imagenet`: normalised frames ``(..., 3)`` back to displayable uint8."""
    x = np.asarray(frames, np.float32) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def see_frames(frames: np.ndarray) -> np.ndarray:
    """SEE / DSEE intensity frames, uint8 -> float32 with the dataset's scalar statistics."""
    return ((np.asarray(frames, np.float32) / 255.0) - SEE_FRAME_MEAN) / SEE_FRAME_STD


def see_events(events: np.ndarray, mean: float | None = None, std: float | None = None) -> np.ndarray:
    """Event input -> float32. uint8 event frames: /255 then SEE's event statistics; float voxel grids:
    ``(v - mean) / std`` with the manifest's statistics (identity when none are given)."""
    x = np.asarray(events)
    if x.dtype == np.uint8:
        m = SEE_EVENT_MEAN if mean is None else mean
        s = SEE_EVENT_STD if std is None else std
        return ((x.astype(np.float32) / 255.0) - m) / s
    m = 0.0 if mean is None else mean
    s = 1.0 if std is None else std
    return (x.astype(np.float32) - m) / s
