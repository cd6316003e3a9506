"""Flax NNX models: the selective-SSM core, backbone ports, and the two papers' models.

Nothing in this package imports data, training or I/O code.
"""
