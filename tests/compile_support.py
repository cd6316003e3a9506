"""Fast XLA:CPU compile settings for tests whose cost is compiling tiny models (used through conftest.py's
``fast_compile`` / ``module_fast_compile`` fixtures, and by tests that start subprocesses).

LLVM at -O0 without its expensive passes: the same HLO (so the same dtypes, buffer assignment and
temp_size_in_bytes), compiled in about half the CPU time. Results may move in the last float32 bits, so
only tests whose assertions allow that (ranges, counts, a run compared with itself under the same settings,
tolerances far above rounding) use them; e.g. MCO-E Net's remat and plain gradients differ by 2.3e-5 at
-O0, over tests/test_remat.py's 1e-5, and that test keeps the default."""

# one jit's compiler_options (.lower(...).compile(FAST_COMPILE) or jax.jit(..., compiler_options=...))
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
# a whole process: JAX's jax_disable_most_optimizations sets the same two debug options for every compile
FAST_COMPILE_ENV = {"JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
