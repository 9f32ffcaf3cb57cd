"""The package's import graph, parsed from the source (ast): no cycles, no wrong-way imports.

Layers (a package may import itself and the ones listed for it):
  core, models, synthface   shared building blocks
  onnx_export               models as ONNX graphs run by onnxruntime (over models)
  data, train, eval, viz    shared machinery over them
  mcl, bbfcn, facecls       one package per paper (or model family): shared code only (and
                            onnx_export, the network graphs their predictors run on CPU)
  hlo_export                exports of jax functions: whole predictors and the scanner as
                            StableHLO, whole predictors as ONNX / TFLite (over mcl, bbfcn, scan,
                            onnx_export; data and eval for the validation-face parity)
  scan                      the whole-image scanner: shared code, bbfcn and facecls
  track                     video face tracking over any landmarker object: core only
  lmjax.* top-level modules entry points and the public API: anything but a CLI module
No module imports a command-line module (`python -m` targets and console scripts); command-line
modules in a subpackage may also import the public API `lmjax.inference` and `track` (nothing
imports them, so this makes no cycle).
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'lmjax'
ALLOWED = {
  'core': {'core'},
  'models': {'models', 'core'},
  'synthface': {'synthface', 'core'},
  'data': {'data', 'core', 'synthface'},
  'train': {'train', 'core', 'data', 'models'},
  'eval': {'eval', 'core', 'data', 'models', 'train'},
  'viz': {'viz', 'core'},
  'onnx_export': {'onnx_export', 'core', 'models'},
  'hlo_export': {
    'hlo_export',
    'core',
    'models',
    'onnx_export',
    'synthface',
    'data',
    'eval',
    'mcl',
    'bbfcn',
    'scan',
  },
  'mcl': {'mcl', 'core', 'models', 'data', 'train', 'eval', 'viz', 'onnx_export'},
  'bbfcn': {'bbfcn', 'core', 'models', 'data', 'train', 'eval', 'viz', 'synthface', 'onnx_export'},
  'facecls': {'facecls', 'core', 'models', 'data', 'train', 'eval', 'viz'},
  'scan': {'scan', 'core', 'models', 'data', 'train', 'eval', 'viz', 'bbfcn', 'facecls'},
  'track': {'track', 'core'},
}
CLI_MAY_ALSO_IMPORT = {'lmjax.inference', 'track'}
CLI_MODULES = {
  'lmjax.main',
  'lmjax.evaluate',
  'lmjax.export',
  'lmjax.draw',
  'lmjax.model_card',
  'lmjax.calibrate',
  'lmjax.scan.cli',
}
# Inference-time code builds everything from model.json: no dataset readers, no face renderer.
INFERENCE_MODULES = (
  'lmjax.inference',
  'lmjax.mcl.predictor',
  'lmjax.bbfcn.predictor',
  'lmjax.facecls.classifier',
  'lmjax.scan.',
  'lmjax.track.',
)
NOT_AT_INFERENCE = ('lmjax.data.datasets', 'lmjax.synthface')


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob('*.py'))}


def imports_of(name: str) -> set[str]:
  """lmjax modules that module `name` imports anywhere (function-local imports too)."""
  path = MODULES[name]
  package = name if path.name == '__init__.py' else name.rpartition('.')[0]
  out = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.startswith('lmjax')}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # relative import
        base = '.'.join([*package.split('.')[: len(package.split('.')) - node.level + 1], base])
        base = base.rstrip('.')
      if not base.startswith('lmjax'):
        continue
      for alias in node.names:  # `from pkg import module` names a module; else the symbol's
        candidate = f'{base}.{alias.name}'
        out.add(candidate if candidate in MODULES else base)
  out.discard(name)
  return {m for m in out if m in MODULES}


GRAPH = {name: imports_of(name) for name in MODULES}


def layer(name: str) -> str | None:
  """The subpackage a module belongs to (`core`, `mcl`, ...); None for top-level modules."""
  parts = name.split('.')
  return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None


def test_every_subpackage_has_rules_and_a_docstring():
  subpackages = {p.parent.name for p in PACKAGE.glob('*/__init__.py')}
  assert subpackages == set(ALLOWED), 'add the new subpackage to ALLOWED (and the docstring)'
  for sub in subpackages:
    doc = ast.get_docstring(ast.parse((PACKAGE / sub / '__init__.py').read_text()))
    assert doc and len(doc.split()) >= 12, f'lmjax/{sub}/__init__.py: say what the package owns'


def test_no_import_cycles():
  state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
  path: list[str] = []

  def visit(node: str) -> None:
    state[node] = 1
    path.append(node)
    for dep in sorted(GRAPH[node]):
      if state.get(dep) == 1:
        cycle = [*path[path.index(dep) :], dep]
        pytest.fail('import cycle: ' + ' -> '.join(cycle))
      if dep not in state:
        visit(dep)
    path.pop()
    state[node] = 2

  for name in sorted(GRAPH):
    if name not in state:
      visit(name)


@pytest.mark.parametrize('name', sorted(MODULES))
def test_imports_point_the_right_way(name):
  own = layer(name)
  for dep in sorted(GRAPH[name]):
    assert dep not in CLI_MODULES, f'{name} imports the command-line module {dep}'
    if own is None:
      continue
    dep_layer = layer(dep)
    if name in CLI_MODULES and (dep in CLI_MAY_ALSO_IMPORT or dep_layer in CLI_MAY_ALSO_IMPORT):
      continue
    assert dep_layer is not None, f'{name} (in {own}/) imports the top-level module {dep}'
    assert dep_layer in ALLOWED[own], f'{name} (in {own}/) may not import {dep} ({dep_layer}/)'
    if name.startswith(INFERENCE_MODULES):
      assert not dep.startswith(NOT_AT_INFERENCE), f'inference-time {name} imports {dep}'


def test_top_level_is_small():
  top = sorted(p.name for p in PACKAGE.glob('*.py') if p.name != '__init__.py')
  assert len(top) <= 8, f'lmjax/ should hold only entry points and a small API: {top}'
