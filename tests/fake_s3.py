"""A stand-in `s3://` for tests: an fsspec filesystem that keeps `s3://bucket/key` in
`$LMJAX_FAKE_S3_ROOT/bucket/key`, registered under fsspec's `s3` protocol (what etils.epath
uses for `s3://` when TensorFlow is absent, as here), so lmjax runs through the same remote
code path as with s3fs, offline.

  python tests/fake_s3.py MODULE ARGS...   registers it, then runs `python -m MODULE ARGS...`
"""

from __future__ import annotations

import os
import runpy
import sys

import fsspec
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

ROOT_ENV = 'LMJAX_FAKE_S3_ROOT'


class LocalBucketFileSystem(DirFileSystem):
  """`s3://bucket/key` -> `$LMJAX_FAKE_S3_ROOT/bucket/key` (read on every call: epath and
  fsspec cache filesystem instances across tests)."""

  protocol = ('s3', 's3a')

  def __init__(self, *args, **kwargs):
    del args, kwargs
    super().__init__(
      path=os.environ[ROOT_ENV], fs=LocalFileSystem(auto_mkdir=True)
    )  # keys need no folders

  @property
  def path(self) -> str:
    return os.environ[ROOT_ENV]

  @path.setter
  def path(self, value: str) -> None:
    del value  # set by DirFileSystem.__init__; the root always comes from the environment

  @classmethod
  def _strip_protocol(cls, path):
    path = os.fspath(path)
    for prefix in ('s3://', 's3a://'):
      if path.startswith(prefix):
        return path[len(prefix) :]
    return path


def register() -> None:
  fsspec.register_implementation('s3', LocalBucketFileSystem, clobber=True)


if __name__ == '__main__':
  register()
  module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
  runpy.run_module(module, run_name='__main__', alter_sys=True)
