"""DFEW: reading the real layout (which the synthetic generator also writes) and building one record.

Layout (REFERENCES.md): ``Clip/clip_224x224/<id>/<n>.jpg`` frame folders (natural sort),
``Clip/original/<id>.mp4`` videos, ``Clip/clip_224x224_16f/<id>/`` 16-frame folders,
``EmoLabel_DataSplit/{train,test}(single-labeled)/set_<k>.csv`` (``video_name,label``, labels 1-based),
optional ``landmarks/<id>.npy`` ``(n, 68, 2)`` pixel landmarks of the source frames.

CSV problems (malformed rows, labels that are not whole numbers in 1..7, duplicates, rows pointing to
missing clips or outside the root, a clip in both splits) become skip records here; problems with a
clip's pixels become skips in ``process``.
"""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

from data_prep.builders.common import Item, Result, Skip, inside
from fer_jax.data.constants import DFEW_CLASS_NAMES
from fer_jax.data.fold_splits import STORED_SPLIT
from fer_jax.preprocess.clip import FaceRecordSettings, face_landmarks, make_face_record
from fer_jax.preprocess.video import read_frames

SOURCES = ("auto", "frames", "video", "frames16")
_SOURCE_DIRS = {"frames": "Clip/clip_224x224", "frames16": "Clip/clip_224x224_16f"}
_VIDEO_DIR = "Clip/original"
_VIDEO_EXT = (".mp4", ".avi", ".MP4", ".AVI")


# the per-clip settings (recorded in the manifest) have one home, shared with predict
Settings = FaceRecordSettings


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


def _parse_label(text: str) -> int:
    """A CSV label as an int; ``ValueError`` naming why for anything that is not a whole finite number
    (``2.7`` must never become class 2, ``inf`` / ``nan`` must never reach ``int``)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"label {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"label {text!r} is not a finite number")
    if value != int(value):
        raise ValueError(f"label {text!r} is not a whole number")
    return int(value)


def _read_csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """``(line number, row)`` of a split file without its header; a file that does not parse as CSV text
    is a one-line ``ValueError`` naming it (another encoding, a field over the csv module's limit)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"unreadable split file {path}: {str(e).splitlines()[0]}") from None
    if not rows:
        raise ValueError(f"empty split file {path}")
    has_header = [h.strip().lower() for h in rows[0][:2]] == ["video_name", "label"]
    return [(i, row) for i, row in enumerate(rows, start=1) if not (has_header and i == 1)]


def read_layout(root: Path, fold: int, source: str = "auto", landmarks: str = "template"):
    """Items of both splits of fold ``fold`` and the skip records of the CSVs.

    Returns ``(items, skipped, label_files)`` with ``items`` ``{"train": [Item], "test": [Item]}``.
    Rows whose name resolves outside ``root`` (``..``, an absolute path, a symlink leading out) are
    skipped with that reason; so are two rows that name the same clip (``1`` and ``00001``) with
    different labels (the same label: the first is kept, the repeat recorded as a repair).
    """
    csvs = split_csvs(root, fold)
    lm_dir = Path(landmarks.split(":", 1)[1]) if landmarks.startswith("file:") else None
    if lm_dir is not None and not lm_dir.is_absolute() and (root / lm_dir).is_dir():
        lm_dir = root / lm_dir  # a relative DIR is looked up under --root first
    items: dict[str, list[Item]] = {}
    skipped: list[Skip] = []
    for split, path in csvs.items():
        rows: dict[str, list[tuple[int, str]]] = {}
        for line_no, row in _read_csv_rows(path):
            where = f"{path.parent.name}/{path.name}:{line_no}"
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < 2 or not row[0].strip():
                skipped.append(Skip(where, f"malformed row {row!r}"))
                continue
            name, lab = row[0].strip(), row[1].strip()
            try:
                label = _parse_label(lab)
            except ValueError as e:
                skipped.append(Skip(f"{split}/{name}", f"{e} ({where})"))
                continue
            if not 1 <= label <= 7:
                skipped.append(Skip(f"{split}/{name}", f"label {label} out of range 1..7 ({where})"))
                continue
            rows.setdefault(name, []).append((label, where))
        # rows grouped by the clip they resolve to: "1" and "00001" are one clip, one record id
        by_key: dict[str, list[tuple[str, int, str, dict[str, str]]]] = {}
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
            if not inside(root, clip_path):
                skipped.append(
                    Skip(
                        f"{split}/{name}", f"clip {name!r} resolves outside --root ({entries[0][1]}); refused"
                    )
                )
                continue
            paths = {kind: str(clip_path)}
            if lm_dir is not None:
                for cand in _name_candidates(name):
                    p = lm_dir / f"{cand}.npy"
                    if p.is_file() and inside(lm_dir, p):
                        paths["landmarks"] = str(p)
                        break
            key = clip_path.stem if kind == "video" else clip_path.name
            by_key.setdefault(key, []).append((name, entries[0][0], entries[0][1], paths))
        split_items = []
        for key, entries in by_key.items():
            labels = {lab for _, lab, _, _ in entries}
            if len(labels) > 1:
                rows_ = ", ".join(w for _, _, w, _ in entries)
                skipped.append(
                    Skip(
                        f"{split}/{key}",
                        f"rows {rows_} name this clip with conflicting labels {sorted(labels)}",
                    )
                )
                continue
            for name, _, where, _ in entries[1:]:
                skipped.append(
                    Skip(
                        f"{split}/{key}",
                        f"row {where} ({name!r}) repeats clip {key}; kept the first",
                        repaired=True,
                    )
                )
            _, label, _, paths = entries[0]
            split_items.append(Item(split, key, label - 1, paths))
        items[split] = split_items
    test_keys = {it.key for it in items["test"]}
    leaked = [it for it in items["train"] if it.key in test_keys]
    for it in leaked:
        skipped.append(Skip(f"train/{it.key}", "clip is also in the test split; kept it in test only"))
    items["train"] = [it for it in items["train"] if it.key not in test_keys]
    return items, skipped, list(csvs.values())


def read_all_folds(root: Path, source: str = "auto", landmarks: str = "template", num_folds: int = 5):
    """Every clip of the ``num_folds`` folds once, and each fold's split lists (``--fold all``).

    Returns ``(items, skipped, label_files, folds)``: ``items`` ``{"clips": [Item]}`` (one item per clip,
    whichever fold's CSVs name it), ``folds`` ``{"1": {"train": [key], "test": [key]}, ...}``. Each fold's
    CSVs are read and checked as ``read_layout`` does (its skip records carry ``fold<k>/``; a problem of
    the clip itself, the same in every fold, is recorded once); a clip whose label differs between folds
    is skipped in all of them.
    """
    by_key: dict[str, Item] = {}
    labels: dict[str, set[int]] = {}
    folds: dict[str, dict[str, list[str]]] = {}
    skipped: list[Skip] = []
    seen: set[tuple[str, str]] = set()
    label_files: list[Path] = []
    for k in range(1, num_folds + 1):
        items, skips, files = read_layout(root, k, source, landmarks)
        label_files += files
        for s in skips:
            clip = s.item.split("/", 1)[-1]
            if (clip, s.reason) not in seen:  # a missing clip is named in all five folds' CSVs
                seen.add((clip, s.reason))
                skipped.append(Skip(f"fold{k}/{s.item}", s.reason, s.repaired))
        folds[str(k)] = {split: [it.key for it in its] for split, its in items.items()}
        for it in items["train"] + items["test"]:
            labels.setdefault(it.key, set()).add(it.label)
            by_key.setdefault(it.key, Item(STORED_SPLIT, it.key, it.label, it.paths))
    conflicting = {key for key, labs in labels.items() if len(labs) > 1}
    for key in sorted(conflicting):
        names = ", ".join(DFEW_CLASS_NAMES[i] for i in sorted(labels[key]))
        skipped.append(
            Skip(f"{STORED_SPLIT}/{key}", f"the folds' CSVs give clip {key} different labels ({names})")
        )
    folds = {
        k: {s: [x for x in keys if x not in conflicting] for s, keys in f.items()} for k, f in folds.items()
    }
    items = {STORED_SPLIT: [it for key, it in sorted(by_key.items()) if key not in conflicting]}
    return items, skipped, label_files, folds


def process(item: Item, settings: Settings) -> Result:
    """Reads, aligns and encodes one clip (runs in a worker process)."""
    h = hashlib.sha1()
    src = item.paths.get("frames") or item.paths.get("video")
    need_all = settings.simulate_events or settings.per_frame_landmarks
    # without per-frame side information only the T sampled frames need decoding
    frames = read_frames(src, num_frames=None if need_all else settings.frames, hasher=h)
    lms, notes = face_landmarks(frames, settings, landmark_file=item.paths.get("landmarks"))
    stats: dict[str, float] = {}
    example = make_face_record(frames, settings, landmarks=lms, label=item.label, id=item.key, stats=stats)
    return Result(item.split, item.key, example=example, checksum=h.hexdigest(), notes=notes, stats=stats)


def class_names() -> tuple[str, ...]:
    return DFEW_CLASS_NAMES
