"""JAX's persistent compilation cache, on by default for lmjax's programs.

A compiled XLA program is written to `$LMJAX_COMPILATION_CACHE` (default
`~/.cache/lmjax/xla`) and read back by later processes, so the second run of a command (or of
a scanner over a new photo collection) compiles nothing it compiled before. `enable()` is
called by the command lines and by `lmjax.scan.scanner.Scanner`; it leaves alone a cache
directory the user configured (`jax_compilation_cache_dir`), and
`LMJAX_COMPILATION_CACHE=off` turns it off.
"""

from __future__ import annotations

import os

import jax

ENV = 'LMJAX_COMPILATION_CACHE'
OFF = ('', '0', 'off', 'false', 'no')


def cache_dir() -> str | None:
  """The directory `enable` uses, or None when `$LMJAX_COMPILATION_CACHE` switches it off."""
  value = os.environ.get(ENV)
  if value is None:
    return os.path.expanduser('~/.cache/lmjax/xla')
  return None if value.strip().lower() in OFF else os.path.expanduser(value)


def enable() -> str | None:
  """Turns the persistent cache on (every program, however fast it compiled); returns its dir.

  A directory already set with `jax.config.update('jax_compilation_cache_dir', ...)` wins.
  """
  if jax.config.jax_compilation_cache_dir:
    return jax.config.jax_compilation_cache_dir
  path = cache_dir()
  if path is None:
    return None
  os.makedirs(path, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  return path
