"""Trainer tests compile the same tiny train step several times (per mesh, per resumed run):
a per-session persistent compilation cache lets later compiles of an identical program hit."""

import jax
import pytest


@pytest.fixture(scope="package", autouse=True)
def _compilation_cache(tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("jax_cache")
    old = {
        k: getattr(jax.config, k)
        for k in (
            "jax_compilation_cache_dir",
            "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes",
        )
    }
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    yield
    for k, v in old.items():
        jax.config.update(k, v)
    try:  # later test areas start without our cache
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except (ImportError, AttributeError):
        pass
