"""SEE / DSEE: reading the single-eye RGB + event layout and building one record per sequence.

Layout (REFERENCES.md; the root may also be the folder that contains ``SEE/``):
``{frame,event}/<emotion>/<seq_name>/00000.jpg ...`` (both modalities JPEG frames), ``emotion.json``
(``{"labels": [...], "database": {name: {"subset": "training"|"testing", "annotations": {"label": ..}}}}``),
optional raw event streams ``raw_events/<seq_name>.{npy,npz,txt,csv,h5}`` (DSEE; format UNCONFIRMED)
with frame times beside them (``<seq>_frame_times.npy`` / ``<seq>.times.npy`` / ``frame_times`` in an
``.npz``; 30 fps assumed and recorded as a repair when absent).

Sequence names ``[seq#]_[ID]_[sex]_[age]_[degree]_[lighting]_[emotion]_[length]_[take#]`` give the
lighting (``normal``, ``Overexposed``, ``Low``, ``HDR``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from data_prep.builders.common import Item, Result, Skip, inside
from fer_jax.data.constants import LIGHTING_NAMES, SEE_CLASS_NAMES, SEE_SENSOR_HW
from fer_jax.preprocess import events as ev
from fer_jax.preprocess.clip import EyeRecordSettings, RawEvents, eye_frame_hw, make_eye_record
from fer_jax.preprocess.video import decode_image, list_frame_files, read_frames

EVENT_SOURCES = ("auto", "frames", "raw")
_ALIASES = {
    "happy": "happiness", "happiness": "happiness", "sad": "sadness", "sadness": "sadness",
    "anger": "angry", "angry": "angry", "neutral": "neutral", "surprise": "surprise",
    "surprised": "surprise", "fear": "fear", "fearful": "fear", "disgust": "disgust", "disgusted": "disgust",
}  # fmt: skip
_SUBSETS = {"training": "train", "train": "train", "testing": "test", "test": "test", "validation": "test"}
_RAW_EXT = (".npy", ".npz", ".h5", ".hdf5", ".txt", ".csv")
SENSOR_HW = SEE_SENSOR_HW  # DAVIS346


# the per-sequence settings have one home, shared with predict
Settings = EyeRecordSettings


def canonical_emotion(name: str) -> str | None:
    return _ALIASES.get(str(name).strip().lower())


def find_root(root: Path) -> Path:
    """The folder holding ``frame/`` (``root`` or ``root/SEE`` or ``root/DSEE``)."""
    for cand in (root, root / "SEE", root / "DSEE"):
        if (cand / "frame").is_dir() or (cand / "frames").is_dir():
            return cand
    raise ValueError(f"{root} has no frame/ folder (is --root the SEE root?)")


def lighting_of(seq: str) -> str | None:
    """Lighting condition from the sequence name (field 6, else any token that names one)."""
    tokens = seq.split("_")
    if len(tokens) > 5 and tokens[5].lower() in LIGHTING_NAMES:
        return tokens[5].lower()
    hits = [t.lower() for t in tokens if t.lower() in LIGHTING_NAMES]
    return hits[0] if len(hits) == 1 else None


def _folders(base: Path, dups: set[str] | None = None) -> dict[str, Path]:
    """``{seq_name: folder}`` over ``base/<emotion>/<seq>``; emotion folder names in any case. A name
    found under two emotion folders goes into ``dups`` (which folder is right cannot be told)."""
    out: dict[str, Path] = {}
    if not base.is_dir():
        return out
    for emo in sorted(base.iterdir()):
        if emo.is_dir():
            for seq in sorted(emo.iterdir()):
                if seq.is_dir():
                    if seq.name in out and dups is not None:
                        dups.add(seq.name)
                    out.setdefault(seq.name, seq)
    return out


class _JsonObject(dict):
    """A JSON object that remembers the keys it held more than once (``json`` keeps the last silently)."""

    repeated: dict[str, list]


def _json_object(pairs: list[tuple[str, object]]) -> _JsonObject:
    obj = _JsonObject()
    obj.repeated = {}
    for k, v in pairs:
        if k in obj:
            obj.repeated.setdefault(k, [obj[k]]).append(v)
        obj[k] = v
    return obj


def _raw_event_files(base: Path) -> dict[str, Path]:
    out = {}
    if base.is_dir():
        for p in base.iterdir():
            if p.suffix.lower() in _RAW_EXT and not p.stem.endswith(("_frame_times", ".times", "_times")):
                out.setdefault(p.stem, p)
    return out


def _labels_usable(split_file: dict) -> bool:
    """Whether emotion.json's ``labels`` (when given) names the 7 classes once each: integer labels index
    into it, so with a malformed list they cannot be read."""
    labels = split_file.get("labels")
    if labels is None or labels == []:
        return True
    if not isinstance(labels, list):
        return False
    canon = [canonical_emotion(x) for x in labels]
    return len(canon) == 7 and None not in canon and len(set(canon)) == 7


def class_order(split_file: dict) -> tuple[str, ...]:
    """Class names in label order: emotion.json's ``labels`` when it names the 7 classes, else the default."""
    labels = split_file.get("labels") if isinstance(split_file, dict) else None
    if isinstance(labels, list) and len(labels) == 7:
        canon = [canonical_emotion(x) for x in labels]
        if None not in canon and len(set(canon)) == 7:
            return tuple(canon)
    return SEE_CLASS_NAMES


def read_layout(root: Path, events: str = "auto"):
    """Items per split, skip records, the label files, the class names and the event source used.

    Skipped with their reason: a sequence listed twice in emotion.json with different entries, found
    under two emotion folders, or whose folder / event file resolves outside ``root`` (a symlink)."""
    base = find_root(root)
    split_path = next((p for p in (base / "emotion.json", root / "emotion.json") if p.is_file()), None)
    if split_path is None:
        raise ValueError(f"no emotion.json in {base}")
    try:
        with open(split_path, encoding="utf-8") as f:
            spec = json.load(f, object_pairs_hook=_json_object)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"malformed {split_path}: {str(e).splitlines()[0]}") from e
    if not isinstance(spec, dict) or not isinstance(spec.get("database"), dict):
        raise ValueError(f"malformed {split_path}: no 'database' object")
    names = class_order(spec)
    int_labels_ok = _labels_usable(spec)
    dup_folders: set[str] = set()
    frame_dirs = _folders(base / "frame", dup_folders) or _folders(base / "frames", dup_folders)
    event_dirs = _folders(base / "event", dup_folders) or _folders(base / "events", dup_folders)
    raw_files = _raw_event_files(base / "raw_events")
    repeated = getattr(spec["database"], "repeated", {})
    if events == "auto":
        events = "frames" if event_dirs else ("raw" if raw_files else "frames")
    skipped: list[Skip] = []
    items: dict[str, list[Item]] = {"train": [], "test": []}
    for seq, entry in spec["database"].items():
        where = f"emotion.json/{seq}"
        if seq in repeated:
            if any(e != entry for e in repeated[seq]):
                skipped.append(Skip(where, f"listed {len(repeated[seq])} times with different entries"))
                continue
            skipped.append(Skip(where, f"listed {len(repeated[seq])} times; kept one", repaired=True))
        if seq in dup_folders:
            skipped.append(Skip(where, "sequence folder found under more than one emotion folder"))
            continue
        if not isinstance(entry, dict):
            skipped.append(Skip(where, "entry is not an object"))
            continue
        split = _SUBSETS.get(str(entry.get("subset", "")).lower())
        if split is None:
            skipped.append(Skip(where, f"unknown subset {entry.get('subset')!r}"))
            continue
        ann = entry.get("annotations")
        raw_label = ann.get("label") if isinstance(ann, dict) else None
        if isinstance(raw_label, int) and not isinstance(raw_label, bool):
            if not int_labels_ok:
                skipped.append(Skip(where, "integer label but emotion.json's 'labels' is not the 7 emotions"))
                continue
            emo = names[raw_label] if 0 <= raw_label < len(names) else None
        else:
            emo = canonical_emotion(raw_label) if isinstance(raw_label, str) else None
        if emo is None:
            skipped.append(Skip(where, f"label {raw_label!r} is not one of the 7 emotions"))
            continue
        light = lighting_of(seq)
        if light is None:
            skipped.append(Skip(where, "cannot read the lighting condition from the sequence name"))
            continue
        if seq not in frame_dirs:
            skipped.append(Skip(where, "no frame folder for this sequence"))
            continue
        folder_emo = canonical_emotion(frame_dirs[seq].parent.name)
        if folder_emo is not None and folder_emo != emo:
            skipped.append(
                Skip(where, f"label {emo!r} disagrees with its folder {frame_dirs[seq].parent.name!r}")
            )
            continue
        paths = {"frames": str(frame_dirs[seq])}
        if events == "frames":
            if seq not in event_dirs:
                skipped.append(Skip(where, "no event folder for this sequence"))
                continue
            paths["event"] = str(event_dirs[seq])
        else:
            if seq not in raw_files:
                skipped.append(Skip(where, "no raw event file for this sequence"))
                continue
            paths["raw_events"] = str(raw_files[seq])
        outside = [role for role, p in paths.items() if not inside(root, Path(p))]
        if outside:
            skipped.append(Skip(where, f"{' and '.join(outside)} path resolves outside --root; refused"))
            continue
        items[split].append(
            Item(split, seq, names.index(emo), paths, {"lighting": LIGHTING_NAMES.index(light)})
        )
    if not any(items.values()) and not skipped:
        raise ValueError(f"{split_path} lists no sequences")
    return items, skipped, [split_path], names, events


def first_frame_hw(items: dict[str, list[Item]]) -> tuple[int, int] | None:
    """``(h, w)`` of the first readable RGB frame of the layout (splits in name order), or None: a
    ``--resize shorter`` build fixes its stored shape from it (SEE's frames all come from one sensor)."""
    for split in sorted(items):
        for item in items[split]:
            try:
                files = list_frame_files(item.paths["frames"])
                if files:
                    return decode_image(files[0].read_bytes(), str(files[0])).shape[:2]
            except (OSError, ValueError):  # a broken sequence is skipped (with its reason) by the build
                continue
    return None


def frame_times_for(raw_path: Path, num_frames: int, fps: float) -> tuple[np.ndarray, str | None]:
    """Frame timestamps (seconds) of a sequence with raw events, and a repair note when assumed."""
    stem, parent = raw_path.stem, raw_path.parent
    if raw_path.suffix.lower() == ".npz":
        with np.load(raw_path, allow_pickle=False) as z:
            for k in ("frame_times", "frame_timestamps", "timestamps"):
                if k in z.files:
                    return _seconds(np.asarray(z[k])), None
    for name in (
        f"{stem}_frame_times.npy",
        f"{stem}.times.npy",
        f"{stem}_times.npy",
        f"{stem}.frame_times.npy",
    ):
        p = parent / name
        if p.is_file():
            return _seconds(np.load(p, allow_pickle=False)), None
    for name in (f"{stem}_frame_times.txt", f"{stem}.times.txt", f"{stem}_times.txt"):
        p = parent / name
        if p.is_file():
            return _seconds(np.loadtxt(p, ndmin=1)), None
    return np.arange(1, num_frames + 1) / fps, f"no frame times for {stem}; assumed {fps:g} fps"


def _seconds(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t).ravel()
    return t.astype(np.float64) * (1e-6 if t.dtype.kind in "iu" else 1.0)


def process(item: Item, settings: Settings) -> Result:
    """Reads one sequence of both modalities and encodes it (runs in a worker process)."""
    h = hashlib.sha1()
    rgb = read_frames(item.paths["frames"], hasher=h)
    notes: list[str] = []
    stats: dict[str, float] = {}
    if "event" in item.paths:
        event = read_frames(item.paths["event"], hasher=h)
        if event and rgb and event[0].shape[:2] != rgb[0].shape[:2]:  # each resized to the same shape
            (eh, ew), (rh, rw) = event[0].shape[:2], rgb[0].shape[:2]
            notes.append(f"event frames are {ew}x{eh}, RGB frames {rw}x{rh}; both resized to the same shape")
        if len(event) != len(rgb):
            notes.append(
                f"{len(rgb)} RGB frames but {len(event)} event frames; used the first {min(len(rgb), len(event))}"
            )
    else:
        raw = Path(item.paths["raw_events"])
        h.update(raw.read_bytes())
        height, width = SENSOR_HW if rgb[0].shape[:2] == SENSOR_HW else rgb[0].shape[:2]
        try:
            events, report = ev.read_events(raw, height=height, width=width)
        except (OSError, ValueError) as e:
            raise ValueError(f"broken event file {raw.name}: {str(e).splitlines()[0]}") from e
        if report.empty:
            raise ValueError(f"event file {raw.name} holds no valid events ({report.summary()})")
        if not report.clean:
            notes.append(f"event file {raw.name} repaired: {report.summary()}")
        times, note = frame_times_for(raw, len(rgb), settings.fps)
        if note:
            notes.append(note)
        if len(times) != len(rgb):
            raise ValueError(f"{len(times)} frame times for {len(rgb)} frames in {raw.name}")
        event = RawEvents(events, times, height, width)
    if rgb and settings.resize != "square" and settings.height and settings.width:
        own = eye_frame_hw(settings.resize, settings.size, rgb[0].shape[:2])
        if own != (settings.height, settings.width):  # one shape per build: the model batches them
            (rh, rw), (h, w) = rgb[0].shape[:2], (settings.height, settings.width)
            notes.append(f"frames are {rw}x{rh}: resized to the build's {w}x{h}, their aspect not kept")
    example = make_eye_record(rgb, event, settings, label=item.label, lighting=item.extra["lighting"],
                              id=item.key, stats=stats)  # fmt: skip
    return Result(item.split, item.key, example=example, checksum=h.hexdigest(), notes=notes, stats=stats)
