"""Training machinery: mesh and sharding, optimizer and schedules, EMA, train state, the jitted steps,
orbax checkpointing, early stopping, logging, figures and the loop (``fer_jax.training.loop.train``)."""
