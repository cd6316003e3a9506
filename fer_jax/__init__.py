"""fer_jax: JAX/Flax NNX video facial-expression recognition (MambaFER, MCO-E Net)."""

__version__ = "0.1.0"
