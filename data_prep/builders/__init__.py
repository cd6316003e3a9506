"""Dataset readers for the real layouts (DFEW, SEE, DSEE) and their TFDS builders.

``common`` runs the per-item work in worker processes and collects skip reasons; ``dfew`` / ``see`` read
the layouts and turn one item into one record (no TFDS import, so workers start fast); ``tfds_builders``
holds the ``GeneratorBasedBuilder`` classes (kept in this package: TFDS cannot build a class defined in
``__main__``).
"""
