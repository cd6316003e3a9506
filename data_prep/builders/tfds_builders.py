"""TFDS ``GeneratorBasedBuilder``s for DFEW, SEE and DSEE (ArrayRecord, ``Tensor`` + ``ClassLabel``
features, so they build and read without TensorFlow).

The builders do no reading of their own: ``data_prep.build`` hands them a ``Plan`` (items per split, the
per-item function, worker count); each split's examples come from ``parallel_map`` (or, for items an
interrupted run already processed, from the plan's ``resume.ResultCache``) and every skipped item lands in
``builder.results`` for the manifest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow_datasets as tfds

from data_prep.builders.common import Item, Result, parallel_map

_INSTRUCTIONS = {
    "dfew": """\
DFEW is distributed on application (https://dfew-dataset.github.io). Unpack it so that --root holds
Clip/clip_224x224/<id>/ (or Clip/original/<id>.mp4) and EmoLabel_DataSplit/{train,test}(single-labeled)/
set_<k>.csv. See docs/datasets.md.""",
    "see": """\
SEE is distributed by the authors of "Single-eye Emotion Recognition" (zhanghaiwei1234/
Single-eye-Emotion-Recognition). Unpack it so that --root holds frame/<emotion>/<seq>/, event/<emotion>/
<seq>/ and emotion.json. See docs/datasets.md.""",
    "dsee": """\
DSEE (MSKD, IJCAI 2024) is distributed on application. Arrange it like SEE (frame/<emotion>/<seq>/,
emotion.json) with event/<emotion>/<seq>/ frames or raw_events/<seq>.npy streams. See docs/datasets.md.""",
}


@dataclasses.dataclass
class Plan:
    """Everything a builder needs: features, items per split, the per-item function, workers."""

    features: Any
    items: dict[str, list[Item]]
    process: Callable[[Item], Result]
    workers: int = 1
    quiet: bool = False
    description: str = ""
    cache: Any = None  # a resume.ResultCache: items processed by an interrupted run are read back from it


class _ShardBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "fer_jax shard schema 1."}

    def __init__(self, *, plan: Plan, **kwargs):
        self._plan = plan
        self.results: list[Result] = []  # every processed item, built or skipped
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=self._plan.description, features=self._plan.features, supervised_keys=None
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split, items in self._plan.items.items() if items}

    def _generate_examples(self, split: str):
        items, cache = self._plan.items[split], self._plan.cache
        todo = items
        if cache is not None:
            todo = []
            for it in items:
                r = cache.get(it)
                if r is None:
                    todo.append(it)
                    continue
                self.results.append(r)
                yield r.key, r.example
        for r in parallel_map(
            self._plan.process, todo, workers=self._plan.workers, desc=split, quiet=self._plan.quiet
        ):
            self.results.append(r)
            if r.example is not None:
                if cache is not None:  # built records only: a skipped item is tried again on resume
                    cache.put(r)
                yield r.key, r.example


class Dfew(_ShardBuilder, skip_registration=True):
    """DFEW video clips: aligned, enhanced face frames + landmarks + label."""

    name = "dfew"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS["dfew"]


class See(_ShardBuilder, skip_registration=True):
    """SEE single-eye sequences: RGB frames + event frames (or voxel grids) + label + lighting."""

    name = "see"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS["see"]


class Dsee(_ShardBuilder, skip_registration=True):
    """DSEE in the SEE layout, with event frames or raw event streams."""

    name = "dsee"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS["dsee"]


BUILDERS = {"dfew": Dfew, "see": See, "dsee": Dsee}
