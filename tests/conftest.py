"""Settings for the whole test session."""
import jax

# Float32 matrix products in full precision on every backend. CPUs always compute them so; GPUs
# round them to TensorFloat-32 unless asked (TPUs to bfloat16), and the tests that compare two ways
# of computing the same thing (hand-written gradients against jax.grad, step by step against a
# whole sequence) are written for float32. Determinism (same seed, same result) is not affected.
jax.config.update("jax_default_matmul_precision", "float32")
