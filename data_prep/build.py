"""Builds ArrayRecord shards (TFDS layout) + manifest.json from a raw DFEW, SEE or DSEE folder.

  python -m data_prep.build --dataset dfew --root RAW --out DIR [--fold 1|all] [--frames 16] [--size 128]
  python -m data_prep.build --dataset see  --root RAW --out DIR [--frames 16] [--size 100] [--resize shorter]

The result reads without this code: ``tfds.builder_from_directory(DIR).as_data_source("train")``, or
``fer_jax.data.pipeline`` with ``config.data.dir=DIR``. DFEW ``--fold all`` processes every clip once
into one stored split and writes the five folds into the manifest as split lists (``fold<k>_train`` /
``fold<k>_test``, chosen at train time with ``--config.data.fold=K``: ``fer_jax.data.fold_splits``).

Builds are atomic: the work happens in a hidden sibling folder ``.<out>.partial-<pid>`` that is renamed
to ``--out`` only when complete (with a ``_BUILD_COMPLETE`` marker). A re-run with the same settings
skips a finished build; an interrupted one leaves no ``--out``, and the clips it had processed (kept in
``.<out>.cache`` beside it) are read back by the next run with the same settings instead of processed
again. ``--out`` is never ``--root``, a folder holding it or one inside it, and ``--overwrite`` replaces only
a build of ours (a folder of other files is never deleted). Bad inputs are skipped (or repaired) with a
reason recorded in the manifest.

``--out gs://bucket/path`` (any ``etils.epath`` URI): TFDS and ArrayRecord write local files only, so the
build runs into the local mirror folder that training reads that bucket path through
(``fer_jax.paths.mirror_dir``), with all of the above, and is then uploaded with its ``_BUILD_COMPLETE``
marker last (a reader never takes a half-uploaded build for a finished one); a bucket that already holds a
build is mirrored first, so "already built" and ``--overwrite`` mean the same as for a local folder.

Exit status: 0 built (or already built); 1 nothing built, more than --max-skip of the items skipped, or
an unreadable layout; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from data_prep.builders.resume import ResultCache
from fer_jax.cli import one_line
from fer_jax.data.fold_splits import STORED_SPLIT, fold_entries, split_name
from fer_jax.data.manifest import COMPLETE_MARKER, MANIFEST_FILE, load_manifest, write_manifest
from fer_jax.data.schema import LIGHTING_NAMES, features
from fer_jax.paths import as_path, copy_tree, is_mirrored, is_remote, local_data_dir, mirror_dir
from fer_jax.preprocess.resize import RESIZE_MODES, shorter_side_hw
from fer_jax.preprocess.video import checksum_files

DEFAULTS = {
    "dfew": {
        "frames": 16,
        "size": 128,
    },  # configs/dfew.py: 128 px explains the paper's 15.2 GFLOPs (docs/ablations.md)
    "see": {"frames": 16, "size": 100},
    "dsee": {"frames": 16, "size": 100},
}


class UsageError(ValueError):
    """Bad command-line input (exit status 2)."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m data_prep.build",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", required=True, choices=("dfew", "see", "dsee"))
    p.add_argument("--root", "--raw", dest="root", required=True, help="the raw dataset folder")
    p.add_argument(
        "--out",
        required=True,
        help="output dataset folder (created atomically), or gs://... (built locally, uploaded)",
    )
    p.add_argument(
        "--fold",
        default="1",
        help="DFEW fold 1..5 (default 1), or all: every clip once, the 5 folds as split lists",
    )
    p.add_argument(
        "--frames", type=int, default=None, help="frames stored per clip (dfew 16, see 16; see: 0 = all)"
    )
    p.add_argument("--size", type=int, default=None, help="output side in pixels (dfew 128, see 100)")
    p.add_argument(
        "--resize",
        default="square",
        choices=RESIZE_MODES,
        help="see/dsee frame geometry: square = squashed to --size x --size (OpenCV, area when shrinking); "
        "shorter = the MCO-E Net authors' transforms.Resize(--size): shorter side = --size, aspect kept "
        "(346x260 -> 133x100), PIL bilinear; the manifest records the stored height and width "
        "(configs/see_reference.py: --frames 0 --resize shorter)",
    )
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)")
    p.add_argument(
        "--max-skip", type=float, default=0.01, help="fraction of items that may be skipped (0.01)"
    )
    p.add_argument(
        "--landmarks",
        default="auto",
        help="dfew landmark source: auto | dlib | none | template | file:DIR (<id>.npy, default DIR under "
        "--root) | lbf:MODEL | dlib:MODEL; auto = dlib where installed (pip install 'fer_jax[landmarks]'), "
        "else the template with a warning (a constant: no landmark mask, no AU analysis)",
    )
    p.add_argument(
        "--align",
        default="auto",
        choices=("auto", "detector", "landmarks"),
        help="dfew face alignment: Haar detector per frame, or a similarity fit of the landmarks onto the "
        "template (much faster, steadier); auto = landmarks with file:/lbf:/dlib landmarks, else detector",
    )
    p.add_argument(
        "--source", default="auto", choices=("auto", "frames", "video", "frames16"), help="dfew clip source"
    )
    p.add_argument(
        "--events", default="auto", choices=("auto", "frames", "raw"), help="see/dsee event source"
    )
    p.add_argument("--bins", type=int, default=3, help="voxel-grid bins for raw or simulated events (3)")
    p.add_argument("--simulate-events", action="store_true", help="dfew: add simulated event voxel grids")
    p.add_argument("--encoding", default="jpeg", choices=("jpeg", "raw"), help="frame storage (jpeg)")
    p.add_argument("--no-enhance", action="store_true", help="dfew: skip CLAHE / bilateral / unsharp mask")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier build of ours at --out (never other folders)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _settings(a: argparse.Namespace) -> dict:
    d = DEFAULTS[a.dataset]
    frames = d["frames"] if a.frames is None else a.frames
    size = d["size"] if a.size is None else a.size
    if not a.root or not Path(a.root).is_dir():
        raise UsageError(f"--root {a.root} is not a directory")
    fold = str(a.fold).strip().lower()
    if a.dataset == "dfew" and fold != "all" and fold not in ("1", "2", "3", "4", "5"):
        raise UsageError(f"--fold must be 1..5 or all, got {a.fold}")
    if frames < (1 if a.dataset == "dfew" else 0):
        raise UsageError(f"--frames must be >= {1 if a.dataset == 'dfew' else 0}, got {frames}")
    if not 16 <= size <= 1024:
        raise UsageError(f"--size must be in 16..1024, got {size}")
    if a.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {a.workers}")
    if not 0.0 <= a.max_skip <= 1.0:
        raise UsageError(f"--max-skip must be a fraction in [0, 1], got {a.max_skip}")
    if a.bins < 1:
        raise UsageError(f"--bins must be >= 1, got {a.bins}")
    lm, lm_warning = a.landmarks, None
    if lm == "auto" and a.dataset == "dfew":
        from fer_jax.preprocess import dlib_landmarks

        if dlib_landmarks.available():
            lm = "dlib"
        else:
            lm = "template"
            lm_warning = (
                "dlib is not installed, so every frame stores the same template landmarks: the landmark "
                "mask is a fixed prior and AU analysis is unavailable; "
                f"{dlib_landmarks.INSTALL_HINT} or give --landmarks file:DIR"
            )
    elif lm == "auto":
        lm = "template"  # see/dsee store no landmarks
    if lm not in ("none", "template", "dlib") and not lm.startswith(("file:", "lbf:", "dlib:")):
        raise UsageError(
            f"--landmarks must be auto, dlib, none, template, file:DIR, lbf:MODEL or dlib:MODEL, got {lm!r}"
        )
    if lm == "file:":
        lm = "file:landmarks"
    if lm.startswith("file:"):
        d_ = Path(lm[5:])
        if not d_.is_dir() and not (Path(a.root) / d_).is_dir():
            raise UsageError(f"--landmarks {lm}: no such folder")
    if lm.startswith("lbf:"):
        from fer_jax.preprocess.landmarks import LBFLandmarker

        try:
            LBFLandmarker(lm[4:])
        except ValueError as e:
            raise UsageError(str(e)) from e
    if lm == "dlib" or lm.startswith("dlib:"):
        from fer_jax.preprocess import dlib_landmarks

        try:
            if lm == "dlib":
                dlib_landmarks.model_path()
            elif not Path(lm[5:]).is_file():
                raise ValueError(f"no dlib shape-predictor file at {lm[5:]}")
            if not dlib_landmarks.available():
                raise ValueError(f"--landmarks dlib needs dlib: {dlib_landmarks.INSTALL_HINT}")
        except ValueError as e:
            raise UsageError(str(e)) from e
    per_frame = lm.startswith(("file:", "lbf:", "dlib"))
    align = a.align
    if align == "auto":
        align = "landmarks" if per_frame else "detector"
    if align == "landmarks" and not per_frame:
        raise UsageError(
            f"--align landmarks needs per-frame landmarks (--landmarks dlib, file:DIR or lbf:MODEL), got {lm}"
        )
    s = {
        "dataset": a.dataset,
        "frames": frames,
        "size": size,
        "encoding": a.encoding,
        "bins": a.bins,
    }
    if a.dataset == "dfew":
        s.update(
            fold=fold if fold == "all" else int(fold),
            landmarks=lm,
            align=align,
            source=a.source,
            simulate_events=a.simulate_events,
            enhance=not a.no_enhance,
        )
        if lm_warning:  # recorded in the manifest's preprocessing block, and said loudly
            s["landmarks_warning"] = lm_warning
    else:
        if a.simulate_events:
            raise UsageError("--simulate-events is for datasets without events (dfew)")
        s.update(events=a.events)
        if a.resize != "square":  # absent for square builds: their manifests compare as before
            s["resize"] = a.resize
    if a.dataset == "dfew" and a.resize != "square":
        raise UsageError("--resize shorter is for see/dsee (DFEW stores square aligned faces)")
    return s


# preprocessing keys the build derives from the data (compared with nothing when a re-run asks whether a
# finished build has its settings)
_DERIVED = ("events_used", "height", "width")


def _requested(prep: dict) -> dict:
    return {k: v for k, v in prep.items() if k not in _DERIVED}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(out: Path) -> None:
    for p in out.parent.glob(f".{out.name}.partial-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _json_dict(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _looks_like_ours(out: Path) -> bool:
    """Whether ``out`` is a build of ours, finished or not: only such a folder is ever replaced. A file
    name alone proves nothing (anyone may own a ``features.json``), so the contents are read."""
    if (out / COMPLETE_MARKER).is_file():
        return True
    m = _json_dict(out / MANIFEST_FILE)
    if m is not None and "preprocessing" in m and "class_names" in m:
        return True
    info = _json_dict(out / "dataset_info.json")
    return info is not None and str(info.get("moduleName", "")).startswith("data_prep.builders")


def _check_paths(root: Path, out: Path) -> None:
    """``UsageError`` unless ``--out`` can be written without touching the raw dataset: never ``--root``,
    a folder holding it or a folder inside it, and no file where a folder of ``--out``'s path must be."""
    for p in out.parents:
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise UsageError(f"--out {out}: {p} is a file, not a folder")
            break
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    r, o = root.resolve(), out.resolve()
    if o == r:
        raise UsageError(f"--out {out} is the raw dataset (--root); write the shards to another folder")
    if r.is_relative_to(o):
        raise UsageError(f"--out {out} contains the raw dataset (--root {root}); choose another folder")
    if o.is_relative_to(r):
        raise UsageError(
            f"--out {out} is inside the raw dataset (--root {root}); write the shards outside it"
        )


def _num_built(manifest: dict) -> int:
    """Records stored (a folds build also lists each fold's splits in ``num_examples``)."""
    n = manifest["num_examples"]
    return int(n.get(STORED_SPLIT, 0)) if manifest.get("folds") else sum(n.values())


def _exit_status(manifest: dict, max_skip: float) -> tuple[int, str]:
    built = _num_built(manifest)
    skipped = len(manifest["skipped"])
    frac = skipped / max(1, built + skipped)
    if built == 0:
        return 1, "nothing was built"
    if frac > max_skip:
        return 1, f"{skipped} of {built + skipped} items skipped ({frac:.1%} > --max-skip {max_skip:.1%})"
    return 0, ""


def _summary(out: Path, manifest: dict, seconds: float | None) -> str:
    n = manifest["num_examples"]
    if manifest.get("folds"):
        n = {STORED_SPLIT: n[STORED_SPLIT]} | {
            f"fold {k}": f"{n[split_name(int(k), 'train')]} / {n[split_name(int(k), 'test')]}"
            for k in manifest["folds"]
        }
    lines = [f"{manifest['dataset']} -> {out}: " + ", ".join(f"{k} {v}" for k, v in n.items())]
    if seconds is not None:
        lines[0] += f" in {seconds:.1f} s"
    lines.append(f"skipped {len(manifest['skipped'])}, repaired {len(manifest['repaired'])}")
    for s in manifest["skipped"][:10]:
        lines.append(f"  skipped {s['item']}: {s['reason']}")
    if len(manifest["skipped"]) > 10:
        lines.append(f"  ... {len(manifest['skipped']) - 10} more in {out / MANIFEST_FILE}")
    return "\n".join(lines)


def _plan(settings: dict, root: Path, workers: int, quiet: bool):
    from data_prep.builders import dfew, see
    from data_prep.builders.tfds_builders import Plan

    folds = None
    if settings["dataset"] == "dfew" and settings["fold"] == "all":
        items, skipped, label_files, folds = dfew.read_all_folds(
            root, settings["source"], settings["landmarks"]
        )
    elif settings["dataset"] == "dfew":
        items, skipped, label_files = dfew.read_layout(
            root, settings["fold"], settings["source"], settings["landmarks"]
        )
    if settings["dataset"] == "dfew":
        names = dfew.class_names()
        st = dfew.Settings(
            frames=settings["frames"], size=settings["size"], encoding=settings["encoding"],
            landmarks=settings["landmarks"], align=settings.get("align", "detector"),
            enhance=settings["enhance"],
            simulate_events=settings["simulate_events"], bins=settings["bins"],
        )  # fmt: skip
        feats = features(
            "dfew", encoding=st.encoding, size=st.size, class_names=names,
            landmarks=st.landmarks != "none", event="voxel" if st.simulate_events else None, bins=st.bins,
        )  # fmt: skip
        fn = functools.partial(dfew.process, settings=st)
    else:
        items, skipped, label_files, names, ev_source = see.read_layout(root, settings["events"])
        settings["events_used"] = ev_source
        resize, size = settings.get("resize", "square"), settings["size"]
        hw = (size, size)
        if resize == "shorter":  # one stored shape per build, from the first frame (one sensor)
            src = see.first_frame_hw(items)
            hw = shorter_side_hw(*src, size) if src is not None else hw
        settings["height"], settings["width"] = hw
        st = see.Settings(frames=settings["frames"], size=size, encoding=settings["encoding"],
                          events=ev_source, bins=settings["bins"], resize=resize, height=hw[0], width=hw[1])  # fmt: skip
        feats = features(
            settings["dataset"], encoding=st.encoding, size=st.size, class_names=names,
            event="frames" if ev_source == "frames" else "voxel", bins=st.bins, hw=hw,
        )  # fmt: skip
        fn = functools.partial(see.process, settings=st)
    plan = Plan(features=feats, items=items, process=fn, workers=workers, quiet=quiet,
                description=f"fer_jax {settings['dataset']} shards")  # fmt: skip
    return plan, skipped, label_files, list(names), folds


def _manifest(settings, names, plan, results, layout_skips, label_files, root: Path) -> dict:
    splits = [s for s, items in plan.items.items() if items]
    built = [r for r in results if r.example is not None]
    counts = {s: [0] * len(names) for s in splits}
    light = {s: dict.fromkeys(LIGHTING_NAMES, 0) for s in splits}
    for r in built:
        counts[r.split][int(r.example["label"])] += 1
        if "lighting" in r.example:
            light[r.split][LIGHTING_NAMES[int(r.example["lighting"])]] += 1
    skipped = [s.as_dict() for s in layout_skips if not s.repaired]
    skipped += [{"item": f"{r.split}/{r.key}", "reason": r.skip} for r in results if r.example is None]
    repaired = [s.as_dict() for s in layout_skips if s.repaired]
    repaired += [{"item": f"{r.split}/{r.key}", "reason": n} for r in built for n in r.notes]
    m = {
        "dataset": settings["dataset"],
        "class_names": names,
        "class_counts": counts,
        "num_examples": {s: sum(c) for s, c in counts.items()},
        "preprocessing": settings,
        "sources": {
            "root": str(root.resolve()),
            "label_files": {
                str(Path(p).relative_to(root)) if Path(p).is_relative_to(root) else str(p): checksum_files(
                    [p]
                )
                for p in label_files
            },
            "items": {
                f"{r.split}/{r.key}": r.checksum for r in sorted(built, key=lambda r: (r.split, r.key))
            },
        },
        "skipped": sorted(skipped, key=lambda d: d["item"]),
        "repaired": sorted(repaired, key=lambda d: d["item"]),
    }
    # what the records' "event" holds: SEE-style JPEG event frames, float16 voxel grids, or nothing
    if settings["dataset"] == "dfew":
        m["event_kind"] = "voxel" if settings["simulate_events"] else None
    else:
        m["event_kind"] = "frames" if settings.get("events_used") == "frames" else "voxel"
    if settings["dataset"] != "dfew":
        m["lighting_names"] = list(LIGHTING_NAMES)
        m["lighting_counts"] = light
    if settings["dataset"] == "dfew":
        n_frames = sum(r.stats.get("frames", 0) for r in built)
        m["face_found_fraction"] = round(
            sum(r.stats.get("frames_face_found", 0) for r in built) / max(1, n_frames), 4
        )
    ev_n = sum(r.stats.get("ev_n", 0) for r in built)
    if ev_n:
        mean = sum(r.stats["ev_sum"] for r in built) / ev_n
        var = sum(r.stats["ev_sumsq"] for r in built) / ev_n - mean**2
        m["normalization"] = {
            "event": {"mean": round(mean, 6), "std": round(float(np.sqrt(max(var, 1e-12))), 6)}
        }
    return m


def _add_folds(manifest: dict, data_path, folds: dict, results, num_classes: int) -> None:
    """Adds the folds' split lists to a ``--fold all`` manifest: the ids in storage order are read back
    from the written split (TFDS orders records by a hash of their keys), each fold's counts beside them."""
    import tensorflow_datasets as tfds

    ds = tfds.builder_from_directory(str(data_path)).as_data_source(STORED_SPLIT)
    ids = [ds[i]["id"] for i in range(len(ds))]
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
    labels = {r.key: int(r.example["label"]) for r in results if r.example is not None}
    entries = fold_entries(ids, labels, folds, num_classes)
    manifest["num_examples"].update(entries.pop("num_examples"))
    manifest["class_counts"].update(entries.pop("class_counts"))
    manifest.update(entries)


def _warn_landmarks(settings: dict) -> None:
    if settings.get("landmarks_warning"):
        print(f"WARNING: --landmarks template: {settings['landmarks_warning']}", file=sys.stderr)


def build(args: argparse.Namespace) -> int:
    if is_remote(args.out):
        return _build_to_remote(args)
    settings = _settings(args)
    _warn_landmarks(settings)
    root, out = Path(args.root), Path(args.out)
    _check_paths(root, out)
    replace_old = False
    if out.is_dir() and (out / COMPLETE_MARKER).exists():
        try:
            old = load_manifest(out)
        except ValueError as e:
            # a damaged manifest (truncated copy, older schema): ours, but only replaced on request
            if not args.overwrite:
                raise UsageError(
                    f"--out {out} holds a build of ours that cannot be read ({e}); --overwrite rebuilds it"
                ) from None
            old = None
        prep = old.get("preprocessing") if old is not None else None
        same = isinstance(prep, dict) and _requested(prep) == _requested(settings)
        if same and not args.overwrite:
            status, why = _exit_status(old, args.max_skip)
            print(f"{out} is already built with these settings; nothing to do (--overwrite rebuilds)")
            if why:
                print(f"error: {why}", file=sys.stderr)
            return status
        if not args.overwrite:
            raise UsageError(
                f"--out {out} holds a build with other settings; use --overwrite or another --out"
            )
        replace_old = True
    elif out.is_dir() and any(out.iterdir()):
        if not _looks_like_ours(out):
            # --overwrite replaces builds of ours only: never a folder of the user's own files
            raise UsageError(
                f"--out {out} is not empty and not a build of ours; choose an empty or new folder"
            )
        # an unfinished build of ours (no marker): never mixed with new work, started clean
        replace_old = True
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    t0 = time.perf_counter()
    try:
        import tensorflow_datasets as tfds

        from data_prep.builders.tfds_builders import BUILDERS

        if args.quiet:
            tfds.disable_progress_bar()

        plan, layout_skips, label_files, names, folds = _plan(settings, root, args.workers, args.quiet)
        # clips processed by an interrupted run with these settings are read back, not processed again
        cache = ResultCache(
            out.parent / f".{out.name}.cache", {"settings": settings, "root": str(root.resolve())}
        )
        plan.cache = cache
        builder = BUILDERS[settings["dataset"]](
            plan=plan, data_dir=str(partial / "tfds"), file_format="array_record"
        )
        if any(plan.items.values()):
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
        results = builder.results
        manifest = _manifest(settings, names, plan, results, layout_skips, label_files, root)
        if folds is not None:
            _add_folds(manifest, builder.data_path, folds, results, len(names))
        status, why = _exit_status({"schema_version": 0, **manifest}, args.max_skip)
        if _num_built(manifest) == 0:
            print(_summary(out, manifest, None), file=sys.stderr)
            print("error: nothing was built", file=sys.stderr)
            return 1
        final = partial / "final"
        shutil.move(str(builder.data_path), final)
        write_manifest(final, manifest)
        (final / COMPLETE_MARKER).write_text(json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        if replace_old:
            trash = out.parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, trash)
            os.rename(final, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(final, out)
        cache.remove()  # after the rename: an interruption before it keeps the processed clips
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    print(_summary(out, manifest, time.perf_counter() - t0))
    _warn_landmarks(settings)  # again after the progress output, where it is seen
    parts = [split_name(int(k), p) for k in manifest.get("folds", {}) for p in ("train", "test")]
    empty = [s for s in parts or ("train", "test") if not manifest["num_examples"].get(s)]
    if empty:  # trains or evaluates on nothing later: say it now, where the cause is visible
        print(f"warning: {out} has an empty {' and '.join(empty)} split", file=sys.stderr)
    if why:
        print(f"error: {why}", file=sys.stderr)
    return status


def _build_to_remote(args: argparse.Namespace) -> int:
    """``--out`` on remote storage: the build runs into the bucket path's local mirror, then is uploaded."""
    remote, local = as_path(args.out), mirror_dir(args.out)
    if (remote / COMPLETE_MARKER).exists():
        local_data_dir(args.out)  # the bucket's build, mirrored: the local checks below then see it
    status = build(argparse.Namespace(**{**vars(args), "out": str(local)}))
    if not (local / COMPLETE_MARKER).exists() or is_mirrored(args.out, local):
        return status  # nothing built, or the bucket holds this very build already
    if remote.exists():  # --overwrite: no shard of the old build is left beside the new one
        remote.rmtree()
    n = copy_tree(local, remote, last=COMPLETE_MARKER)
    print(f"uploaded {n} files to {remote} (the local copy {local} is the mirror training reads)")
    return status


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return build(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written to --out", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
