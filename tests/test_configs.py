"""The configs form a tree without undo: ``base_config()`` holds no paper's recipe, each config derives from
its parent and changes only keys it names itself, and no config sets a key back to a value an ancestor
had before its parent changed it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

import pytest

from configs import see
from configs.common import base_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

# config module -> the module it derives from ("common": base_config()); every configs/*.py is listed
PARENTS = {
    "dfew": "common",
    "see": "common",
    "demo_dfew": "dfew",
    "dfew_resnet3d_18": "dfew",
    "dfew_r2plus1d_18": "dfew_resnet3d_18",
    "dfew_r3d_18": "dfew_resnet3d_18",
    "dfew_former_dfer": "dfew",
    "dfew_resnet18_lstm": "dfew",
    "dfew_resnet18_gru": "dfew_resnet18_lstm",
    "dsee": "see",
    "see_reference": "see",
    "demo_see": "see",
    "demo_see_rgb": "demo_see",
    "demo_see_reference": "see_reference",
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"configs.{name}")


def _resolved(name: str) -> dict:
    """Flat ``{"section.key": value}`` of a config (``common``: ``base_config()``)."""
    config = base_config() if name == "common" else _module(name).get_config()

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    return flat(config.to_dict())


def _named_keys(name: str) -> set[str]:
    """Names the module's own code assigns: attribute / subscript targets, dict-literal keys, and the keys
    of the ablation rows it applies with ``see.apply_ablation(config, "row")``."""
    tree = ast.parse((CONFIG_DIR / f"{name}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets = [t for target in node.targets for t in getattr(target, "elts", [target])]
            for t in targets:
                if isinstance(t, ast.Attribute):
                    names.add(t.attr)
                elif isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant):
                    names.add(str(t.slice.value))
        elif isinstance(node, ast.Dict):
            names.update(k.value for k in node.keys if isinstance(k, ast.Constant))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "apply_ablation":
            row = node.args[1]
            assert isinstance(row, ast.Constant), f"{name}: apply_ablation with a computed row"
            for key in see.ABLATIONS[row.value]:
                names.update(key.split("."))
    return names


def test_every_config_module_has_a_declared_parent():
    modules = {p.stem for p in CONFIG_DIR.glob("*.py")} - {"__init__", "common"}
    assert modules == set(PARENTS), "add new configs to PARENTS (and derive them from their parent)"


def test_base_config_holds_no_paper_recipe():
    c = base_config()
    assert c.train.ema_decay == 0.0 and c.train.early_stopping_patience == 0
    assert c.optim.grad_clip == 0.0 and c.optim.schedule == "constant"
    assert (c.loss.name, c.loss.class_weights, c.loss.label_smoothing) == ("ce", "none", 0.0)
    assert c.eval.passes == 1


@pytest.mark.parametrize("name", sorted(PARENTS))
def test_config_is_derived_from_its_parent(name):
    parent = PARENTS[name]
    source = (CONFIG_DIR / f"{name}.py").read_text()
    call = "base_config()" if parent == "common" else f"{parent}.get_config()"
    assert call in source, f"configs/{name}.py does not start from {call}"
    # its docstring holds its run command
    assert "python -m fer_jax.train --config configs/" + name + ".py" in _module(name).__doc__


@pytest.mark.parametrize("name", sorted(PARENTS))
def test_config_changes_only_the_keys_it_names(name):
    mine, theirs = _resolved(name), _resolved(PARENTS[name])
    changed = {k for k in mine.keys() | theirs.keys() if mine.get(k, KeyError) != theirs.get(k, KeyError)}
    named = _named_keys(name)
    unexplained = {k for k in changed if not named & set(k.split("."))}
    assert not unexplained, f"configs/{name}.py changes keys its code does not name: {sorted(unexplained)}"


# (config, key): a demo's own choice that happens to equal an ancestor's value, with the reason
SET_BACK_ON_PURPOSE = {
    ("demo_dfew", "train.early_stopping_patience"),  # 300 steps, one evaluation: nothing to stop on
    ("demo_see", "optim.lr"),  # 1e-3 measured best for 600 steps; equal to base_config()'s by chance
}


@pytest.mark.parametrize("name", sorted(n for n, p in PARENTS.items() if p != "common"))
def test_no_config_sets_back_what_its_parent_changed(name):
    """A value the parent changed and this config restores means the parent's default was wrong for it:
    the key belongs lower in the tree (the paper config) instead."""
    mine, parent = _resolved(name), _resolved(PARENTS[name])
    ancestors = []
    node = PARENTS[name]
    while node != "common":
        node = PARENTS[node]
        ancestors.append(_resolved(node))
    set_back = {
        k
        for k in mine
        if mine[k] != parent.get(k, KeyError)
        and any(k in a and a[k] == mine[k] for a in ancestors)
        and (name, k) not in SET_BACK_ON_PURPOSE
    }
    assert not set_back, f"configs/{name}.py sets back {sorted(set_back)}"
