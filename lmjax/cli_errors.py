"""How the command lines report a bad input: one `error:` line on stderr, exit status 1.

    with one_line_errors(flag_verbose):
      run(...)

`--verbose` (or LMJAX_VERBOSE=1) re-raises instead, so the traceback is shown.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

# Exceptions that mean "bad input" (SpecError, DatasetFormatError, ModelFolderError are
# ValueErrors; missing files are OSErrors).
INPUT_ERRORS = (ValueError, OSError)


def error_line(e: BaseException) -> str:
  """The one-line `error: ...` of an exception (its first line; `--verbose` shows the rest)."""
  lines = str(e).strip().splitlines() or [type(e).__name__]
  more = ' (--verbose shows the rest)' if len(lines) > 1 else ''
  return f'error: {lines[0]}{more}'


def verbose(flag: bool) -> bool:
  """Whether errors show their traceback: `--verbose` or LMJAX_VERBOSE=1."""
  return flag or os.environ.get('LMJAX_VERBOSE', '') not in ('', '0')


def quiet_logs(flags_values) -> None:
  """Keeps orbax / tfds INFO lines away from a command's output and its error line, unless
  `--verbose` (or LMJAX_VERBOSE=1) or an explicit `--verbosity` asks for them."""
  from absl import logging

  if not (verbose(flags_values.verbose) or flags_values['verbosity'].present):
    logging.set_verbosity(logging.WARNING)


@contextlib.contextmanager
def one_line_errors(verbose_flag: bool, errors: tuple = INPUT_ERRORS) -> Iterator[None]:
  """Turns `errors` raised inside into `error_line` on stderr and SystemExit(1)."""
  try:
    yield
  except errors as e:
    if verbose(verbose_flag):
      raise
    print(error_line(e), file=sys.stderr)
    raise SystemExit(1) from None
