"""Flax NNX models: the selective-SSM core, backbone ports, and the two papers' models.

Nothing in this package imports data, training or I/O code, with one exception: the dependency-free
:mod:`fer_jax.data.constants` (numpy only: the landmark count and the 68-point template). Model
construction reads no file; pretrained weights are loaded by the caller into the submodules that
``registry.pretrained_targets`` names.
"""
