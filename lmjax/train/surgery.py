"""Named-path pytree tools: flatten to `a/b/c`, regex masks, merging, MCL head assembling.

Parameters are nested dicts; a leaf's *name* is its key path joined with `/`, e.g.
`conv11/kernel` or `heads/3/bias`. Freezing and assembling are written as regexes over these
names, and every structural mismatch is reported with the offending names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Tree = Mapping[str, Any]


def flatten(tree: Tree, prefix: str = '') -> dict[str, Any]:
  """{'a': {'b': x}} -> {'a/b': x} (leaves are anything that is not a Mapping)."""
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, Mapping):
      out.update(flatten(value, name + '/'))
    else:
      out[name] = value
  return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """Inverse of `flatten`."""
  out: dict[str, Any] = {}
  for name, value in flat.items():
    node = out
    *parents, leaf = name.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


def path_mask(tree: Tree, pattern: str | None) -> dict[str, Any]:
  """Bool tree: True where the leaf name matches `pattern` (`re.search`); None -> all False."""
  regex = re.compile(pattern) if pattern else None
  return unflatten({n: bool(regex and regex.search(n)) for n in flatten(tree)})


def matching(tree: Tree, pattern: str) -> list[str]:
  """Names of the leaves matching `pattern`."""
  regex = re.compile(pattern)
  return [n for n in flatten(tree) if regex.search(n)]


def _shape(x: Any) -> tuple[int, ...]:
  return tuple(np.shape(x))


def merge_params(target: Tree, source: Tree, dont_load: Iterable[str] = ()) -> dict[str, Any]:
  """Copies leaves of `source` into the structure of `target`.

  Every leaf of `target` must come from `source` with the same shape, except those whose name
  matches one of the `dont_load` regexes (they keep `target`'s value). `source` leaves that
  `target` lacks are an error too, unless they match `dont_load`.

  Raises:
    ValueError: listing missing, unexpected and shape-mismatched names.
  """
  skip = [re.compile(p) for p in dont_load]
  ignored = lambda n: any(r.search(n) for r in skip)
  t, s = flatten(target), flatten(source)
  missing = [n for n in t if n not in s and not ignored(n)]
  unexpected = [n for n in s if n not in t and not ignored(n)]
  shapes = [
    f'{n}: target {_shape(t[n])} vs source {_shape(s[n])}'
    for n in t
    if n in s and not ignored(n) and _shape(t[n]) != _shape(s[n])
  ]
  if missing or unexpected or shapes:
    lines = ['cannot merge parameters:']
    lines += [f'  missing in source: {n}' for n in missing]
    lines += [f'  not in target:     {n}' for n in unexpected]
    lines += [f'  shape mismatch:    {m}' for m in shapes]
    raise ValueError('\n'.join(lines))
  return unflatten({n: (v if ignored(n) else s[n]) for n, v in t.items()})


def head_names(params: Tree) -> list[str]:
  """Names of the shape-prediction heads `heads/<i>`, in index order."""
  heads = params.get('heads')
  if not isinstance(heads, Mapping):
    raise ValueError(f'parameters have no `heads` subtree; top-level keys: {sorted(params)}')
  return sorted(heads, key=int)


def broadcast_head(params: Tree, num_heads: int) -> dict[str, Any]:
  """Multi-center initialisation: `heads/0..m-1` all copied from a single-head model's head."""
  names = head_names(params)
  if names != ['0']:
    raise ValueError(f'expected a single-head model (heads/0), got heads {names}')
  out = dict(params)
  out['heads'] = {
    str(i): jax.tree_util.tree_map(jnp.array, params['heads']['0']) for i in range(num_heads)
  }
  return out


def assemble_heads(
  params: Tree, clusters: Iterable[Iterable[int]], num_points: int
) -> dict[str, Any]:
  """MCL model assembling (eq. 2): one head whose landmark-j outputs come from head i, j ∈ P_i.

  Head kernels are [D, 2n] (outputs x1, y1, ..., xn, yn) and biases [2n]; for every cluster
  i the columns 2j and 2j+1 of its landmarks are taken from head i.

  Args:
    params: a multi-center model's parameters with heads `0..m-1`.
    clusters: m landmark index groups that partition range(num_points).
    num_points: n.

  Returns:
    The same parameters with a single head `heads/0`.

  Raises:
    ValueError: heads and clusters disagree in number, clusters do not partition the points,
      or head shapes differ from [D, 2n] / [2n].
  """
  clusters = [list(c) for c in clusters]
  names = head_names(params)
  if len(names) != len(clusters) or names != [str(i) for i in range(len(clusters))]:
    raise ValueError(
      f'{len(clusters)} clusters need heads 0..{len(clusters) - 1}; '
      f'the parameters have heads {names}'
    )
  if sorted(j for c in clusters for j in c) != list(range(num_points)):
    raise ValueError(f'clusters must partition the {num_points} landmarks exactly once')
  source = np.empty(2 * num_points, np.int32)  # output column -> head providing it
  for i, cluster in enumerate(clusters):
    for j in cluster:
      source[2 * j : 2 * j + 2] = i
  heads = params['heads']
  for name in names:
    k, b = heads[name]['kernel'], heads[name]['bias']
    if k.ndim != 2 or k.shape[1] != 2 * num_points or b.shape != (2 * num_points,):
      raise ValueError(
        f'heads/{name}: expected kernel [D, {2 * num_points}] and bias '
        f'[{2 * num_points}], got {k.shape} and {b.shape}'
      )
  kernels = jnp.stack([heads[n]['kernel'] for n in names])  # [m, D, 2n]
  biases = jnp.stack([heads[n]['bias'] for n in names])  # [m, 2n]
  columns = jnp.arange(2 * num_points)
  out = dict(params)
  out['heads'] = {
    '0': {
      'kernel': kernels[source, :, columns].T,  # [D, 2n]
      'bias': biases[source, columns],
    }
  }
  return out
