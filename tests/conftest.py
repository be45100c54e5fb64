"""Shared pytest setup.

Eight CPU devices are configured here, before any JAX operation, so that every test can
build a ('data', 'model') mesh the way a multi-accelerator host would.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Entry points turn the persistent compilation cache on; tests that call them in-process must
# not move this process's cache or write to ~/.cache (tests/bench/test_compilation_cache.py
# turns it on where it is tested).
os.environ.setdefault("MT3X_COMPILATION_CACHE", "off")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_platforms", "cpu")
