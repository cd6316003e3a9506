"""DFEW: reading the real layout (which the synthetic generator also writes) and building one record.

Layout (REFERENCES.md): ``Clip/clip_224x224/<id>/<n>.jpg`` frame folders (natural sort),
``Clip/original/<id>.mp4`` videos, ``Clip/clip_224x224_16f/<id>/`` 16-frame folders,
``EmoLabel_DataSplit/{train,test}(single-labeled)/set_<k>.csv`` (``video_name,label``, labels 1-based),
optional ``landmarks/<id>.npy`` ``(n, 68, 2)`` pixel landmarks of the source frames.

CSV problems (malformed rows, labels out of range, duplicates, rows pointing to missing clips, a clip in
both splits) become skip records here; problems with a clip's pixels become skips in ``process``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from data_prep.builders.common import Item, Result, Skip
from fer_jax.data.schema import DFEW_CLASS_NAMES, encode_frames
from fer_jax.preprocess.clip import prepare_face_clip
from fer_jax.preprocess.landmarks import LBFLandmarker, load_landmark_file
from fer_jax.preprocess.video import read_frames

SOURCES = ("auto", "frames", "video", "frames16")
_SOURCE_DIRS = {"frames": "Clip/clip_224x224", "frames16": "Clip/clip_224x224_16f"}
_VIDEO_DIR = "Clip/original"
_VIDEO_EXT = (".mp4", ".avi", ".MP4", ".AVI")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Per-clip preprocessing settings (recorded in the manifest)."""

    frames: int = 16
    size: int = 112
    encoding: str = "jpeg"
    landmarks: str = "template"  # none | template | file:DIR | lbf:MODEL
    align: str = "detector"  # detector | landmarks (needs file: or lbf: landmarks)
    enhance: bool = True
    simulate_events: bool = False
    bins: int = 3
    fps: float = 25.0


def split_csvs(root: Path, fold: int) -> dict[str, Path]:
    """``{"train": path, "test": path}`` of fold ``fold``; tolerant to the folder's exact spelling."""
    base = root / "EmoLabel_DataSplit"
    if not base.is_dir():
        raise ValueError(f"{root} has no EmoLabel_DataSplit folder (is --root the DFEW root?)")
    out = {}
    for split in ("train", "test"):
        cands = sorted(p for p in base.iterdir() if p.is_dir() and p.name.lower().startswith(split))
        files = [d / f"set_{fold}.csv" for d in cands if (d / f"set_{fold}.csv").is_file()]
        if not files:
            raise ValueError(f"no {split} split file set_{fold}.csv under {base}")
        out[split] = files[0]
    return out


def _name_candidates(name: str) -> list[str]:
    """The zero-padding variants the paper's loader tries: as written, 5-digit padded, unpadded."""
    cands = [name]
    if name.isdigit():
        cands += [name.zfill(5), str(int(name))]
    return list(dict.fromkeys(cands))


def find_clip(root: Path, name: str, source: str) -> tuple[str, Path] | None:
    """``(kind, path)`` of a clip's frames folder or video, or None."""
    order = ["frames", "video"] if source == "auto" else [source]
    for kind in order:
        for cand in _name_candidates(name):
            if kind == "video":
                for ext in _VIDEO_EXT:
                    p = root / _VIDEO_DIR / f"{cand}{ext}"
                    if p.is_file():
                        return "video", p
            else:
                p = root / _SOURCE_DIRS[kind] / cand
                if p.is_dir():
                    return "frames", p
    return None


def read_layout(root: Path, fold: int, source: str = "auto", landmarks: str = "template"):
    """Items of both splits of fold ``fold`` and the skip records of the CSVs.

    Returns ``(items, skipped, label_files)`` with ``items`` ``{"train": [Item], "test": [Item]}``.
    """
    csvs = split_csvs(root, fold)
    lm_dir = Path(landmarks.split(":", 1)[1]) if landmarks.startswith("file:") else None
    if lm_dir is not None and not lm_dir.is_absolute() and (root / lm_dir).is_dir():
        lm_dir = root / lm_dir  # a relative DIR is looked up under --root first
    items: dict[str, list[Item]] = {}
    skipped: list[Skip] = []
    for split, path in csvs.items():
        rows: dict[str, list[tuple[int, str]]] = {}
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"empty split file {path}")
            if [h.strip().lower() for h in header[:2]] != ["video_name", "label"]:
                # no header: the first line is data
                f.seek(0)
                reader = csv.reader(f)
            for line_no, row in enumerate(reader, start=2 if header else 1):
                where = f"{path.parent.name}/{path.name}:{line_no}"
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) < 2 or not row[0].strip():
                    skipped.append(Skip(where, f"malformed row {row!r}"))
                    continue
                name, lab = row[0].strip(), row[1].strip()
                try:
                    label = int(float(lab))
                except ValueError:
                    skipped.append(Skip(f"{split}/{name}", f"label {lab!r} is not a number ({where})"))
                    continue
                if not 1 <= label <= 7:
                    skipped.append(Skip(f"{split}/{name}", f"label {label} out of range 1..7 ({where})"))
                    continue
                rows.setdefault(name, []).append((label, where))
        split_items = []
        for name, entries in rows.items():
            labels = {lab for lab, _ in entries}
            if len(labels) > 1:
                skipped.append(
                    Skip(f"{split}/{name}", f"duplicate rows with conflicting labels {sorted(labels)}")
                )
                continue
            for _, where in entries[1:]:
                skipped.append(
                    Skip(f"{split}/{name}", f"duplicate row ({where}); kept the first", repaired=True)
                )
            found = find_clip(root, name, source)
            if found is None:
                skipped.append(Skip(f"{split}/{name}", f"no clip folder or video for {name!r}"))
                continue
            kind, clip_path = found
            paths = {kind: str(clip_path)}
            if lm_dir is not None:
                for cand in _name_candidates(name):
                    if (lm_dir / f"{cand}.npy").is_file():
                        paths["landmarks"] = str(lm_dir / f"{cand}.npy")
                        break
            split_items.append(Item(split, clip_path.stem if kind == "video" else clip_path.name,
                                    entries[0][0] - 1, paths))  # fmt: skip
        items[split] = split_items
    test_keys = {it.key for it in items["test"]}
    leaked = [it for it in items["train"] if it.key in test_keys]
    for it in leaked:
        skipped.append(Skip(f"train/{it.key}", "clip is also in the test split; kept it in test only"))
    items["train"] = [it for it in items["train"] if it.key not in test_keys]
    return items, skipped, list(csvs.values())


_LBF: dict[str, LBFLandmarker] = {}


def process(item: Item, settings: Settings) -> Result:
    """Reads, aligns and encodes one clip (runs in a worker process)."""
    h = hashlib.sha1()
    src = item.paths.get("frames") or item.paths.get("video")
    mode = settings.landmarks
    need_all = settings.simulate_events or mode.startswith(("file:", "lbf:"))
    # without per-frame side information only the T sampled frames need decoding
    frames = read_frames(src, num_frames=None if need_all else settings.frames, hasher=h)
    notes: list[str] = []
    lms = None
    if mode.startswith("file:"):
        lm_path = item.paths.get("landmarks")
        if lm_path is None:
            notes.append("no landmark file; used the template")
        else:
            try:
                lms = load_landmark_file(lm_path, num_frames=len(frames))
            except ValueError as e:
                notes.append(f"{e}; used the template")
    elif mode.startswith("lbf:"):
        model = mode.split(":", 1)[1]
        if model not in _LBF:
            _LBF[model] = LBFLandmarker(model)
        lms = _lbf_landmarks(_LBF[model], frames)
        if lms is None:
            notes.append("LBF found no face; used the template")
    out = prepare_face_clip(
        frames,
        num_frames=settings.frames,
        size=settings.size,
        landmarks=lms,
        enhance=settings.enhance,
        align=settings.align if lms is not None else "detector",
        event_bins=settings.bins if settings.simulate_events else 0,
        fps=settings.fps,
    )
    example = {
        "frames": encode_frames(out["frames"], settings.encoding),
        "face_found": out["face_found"],
        "label": item.label,
        "id": item.key,
    }
    if mode != "none":
        example["landmarks"] = out["landmarks"]
    stats = {"frames_face_found": float(out["face_found"].sum()), "frames": float(len(out["face_found"]))}
    if settings.simulate_events:
        ev = out["event"]
        example["event"] = ev.astype(np.float16)
        stats.update(ev_sum=float(ev.sum()), ev_sumsq=float((ev.astype(np.float64) ** 2).sum()), ev_n=ev.size)
    return Result(item.split, item.key, example=example, checksum=h.hexdigest(), notes=notes, stats=stats)


def _lbf_landmarks(lbf: LBFLandmarker, frames: list[np.ndarray]) -> np.ndarray | None:
    from fer_jax.preprocess.clip import default_detector
    from fer_jax.preprocess.face import fit_face

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


def class_names() -> tuple[str, ...]:
    return DFEW_CLASS_NAMES
