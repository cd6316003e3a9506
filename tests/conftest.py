"""Shared pytest set-up: absl flags parsed (grain workers read them) and a quiet, deterministic JAX."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402

# grain worker processes read absl flags; mark them parsed before any pipeline starts
if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
