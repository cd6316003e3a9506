"""DFEW's five folds as split lists in one build: naming, manifest entries and the ``data.fold`` choice.

``data_prep.build --dataset dfew --fold all`` processes every clip once into one stored split, ``clips``,
and writes the folds into the manifest (docs/architecture.md)::

    "folds":      {"1": {"train": [clip ids], "test": [clip ids]}, ..., "5": {...}}
    "record_ids": [the id of each record of the stored split ``clips``, in storage order]

plus ``num_examples`` / ``class_counts`` of each fold's splits under the names ``fold<k>_train`` and
``fold<k>_test``. Those names are ordinary split names everywhere else (``data.train_split``, evaluate's
``--split``, ``DataInfo.class_counts_of``): ``fer_jax.data.source.ShardSource`` reads such a split as the
listed records of ``clips``. ``config.data.fold = k`` (1..5) chooses fold k's pair at the start of a run
(``select_fold``); 0 keeps ``data.train_split`` / ``data.eval_split`` as given (a one-fold build).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

STORED_SPLIT = "clips"  # the one stored split of a --fold all build (TFDS reserves "all")
NUM_FOLDS = 5
_VIRTUAL = re.compile(r"fold([1-9][0-9]*)_(train|test)")


def split_name(fold: int, part: str) -> str:
    """``fold<k>_<part>``, ``part`` train or test: the name of one fold's split."""
    return f"fold{int(fold)}_{part}"


def fold_entries(
    record_ids: Sequence[str], labels: Mapping[str, int], folds: Mapping[str, Mapping[str, Sequence[str]]],
    num_classes: int,
) -> dict[str, Any]:  # fmt: skip
    """The manifest entries of a folds build: ``folds``, ``record_ids`` and each fold split's
    ``num_examples`` / ``class_counts``. Ids not stored (skipped clips) are left out of the lists."""
    stored = set(record_ids)
    out_folds: dict[str, dict[str, list[str]]] = {}
    num: dict[str, int] = {}
    counts: dict[str, list[int]] = {}
    for k in sorted(folds, key=int):
        out_folds[k] = {}
        for part in ("train", "test"):
            ids = [i for i in folds[k][part] if i in stored]
            out_folds[k][part] = ids
            c = [0] * num_classes
            for i in ids:
                c[int(labels[i])] += 1
            num[split_name(int(k), part)] = len(ids)
            counts[split_name(int(k), part)] = c
    return {"folds": out_folds, "record_ids": list(record_ids), "num_examples": num, "class_counts": counts}


def positions(manifest: Mapping[str, Any], split: str) -> tuple[str, list[int]] | None:
    """``(stored split, record positions)`` of a fold split of a folds build, None for any other split
    name; ``ValueError`` (one line) for a fold the build does not hold."""
    m = _VIRTUAL.fullmatch(split)
    folds = manifest.get("folds")
    if m is None or not folds:
        return None
    fold, part = m.group(1), m.group(2)
    if fold not in folds:
        raise ValueError(f"split {split!r}: the build holds folds {', '.join(sorted(folds, key=int))}")
    where = {rid: i for i, rid in enumerate(manifest.get("record_ids") or [])}
    missing = [i for i in folds[fold][part] if i not in where]
    if missing:
        raise ValueError(f"split {split!r} lists {len(missing)} clip(s) not stored, e.g. {missing[0]!r}")
    return STORED_SPLIT, [where[i] for i in folds[fold][part]]


def select_fold(config: ml_collections.ConfigDict, manifest: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A copy of ``config`` whose ``data.train_split`` / ``data.eval_split`` are fold ``data.fold``'s.

    ``data.fold`` 0 (or absent) keeps the config's splits, but a folds build then needs a fold; k > 0 on a
    folds build picks ``fold<k>_train`` / ``fold<k>_test``; on a one-fold build it must be the fold that
    build holds. Every refusal is a one-line ``ValueError`` naming ``--config.data.fold``.
    """
    fold = int(config.data.get("fold", 0) or 0)
    folds = manifest.get("folds")
    built = (manifest.get("preprocessing") or {}).get("fold")
    if fold < 0:
        raise ValueError(f"--config.data.fold must be 0 (the build's own split) or 1..5, got {fold}")
    if fold == 0:
        if folds and config.data.train_split not in (manifest.get("num_examples") or {}):
            raise ValueError(
                f"{config.data.dir} holds folds {', '.join(sorted(folds, key=int))}; choose one with "
                "--config.data.fold=K"
            )
        return config
    config = config.copy_and_resolve_references()
    if folds:
        if str(fold) not in folds:
            raise ValueError(
                f"--config.data.fold={fold}: {config.data.dir} holds folds {', '.join(sorted(folds, key=int))}"
            )
        config.data.train_split = split_name(fold, "train")
        config.data.eval_split = split_name(fold, "test")
    elif built is not None and str(built) != str(fold):
        raise ValueError(
            f"--config.data.fold={fold} but {config.data.dir} was built for fold {built}; build that fold "
            "(or all: data_prep.build --fold all) or pass its own fold"
        )
    return config
