"""Frame resizing as the MCO-E Net authors' loader does it: torchvision's ``transforms.Resize(N)`` on PIL
images, i.e. the shorter side becomes N with the aspect kept, PIL's bilinear filter.

- :func:`shorter_side_hw`: torchvision's output size for an int ``size`` (the shorter side becomes ``n``,
  the longer ``int(n * long / short)``, truncated: DAVIS346's 346x260 -> 133x100).
- :func:`resize_pil_bilinear`: ``PIL.Image.resize((W, H), BILINEAR)`` of an ``(h, w, C)`` array. On PIL
  images torchvision calls exactly this (its ``antialias`` argument does not apply to PIL): a triangle
  filter whose support widens by the scale factor when downscaling (antialiased), uint8 results rounded in
  PIL's fixed point. cv2's ``INTER_LINEAR`` does not widen the filter and ``INTER_AREA`` is a box filter,
  so neither matches; the helper calls PIL itself (a dependency of the project) and matches it exactly.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

RESIZE_MODES = ("square", "shorter")  # data_prep.build --resize


def shorter_side_hw(height: int, width: int, n: int) -> tuple[int, int]:
    """``(H, W)`` of torchvision's ``Resize(n)`` for an ``height x width`` image: the shorter side becomes
    ``n``, the longer ``int(n * long / short)`` (truncated, as torchvision computes it)."""
    if height < 1 or width < 1 or n < 1:
        raise ValueError(f"cannot resize a {width}x{height} image to a shorter side of {n}")
    if width <= height:
        return int(n * height / width), n
    return n, int(n * width / height)


def resize_pil_bilinear(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``img`` ``(h, w)`` or ``(h, w, C)`` -> ``(H, W[, C])`` in the same dtype, as
    ``Image.fromarray(img).resize((W, H), Image.BILINEAR)``.

    uint8 with 3 channels resizes as one RGB image, uint8 with other channel counts per channel as ``L``
    images; float arrays (voxel grids) per channel as 32-bit ``F`` images (the same filter, no rounding).
    """
    H, W = int(hw[0]), int(hw[1])
    a = np.asarray(img)
    if a.ndim not in (2, 3):
        raise ValueError(f"expected an (h, w) or (h, w, C) image, got shape {a.shape}")
    bilinear = Image.Resampling.BILINEAR
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[-1] == 3:
        return np.asarray(Image.fromarray(a, "RGB").resize((W, H), bilinear))
    planes = a[..., None] if a.ndim == 2 else a
    mode = "L" if a.dtype == np.uint8 else "F"
    if mode == "F":
        planes = planes.astype(np.float32)
    out = [
        np.asarray(Image.fromarray(planes[..., c], mode).resize((W, H), bilinear))
        for c in range(planes.shape[-1])
    ]
    res = np.stack(out, axis=-1).astype(a.dtype)
    return res[..., 0] if a.ndim == 2 else res
