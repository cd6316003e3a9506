"""The record schema (encode / decode), the manifest, and the grain input pipelines built on the shards
that ``python -m data_prep.build`` writes. Never imports ``data_prep``."""
