"""Tiny raw-dataset pieces written by hand for the build's bad-input tests: a DFEW clip folder of JPEG
frames and a DFEW split CSV (shared by tests/test_build_bad_input.py and tests/test_robustness_data.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np


def frames_dir(d: Path, n: int, value: int, hw: tuple[int, int] = (32, 32)) -> None:
    """``d/1.jpg .. d/n.jpg``: flat ``hw`` frames whose grey level steps by 3 from ``value``."""
    d.mkdir(parents=True)
    for i in range(1, n + 1):
        cv2.imwrite(str(d / f"{i}.jpg"), np.full((*hw, 3), (value + 3 * i) % 256, np.uint8))


def split_csv(path: Path, rows: list[list]) -> None:
    """A DFEW split CSV: header ``video_name,label`` then ``rows``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_name", "label"])
        w.writerows(rows)
