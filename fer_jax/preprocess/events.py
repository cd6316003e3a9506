"""Event-camera processing in pure numpy: simulation from video, voxel grids, SEE-style event frames,
and reading / validating raw event streams.

Used by the synthetic generator (``data_prep.synthesize``), the shard builders and predict. No JAX here.

Event format (``EVENT_DTYPE``): a structured array with fields
  - ``t`` float64, seconds (from the start of the recording; raw files with integer timestamps are read as
    microseconds and converted, see ``read_events``);
  - ``x``, ``y`` uint16 pixel column / row;
  - ``p`` int8 polarity, +1 (ON, brightness rose) or -1 (OFF).
Events are sorted by ``t`` (non-decreasing).

Event frames (``events_to_frame``), the rendering the synthetic SEE dataset stores as JPEG (the real SEE
release does not document its renderer; this is our documented choice): grey background (128, 128, 128),
channels in RGB order, R = 128 + ``step`` * ON count, G = 128 + ``step`` * (ON - OFF) count (a DV-style signed
accumulator), B = 128 - ``step`` * OFF count, clipped to [0, 255].

Voxel grids (``events_to_voxel_grid``): signed polarity spread bilinearly over ``num_bins`` in time within
``[t_start, t_end)``, then the nonzero voxels are standardised to zero mean / unit std (E2VID's convention,
zeros stay zero).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

EVENT_DTYPE = np.dtype([("t", "<f8"), ("x", "<u2"), ("y", "<u2"), ("p", "i1")])


def empty_events() -> np.ndarray:
    """A zero-length event array."""
    return np.zeros((0,), dtype=EVENT_DTYPE)


def make_events(t, x, y, p) -> np.ndarray:
    """Packs 1-d arrays of equal length into an ``EVENT_DTYPE`` array (no sorting, no checks)."""
    ev = np.empty((len(t),), dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, p
    return ev


def log_intensity(frames: np.ndarray, eps: float = 1e-2) -> np.ndarray:
    """Log of linear intensity in [0, 1] (uint8 frames are scaled by 1/255); ``eps`` keeps black finite,
    as the photoreceptor's dark current does. Shape preserved, float32."""
    f = np.asarray(frames)
    if f.dtype == np.uint8:
        f = f.astype(np.float32) / 255.0
    return np.log(f.astype(np.float32) + eps)


# ----------------------------------------------------------------------------------------------------------
# Simulation (ESIM / v2e style)
# ----------------------------------------------------------------------------------------------------------


def simulate_events(
    log_frames: np.ndarray,
    timestamps: np.ndarray,
    *,
    contrast_threshold: float = 0.2,
    threshold_sigma: float = 0.03,
    refractory: float = 1e-3,
    noise_rate: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Simulates a DVS event stream from log-intensity frames.

    Args:
      log_frames: ``(N, H, W)`` log intensity (see ``log_intensity``), N >= 1.
      timestamps: ``(N,)`` strictly increasing times in seconds.
      contrast_threshold: mean ON/OFF threshold in log units.
      threshold_sigma: per-pixel std of the ON and OFF thresholds (fixed-pattern mismatch), drawn once.
      refractory: seconds after an emitted event during which the pixel emits nothing.
      noise_rate: background-activity events per pixel per second (random polarity, uniform in time).
      seed: seeds the threshold mismatch and the noise.

    Returns:
      Events (``EVENT_DTYPE``), sorted by time.

    Each pixel keeps a reference log level (initialised to the first frame). Between frames the log
    intensity is linearly interpolated; every crossing of reference +/- threshold emits an event at the
    interpolated crossing time and moves the reference by one threshold, so one interval can hold several
    events per pixel. The reference advances over all crossings, also those dropped by the refractory
    period (the pixel loses them, it does not catch up later). ``EventSimulator`` is the same simulation
    fed one frame at a time (a long video never held whole).
    """
    L = np.asarray(log_frames, dtype=np.float64)
    ts = np.asarray(timestamps, dtype=np.float64)
    if L.ndim != 3:
        raise ValueError(f"log_frames must be (N, H, W), got shape {L.shape}")
    if ts.shape != (L.shape[0],):
        raise ValueError(f"timestamps must be ({L.shape[0]},), got shape {ts.shape}")
    if L.shape[0] > 1 and np.any(np.diff(ts) <= 0):
        raise ValueError("timestamps must be strictly increasing")
    sim = EventSimulator(L[0], ts[0], contrast_threshold=contrast_threshold, threshold_sigma=threshold_sigma,
                         refractory=refractory, noise_rate=noise_rate, seed=seed)  # fmt: skip
    chunks = [sim.step(L[k + 1], ts[k + 1]) for k in range(L.shape[0] - 1)]
    chunks = [c for c in chunks if c.size]
    return np.concatenate(chunks) if chunks else empty_events()


class EventSimulator:
    """``simulate_events`` one frame at a time: ``step(log_frame, t)`` returns the events (sorted by time)
    between the previous frame and this one; the per-pixel state (reference levels, thresholds, last event
    times, the noise generator) is carried between calls, so the steps concatenated equal
    ``simulate_events`` of all frames at once. Memory: O(H * W), whatever the number of frames."""

    def __init__(
        self,
        first_log_frame: np.ndarray,
        t0: float,
        *,
        contrast_threshold: float = 0.2,
        threshold_sigma: float = 0.03,
        refractory: float = 1e-3,
        noise_rate: float = 0.0,
        seed: int = 0,
    ):
        if contrast_threshold <= 0:
            raise ValueError("contrast_threshold must be positive")
        first = np.asarray(first_log_frame, dtype=np.float64)
        if first.ndim != 2:
            raise ValueError(f"a log frame must be (H, W), got shape {first.shape}")
        self.height, self.width = h, w = first.shape
        self.refractory, self.noise_rate = float(refractory), float(noise_rate)
        self.rng = np.random.default_rng(seed)
        min_c = 0.01  # thresholds drawn below this would make a pixel fire on noise of the float rounding
        self.c_on = np.maximum(contrast_threshold + threshold_sigma * self.rng.standard_normal(h * w), min_c)
        self.c_off = np.maximum(contrast_threshold + threshold_sigma * self.rng.standard_normal(h * w), min_c)
        self.c_min = min(self.c_on.min(), self.c_off.min())
        self.ref = first.reshape(-1).copy()
        self.last_t = np.full(h * w, -np.inf)
        self.prev, self.t = first.reshape(-1), float(t0)

    def step(self, log_frame: np.ndarray, t: float) -> np.ndarray:
        """Events between the previous frame and ``log_frame`` at time ``t`` (> the previous time)."""
        l1 = np.asarray(log_frame, dtype=np.float64)
        if l1.shape != (self.height, self.width):
            raise ValueError(f"log frame of shape {l1.shape}, expected {(self.height, self.width)}")
        t0, t1 = self.t, float(t)
        if not t1 > t0:
            raise ValueError("timestamps must be strictly increasing")
        w, ref, last_t, refractory = self.width, self.ref, self.last_t, self.refractory
        l0, l1 = self.prev, l1.reshape(-1)
        parts = []
        cand = np.flatnonzero(np.abs(l1 - ref) >= self.c_min)  # most pixels do not fire: work on the few
        if cand.size:
            d = l1[cand] - ref[cand]
            sign = np.where(d > 0, 1, -1)
            c = np.where(d > 0, self.c_on[cand], self.c_off[cand])
            cnt = np.floor(np.abs(d) / c).astype(np.int64)
            dl = l1[cand] - l0[cand]
            # sign * dl > 0 holds whenever a crossing happens (the reference stays within one threshold
            # of the previous frame); the guard only protects against float rounding
            ok = (cnt > 0) & (sign * dl > 0)
            pix, counts, sign, c, dl = cand[ok], cnt[ok], sign[ok], c[ok], dl[ok]
        if cand.size and pix.size:
            j = np.repeat(np.arange(pix.size), counts)  # event -> index into pix
            starts = np.cumsum(counts) - counts
            idx = np.arange(j.size) - starts[j]  # 0-based crossing index within the pixel
            levels = ref[pix][j] + sign[j] * (idx + 1) * c[j]
            te = t0 + (levels - l0[pix][j]) / dl[j] * (t1 - t0)
            ref[pix] += sign * counts * c
            keep = np.ones(j.size, dtype=bool)
            if refractory > 0:
                # crossings of one pixel within an interval are evenly spaced by `gap`: keep the first one
                # past the refractory of the previous event, then every `step`-th one
                gap = (c / np.abs(dl) * (t1 - t0))[j]
                first = te - idx * gap
                i0 = np.maximum(np.ceil((last_t[pix][j] + refractory - first) / gap - 1e-9), 0)
                step = np.maximum(np.ceil(refractory / gap - 1e-9), 1)
                keep = (idx >= i0) & (np.mod(idx - i0, step) == 0)
                kj, kt = j[keep], te[keep]
                if kj.size:
                    is_last = np.r_[kj[1:] != kj[:-1], True]
                    last_t[pix[kj[is_last]]] = kt[is_last]
            kp = pix[j[keep]]
            parts.append(make_events(te[keep], kp % w, kp // w, sign[j[keep]]))
        if self.noise_rate > 0:
            rng, hw = self.rng, self.height * self.width
            m = rng.poisson(self.noise_rate * hw * (t1 - t0))
            npix = rng.integers(0, hw, m)
            parts.append(
                make_events(
                    rng.uniform(t0, t1, m), npix % w, npix // w, rng.choice(np.array([-1, 1], np.int8), m)
                )
            )
        self.prev, self.t = l1, t1
        if not parts:
            return empty_events()
        ev = np.concatenate(parts)
        return ev[np.argsort(ev["t"], kind="stable")]


# ----------------------------------------------------------------------------------------------------------
# Representations
# ----------------------------------------------------------------------------------------------------------


def _window(events: np.ndarray, t_start: float, t_end: float) -> np.ndarray:
    if not t_end > t_start:
        raise ValueError(f"t_end ({t_end}) must be greater than t_start ({t_start})")
    t = events["t"]
    return events[(t >= t_start) & (t < t_end)]


def events_to_voxel_grid(
    events: np.ndarray,
    *,
    num_bins: int,
    height: int,
    width: int,
    t_start: float,
    t_end: float,
    normalize: bool = True,
) -> np.ndarray:
    """Voxel grid ``(num_bins, height, width)`` float32 of the events with ``t_start <= t < t_end``.

    Each event's time maps to ``tau = (t - t_start) / (t_end - t_start) * (num_bins - 1)``; its polarity
    (+1/-1) goes to bins ``floor(tau)`` and ``floor(tau) + 1`` with weights ``1 - frac`` and ``frac``
    (``num_bins == 1``: everything into bin 0). Aligning the window to a frame interval (not to the first /
    last event) keeps grids of different intervals comparable. With ``normalize`` the nonzero voxels are
    standardised to zero mean and unit std (std below 1e-6: only centred); zeros stay zero.
    Events outside the image are ignored (validate streams first with ``validate_events``).
    """
    if num_bins < 1:
        raise ValueError("num_bins must be >= 1")
    ev = _window(events, t_start, t_end)
    ev = ev[(ev["x"] < width) & (ev["y"] < height)]
    grid = np.zeros((num_bins, height, width), dtype=np.float64)
    if ev.size:
        p = ev["p"].astype(np.float64)
        flat = ev["y"].astype(np.int64) * width + ev["x"].astype(np.int64)
        g = grid.reshape(num_bins, -1)
        if num_bins == 1:
            np.add.at(g, (np.zeros_like(flat), flat), p)
        else:
            tau = (ev["t"] - t_start) / (t_end - t_start) * (num_bins - 1)
            left = np.floor(tau).astype(np.int64)
            frac = tau - left
            np.add.at(g, (left, flat), p * (1.0 - frac))
            right = left + 1
            inside = right < num_bins
            np.add.at(g, (right[inside], flat[inside]), (p * frac)[inside])
    if normalize:
        nz = grid != 0
        if nz.any():
            mean, std = grid[nz].mean(), grid[nz].std()
            grid[nz] = (grid[nz] - mean) / (std if std > 1e-6 else 1.0)
    return grid.astype(np.float32)


def events_to_frame(
    events: np.ndarray, *, height: int, width: int, t_start: float, t_end: float, step: int = 64
) -> np.ndarray:
    """SEE-style event frame ``(height, width, 3)`` uint8, RGB order, of events in ``[t_start, t_end)``.

    Grey background 128; R = 128 + step * ON, G = 128 + step * (ON - OFF), B = 128 - step * OFF, clipped.
    """
    ev = _window(events, t_start, t_end)
    ev = ev[(ev["x"] < width) & (ev["y"] < height)]
    flat = ev["y"].astype(np.int64) * width + ev["x"].astype(np.int64)
    on = np.bincount(flat[ev["p"] > 0], minlength=height * width).reshape(height, width)
    off = np.bincount(flat[ev["p"] < 0], minlength=height * width).reshape(height, width)
    img = np.stack([128 + step * on, 128 + step * (on - off), 128 - step * off], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# Reading and validation
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class EventReport:
    """What ``read_events`` / ``validate_events`` found and did; every repair is counted here."""

    num_input: int = 0
    num_output: int = 0
    out_of_range: int = 0  # dropped: x >= width or y >= height (or negative before the uint16 cast)
    bad_polarity: int = 0  # repaired: 0/1 encodings mapped to -1/+1; anything else dropped
    bad_polarity_dropped: int = 0
    non_monotonic: int = 0  # events whose timestamp was below its predecessor's: stream re-sorted by time
    non_finite_time: int = 0  # dropped: NaN / inf timestamps
    empty: bool = False
    time_unit: str = "s"  # what the raw file held ("s" or "us", converted to seconds)
    source: str = ""

    @property
    def clean(self) -> bool:
        """True when nothing was dropped or repaired and the stream is not empty."""
        return not (
            self.out_of_range
            or self.bad_polarity
            or self.bad_polarity_dropped
            or self.non_monotonic
            or self.non_finite_time
            or self.empty
        )

    def summary(self) -> str:
        parts = [f"{self.num_output}/{self.num_input} events kept"]
        for name in (
            "out_of_range",
            "bad_polarity",
            "bad_polarity_dropped",
            "non_monotonic",
            "non_finite_time",
        ):
            v = getattr(self, name)
            if v:
                parts.append(f"{name}={v}")
        if self.empty:
            parts.append("EMPTY")
        return ", ".join(parts)


def validate_events(
    events: np.ndarray, *, height: int, width: int, report: EventReport | None = None
) -> tuple[np.ndarray, EventReport]:
    """Checks a stream against a ``height x width`` sensor; returns ``(clean events, report)``.

    Accepts any structured array with fields t, x, y, p (signed or float coordinates allowed). Drops
    non-finite timestamps, out-of-range coordinates and polarities other than -1/+1 (a stream entirely in
    {0, 1} is the common 0 = OFF encoding and is remapped instead); re-sorts non-monotonic timestamps
    (stable); flags an empty result. Counts go into the report.
    """
    rep = report if report is not None else EventReport()
    names = set(events.dtype.names or ())
    missing = {"t", "x", "y", "p"} - names
    if missing:
        raise ValueError(f"event array lacks fields {sorted(missing)}")
    rep.num_input = int(events.size)
    t = events["t"].astype(np.float64)
    x = (
        events["x"].astype(np.int64)
        if events["x"].dtype.kind in "iu"
        else np.floor(events["x"]).astype(np.int64)
    )
    y = (
        events["y"].astype(np.int64)
        if events["y"].dtype.kind in "iu"
        else np.floor(events["y"]).astype(np.int64)
    )
    p = events["p"].astype(np.int64)
    keep = np.isfinite(t)
    rep.non_finite_time = int((~keep).sum())
    inr = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    rep.out_of_range = int((keep & ~inr).sum())
    keep &= inr
    pk = p[keep]
    if pk.size and np.all((pk == 0) | (pk == 1)) and np.any(pk == 0):
        rep.bad_polarity = int((pk == 0).sum())
        p = np.where(p == 0, -1, p)
    good_p = (p == 1) | (p == -1)
    rep.bad_polarity_dropped = int((keep & ~good_p).sum())
    keep &= good_p
    out = make_events(t[keep], x[keep], y[keep], p[keep])
    if out.size > 1:
        dec = np.diff(out["t"]) < 0
        rep.non_monotonic = int(dec.sum())
        if rep.non_monotonic:
            out = out[np.argsort(out["t"], kind="stable")]
    rep.num_output = int(out.size)
    rep.empty = out.size == 0
    return out, rep


def _structured_from_columns(cols: dict[str, np.ndarray]) -> np.ndarray:
    n = len(cols["t"])
    dt = np.dtype([(k, cols[k].dtype) for k in ("t", "x", "y", "p")])
    arr = np.empty((n,), dtype=dt)
    for k in ("t", "x", "y", "p"):
        arr[k] = cols[k]
    return arr


def read_events(
    path: str | os.PathLike, *, height: int | None = None, width: int | None = None
) -> tuple[np.ndarray, EventReport]:
    """Reads a raw event stream and returns ``(events in EVENT_DTYPE, report)``.

    Formats: ``.npy`` (structured array with fields t, x, y, p), ``.npz`` (a structured array under
    ``events``, or separate ``t``, ``x``, ``y``, ``p`` arrays), ``.txt`` / ``.csv`` (one event per line,
    ``t x y p``, whitespace or comma separated, ``#`` comments), ``.h5`` / ``.hdf5`` (datasets ``x``, ``y``,
    ``t``, ``p`` at the root or under ``events/``; needs h5py). Integer timestamps are taken as
    microseconds and converted to seconds. With ``height`` and ``width`` the stream is validated
    (``validate_events``); without them only timestamps, polarity and emptiness are checked.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no event file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        raw = np.load(path, allow_pickle=False)
        if raw.dtype.names is None:
            raise ValueError(f"{path}: expected a structured array with fields t, x, y, p")
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "events" in z.files:
                raw = z["events"]
            elif {"t", "x", "y", "p"} <= set(z.files):
                raw = _structured_from_columns({k: z[k] for k in ("t", "x", "y", "p")})
            else:
                raise ValueError(f"{path}: expected 'events' or t, x, y, p arrays, found {z.files}")
    elif suffix in (".txt", ".csv"):
        with open(path) as f:
            lines = [
                ln.replace(",", " ").split() for ln in f if ln.strip() and not ln.lstrip().startswith("#")
            ]
        if lines and any(len(ln) != 4 for ln in lines):
            raise ValueError(f"{path}: every line must hold 4 values 't x y p'")
        vals = np.array(lines, dtype=np.float64).reshape(-1, 4)
        t_is_int = bool(vals.size) and all("." not in ln[0] and "e" not in ln[0].lower() for ln in lines)
        raw = _structured_from_columns(
            {
                "t": vals[:, 0].astype(np.int64) if t_is_int else vals[:, 0],
                "x": vals[:, 1],
                "y": vals[:, 2],
                "p": vals[:, 3].astype(np.int64),
            }
        )
    elif suffix in (".h5", ".hdf5"):
        try:
            import h5py
        except ImportError as e:
            raise ValueError(f"{path}: reading .h5 event files needs h5py (pip install h5py)") from e
        with h5py.File(path, "r") as f:
            grp = f["events"] if "events" in f else f
            raw = _structured_from_columns({k: np.asarray(grp[k]) for k in ("t", "x", "y", "p")})
    else:
        raise ValueError(f"{path}: unknown event file type {suffix!r} (use .npy, .npz, .txt, .csv, .h5)")
    report = EventReport(source=str(path))
    if raw["t"].dtype.kind in "iu":
        report.time_unit = "us"
        cols = {k: raw[k] for k in ("x", "y", "p")}
        cols["t"] = raw["t"].astype(np.float64) * 1e-6
        raw = _structured_from_columns(cols)
    if height is None or width is None:
        big = 65536  # the uint16 coordinate range
        return validate_events(raw, height=big, width=big, report=report)
    return validate_events(raw, height=height, width=width, report=report)
