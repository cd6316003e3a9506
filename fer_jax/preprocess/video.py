"""Reading clips: a video file or a folder of frame images -> RGB uint8 frames.

Every failure raises ``ValueError`` with a one-line reason that names the file (the builders record it as
the skip reason; predict prints it), so a broken input never becomes a silently wrong example.

Streaming (``frame_count``, ``iter_frames``, ``StreamedClip``): a long video is read one frame at a time
and only the frames a record needs are held, so memory does not grow with the clip's length.
"""

from __future__ import annotations

import contextlib
import hashlib
import operator
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer_jax.preprocess.frames import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, natural_key, sample_indices


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a frame folder in natural order (hidden files ignored).

    An entry named like a frame that is not a readable file (a dangling link, a folder named ``3.jpg``)
    raises ``ValueError`` naming it: dropping it would silently shorten the clip.
    """
    folder = Path(folder)
    files = []
    for p in folder.iterdir():
        if p.name.startswith(".") or p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if not p.is_file():
            what = "a dangling link" if p.is_symlink() and not p.exists() else "not a file"
            raise ValueError(f"frame {p} is {what}")
        files.append(p)
    return sorted(files, key=lambda p: natural_key(p.name))


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """JPEG/PNG bytes -> ``(H, W, 3)`` RGB uint8; ``ValueError`` when the bytes do not decode fully."""
    if not data:
        raise ValueError(f"empty image file {name}")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise ValueError(f"unreadable image {name}")
    # libjpeg decodes a truncated JPEG into a grey-padded image without failing: require the EOI marker
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-16:]:
        raise ValueError(f"truncated JPEG {name}")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def _read_folder(folder: Path, num_frames: int | None, hasher) -> list[np.ndarray]:
    files = list_frame_files(folder)
    if not files:
        raise ValueError(f"no image files in {folder}")
    if num_frames is not None:
        files = [files[i] for i in sample_indices(len(files), num_frames)]
    frames = []
    for f in files:
        data = f.read_bytes()
        if hasher is not None:
            hasher.update(data)
        frames.append(decode_image(data, str(f)))
    shapes = {fr.shape for fr in frames}
    if len(shapes) > 1:
        raise ValueError(f"frames of different sizes {sorted(shapes)} in {folder}")
    return frames


def _video_frames(path: Path, decode: Callable[[int], bool] = lambda i: True) -> Iterator[tuple[int, Any]]:
    """``(index, frame)`` for every frame of a video file, in order: the one reader loop of this module.

    Frames ``decode(index)`` picks are decoded to RGB ``(H, W, 3)`` uint8; the others are only grabbed
    (cheap) and come as None. Raises ``ValueError`` on an unreadable file or a frame that does not decode;
    an empty video simply yields nothing (callers say what that means for them). Close the generator (or
    exhaust it) to release the reader; ``with contextlib.closing(...)`` when stopping early.
    """
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"unreadable video {path}")
        i = 0
        while cap.grab():
            frame = None
            if decode(i):
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    raise ValueError(f"frame {i} of video {path} does not decode")
                frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield i, frame
            i += 1
    finally:
        cap.release()


def _read_video(path: Path, num_frames: int | None, hasher) -> list[np.ndarray]:
    if hasher is not None:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                hasher.update(chunk)
    if num_frames is None:
        frames = [frame for _, frame in _video_frames(path)]
        if not frames:
            raise ValueError(f"no decodable frames in video {path}")
        return frames
    # count by grabbing (the container's frame count is unreliable), then decode only what we keep
    n = sum(1 for _ in _video_frames(path, lambda i: False))
    if n == 0:
        raise ValueError(f"no decodable frames in video {path}")
    order = sample_indices(n, num_frames).tolist()  # short clips repeat frames: keep sample_indices' order
    wanted = set(order)
    kept = {i: frame for i, frame in _video_frames(path, wanted.__contains__) if frame is not None}
    if len(kept) < len(wanted):
        raise ValueError(f"video {path} ended before frame {max(wanted - set(kept))}")
    return [kept[j] for j in order]


def read_frames(path: str | os.PathLike, *, num_frames: int | None = None, hasher=None) -> list[np.ndarray]:
    """RGB uint8 frames ``[(H, W, 3), ...]`` of a video file or a frame folder (natural sort).

    ``num_frames`` decodes only the frames ``sample_indices(n, num_frames)`` picks (repeating frames of
    short clips); ``hasher`` (a ``hashlib`` object) is fed the source bytes for the build's checksums.
    Raises ``ValueError`` with a one-line reason on missing, empty, unreadable or truncated input.
    """
    path = Path(path)
    if path.is_dir():
        return _read_folder(path, num_frames, hasher)
    if not path.exists():
        raise ValueError(f"no such video or frame folder {path}")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        data = path.read_bytes()
        if hasher is not None:
            hasher.update(data)
        frame = decode_image(data, str(path))
        return [frame] * (num_frames or 1)
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise ValueError(f"unknown video type {path.suffix!r} for {path}")
    return _read_video(path, num_frames, hasher)


def _check_source(path: Path) -> None:
    if not path.exists():
        raise ValueError(f"no such video or frame folder {path}")
    if not path.is_dir() and path.suffix.lower() not in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS):
        raise ValueError(f"unknown video type {path.suffix!r} for {path}")


def frame_count(path: str | os.PathLike) -> int:
    """The number of frames ``read_frames(path)`` returns, without decoding them (a video's frames are
    counted by grabbing: the container's count is unreliable). ``ValueError`` on an empty input."""
    path = Path(path)
    _check_source(path)
    if path.is_dir():
        n = len(list_frame_files(path))
        if n == 0:
            raise ValueError(f"no image files in {path}")
        return n
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return 1
    n = sum(1 for _ in _video_frames(path, lambda i: False))
    if n == 0:
        raise ValueError(f"no decodable frames in video {path}")
    return n


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """The frames of ``read_frames(path)`` (same pixels, same checks), decoded one at a time."""
    path = Path(path)
    _check_source(path)
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise ValueError(f"no image files in {path}")
        shape = None
        for f in files:
            frame = decode_image(f.read_bytes(), str(f))
            if shape is not None and frame.shape != shape:
                raise ValueError(f"frames of different sizes {sorted({shape, frame.shape})} in {path}")
            shape = frame.shape
            yield frame
        return
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        yield decode_image(path.read_bytes(), str(path))
        return
    empty = True
    with contextlib.closing(_video_frames(path)) as frames:  # a consumer that stops early frees the reader
        for _, frame in frames:
            empty = False
            yield frame
    if empty:
        raise ValueError(f"no decodable frames in video {path}")


def read_kept(path: str | os.PathLike, keep: Iterable[int]) -> dict[int, np.ndarray]:
    """``{index: frame}`` of the frames ``keep`` names, decoding only those (a folder's other files are
    not read; a video's other frames are grabbed, not decoded)."""
    path = Path(path)
    _check_source(path)
    wanted = sorted(set(int(i) for i in keep))
    if path.is_dir():
        files = list_frame_files(path)
        if not files:
            raise ValueError(f"no image files in {path}")
        if wanted and (wanted[0] < 0 or wanted[-1] >= len(files)):
            raise ValueError(f"frame {wanted[-1]} asked of {path}, which has {len(files)}")
        out = {i: decode_image(files[i].read_bytes(), str(files[i])) for i in wanted}
        shapes = {f.shape for f in out.values()}
        if len(shapes) > 1:
            raise ValueError(f"frames of different sizes {sorted(shapes)} in {path}")
        return out
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        frame = decode_image(path.read_bytes(), str(path))
        return {i: frame for i in wanted}
    out, want = {}, set(wanted)
    with contextlib.closing(_video_frames(path, want.__contains__)) as frames:
        for i, frame in frames:
            if frame is not None:
                out[i] = frame
            if len(out) == len(want):
                break  # the rest of the video is not even grabbed
    if len(out) < len(want):
        raise ValueError(f"video {path} ended before frame {max(want - set(out))}")
    return out


class StreamedClip(Sequence):
    """A clip of ``len(clip)`` frames that holds only the frames ``keep`` names: what a record builder
    indexes (``clip[i]``), filled either by one streaming pass (iterating the clip decodes every frame once,
    for consumers that need all of them, e.g. per-frame landmarks, and keeps the named ones) or by
    ``load()`` (decodes only the named ones). Indexing a frame that is not kept raises ``IndexError``.

    Attributes: ``path``, ``keep`` (set of indices), ``held`` (``{index: (H, W, 3) uint8}``).
    """

    def __init__(self, path: str | os.PathLike, keep: Iterable[int], *, length: int | None = None):
        self.path = Path(path)
        self.length = frame_count(self.path) if length is None else int(length)
        self.keep = {int(i) for i in keep}
        if self.keep and (min(self.keep) < 0 or max(self.keep) >= self.length):
            raise ValueError(f"kept frames {sorted(self.keep)} outside the {self.length} of {self.path}")
        self.held: dict[int, np.ndarray] = {}
        self.complete = False

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[np.ndarray]:
        n = 0
        for i, frame in enumerate(iter_frames(self.path)):
            if i in self.keep:
                self.held[i] = frame
            n += 1
            yield frame
        if n != self.length:
            raise ValueError(f"{self.path}: decoded {n} frames, counted {self.length}")
        self.complete = True

    def load(self) -> StreamedClip:
        """Decodes the kept frames not held yet (only those); returns the clip."""
        if not self.complete:
            self.held.update(read_kept(self.path, self.keep - set(self.held)))
            self.complete = True
        return self

    def __getitem__(self, i):  # type: ignore[override]
        i = operator.index(i)
        if i < 0:
            i += self.length
        if i not in self.held:
            raise IndexError(f"frame {i} of {self.path} is not held (kept: {sorted(self.keep)})")
        return self.held[i]


def checksum_files(paths: Sequence[str | os.PathLike]) -> str:
    """sha1 over the bytes of ``paths`` in the given order (source checksums of the manifest)."""
    h = hashlib.sha1()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
