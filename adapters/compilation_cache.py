"""JAX's persistent compilation cache, for this suite's own runs (the CLI and its tests).

Every JAX-based configuration (Flax, Haiku, Equinox, Keras on JAX) compiles its own XLA program, and
on two cores compiling is most of their time. JAX can keep compiled programs on disk between runs
(``jax_compilation_cache_dir``; JAX reads each option from the upper-cased environment variable of
its name, ``jax/_src/config.py``), keyed by the program, its shapes, the JAX/XLA version and the
machine, so a second run loads them instead of compiling and computes the same numbers.

``enable()`` sets those variables for this process and the worker processes it starts, before JAX
is imported; it is not called when the package is used as a library, so a user's own JAX
configuration is never changed. ``GRU_EQUIV_CACHE_DIR`` chooses the folder (default
``$XDG_CACHE_HOME/gru-equiv/jax``, i.e. ``~/.cache/gru-equiv/jax``); ``GRU_EQUIV_CACHE_DIR=off`` turns
the cache off. Variables the user already set win.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "GRU_EQUIV_CACHE_DIR"
OFF = ("off", "none", "0", "false")


def cache_directory() -> Path | None:
    """Where compiled programs are kept, or None when the cache is turned off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in OFF or not chosen.strip() else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gru-equiv" / "jax"


def enable() -> Path | None:
    """Turn the cache on for this process and its workers; returns the folder (None: off)."""
    directory = cache_directory()
    if directory is None:
        return None
    # name: (value unless the user set it, how JAX's option takes it). JAX caches only programs that took
    # over a second to compile by default; each of ours takes less, and together they are most of a JAX
    # configuration's time.
    settings = {
        "JAX_COMPILATION_CACHE_DIR": (str(directory), str),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": ("0", float),
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": ("0", int),
    }
    for name, (value, _) in settings.items():
        os.environ.setdefault(name, value)
    if "jax" in sys.modules:  # imported already: its options were read at import, so set them too
        import jax

        for name, (_, kind) in settings.items():
            jax.config.update(name.lower(), kind(os.environ[name]))
    return directory
