"""The model registry: per family one `model.json` spec -> flax module -> variables.

A model folder is `model.json` (this module's schema) and `variables/` (orbax, written by
`lmjax.train.checkpoint.export_model`). Every reader and writer of `model.json` goes through
here: the trainers (`make_spec`, `init`), the predictors, the scanner and the face classifier
(`read_spec`, `build`, `abstract_variables`).

    spec = make_spec('mcl', num_points=68, width=1024, num_heads=1, variant='gap', size=50,
                     crop_scale=1.1, grayscale=True, dataset='300w')
    model = build(spec)                      # flax module (MCL `batch_norm=False`: folded)
    variables = init(spec, seed=0)           # concrete, as training starts
    abstract = abstract_variables(spec)      # jax.eval_shape of init: what a restore needs

Families (`experiment` key) and their fields (`FIELDS`):

  mcl      MCL regressor on S × S crops (grey or RGB), `num_heads` shape-prediction heads.
  bbfcn    BB-FCN (`variant` bbfcn), its backbone alone (backbone_only) or the regression-FCN
           baseline (regression); `face_template` [K, 2] is the mean landmark position inside
           the backbone's training window, in [0, 1] units (the scanner's face proposals).
  facecls  FaceNet face / non-face classifier on S × S crops.
  proposer ProposalNet, the scanner's cascade proposer (12 × 12 windows, dense at stride 2).

Format history (`format` key): 1 = no key, the folders written before the registry (read as
they are; a BB-FCN one lacks `face_template`, see `lmjax.train.checkpoint.upgrade_model_folder`);
2 = `format: 2` and the BB-FCN `face_template`; 3 = the BB-FCN `map_features` (the backbone's
deconv2 width; older folders read as the paper's 15).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from lmjax.models import bbfcn, facenet, mcl, proposal_net

FORMAT = 3  # the `model.json` format this code writes
SPEC_FILE = 'model.json'
_NUMBER = r'(-?[0-9.eE+-]+)'
_PAIR = re.compile(rf'\[\s*{_NUMBER},\s*{_NUMBER}\s*\]')


class SpecError(ValueError):
  """A `model.json` (or a spec dict) that does not follow the schema."""


@dataclasses.dataclass(frozen=True)
class Field:
  """One `model.json` field.

  Attributes:
    convert: returns the JSON value of an input value, or None when it is not acceptable.
    expected: what an acceptable value is (for the error message).
    since: the format that introduced the field (absent from older folders).
    default: the value a folder older than `since` implies (None: none, the field stays absent).
  """

  convert: Callable[[Any], Any]
  expected: str
  since: int = 1
  default: Any = None


def _int(x: Any) -> int | None:
  ok = isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_) and x > 0
  return int(x) if ok else None


def _float(x: Any) -> float | None:
  ok = isinstance(x, int | float | np.number) and not isinstance(x, bool | np.bool_)
  return float(x) if ok and math.isfinite(x) and x > 0 else None


def _bool(x: Any) -> bool | None:
  return bool(x) if isinstance(x, bool | np.bool_) else None


def _str(x: Any) -> str | None:
  return x if isinstance(x, str) else None


def _one_of(*choices: str) -> Callable[[Any], str | None]:
  return lambda x: x if x in choices else None


def _int_list(x: Any) -> list[int] | None:
  if not isinstance(x, list | tuple) or not x:
    return None
  out = [_int(v) for v in x]
  return None if None in out else out


def _points(x: Any) -> list[list[float]] | None:
  """[K, 2] finite numbers -> nested list of floats (the shortest float32 spelling)."""
  try:
    a = np.asarray(x, np.float32)
  except (TypeError, ValueError):
    return None
  if a.ndim != 2 or a.shape[1] != 2 or not len(a) or not np.isfinite(a).all():
    return None
  return [[float(np.format_float_positional(v, unique=True)) for v in row] for row in a]


POSITIVE_INT = Field(_int, 'a positive integer')
POSITIVE_FLOAT = Field(_float, 'a positive number')
TEXT = Field(_str, 'a string')

FIELDS: dict[str, dict[str, Field]] = {
  'mcl': {
    'num_points': POSITIVE_INT,
    'width': POSITIVE_INT,
    'num_heads': POSITIVE_INT,
    'variant': Field(_one_of('gap', 'pre_bm'), "'gap' or 'pre_bm'"),
    'size': POSITIVE_INT,
    'crop_scale': POSITIVE_FLOAT,
    'grayscale': Field(_bool, 'true or false'),
    'dataset': TEXT,
  },
  'bbfcn': {
    'variant': Field(
      _one_of('bbfcn', 'backbone_only', 'regression'),
      "'bbfcn', 'backbone_only' or 'regression'",
    ),
    'num_points': POSITIVE_INT,
    'size': POSITIVE_INT,
    'refine_size': POSITIVE_INT,
    'crop_scale': POSITIVE_FLOAT,
    'dataset': TEXT,
    'face_template': Field(_points, 'a [num_points, 2] list of numbers', since=2),
    'map_features': Field(_int, 'a positive integer', since=3, default=15),
  },
  'facecls': {
    'size': POSITIVE_INT,
    'supersample': POSITIVE_INT,
    'widths': Field(_int_list, 'a non-empty list of positive integers'),
    'hidden': POSITIVE_INT,
    'crop': TEXT,
    'dataset': TEXT,
  },
  'proposer': {
    'size': POSITIVE_INT,
    'widths': Field(_int_list, 'a list of 3 positive integers'),
    'crop': TEXT,
    'dataset': TEXT,
  },
}
FAMILIES = tuple(FIELDS)


def validate(spec: Any, source: str = 'model spec', *, current: bool = False) -> dict[str, Any]:
  """`spec` checked against its family's schema and format, as JSON types (a new dict).

  Args:
    spec: a model.json dict.
    source: where it comes from (the start of error messages).
    current: require the current format (what writers must produce) instead of any known one.

  Raises:
    SpecError: one line naming `source`, the field and what was expected.
  """
  if not isinstance(spec, Mapping):
    raise SpecError(f'{source}: expected a JSON object, got {type(spec).__name__}')
  family = spec.get('experiment')
  if family not in FIELDS:
    raise SpecError(f"{source}: field 'experiment' is {family!r}; expected one of {FAMILIES}")
  version = spec.get('format', 1)
  if current and version != FORMAT:
    raise SpecError(
      f"{source}: field 'format' is {spec.get('format', 'missing')}; expected {FORMAT} "
      f'(make specs with lmjax.models.registry.make_spec)'
    )
  if _int(version) is None or version > FORMAT:
    raise SpecError(
      f"{source}: field 'format' is {version!r}; expected an integer format ≤ {FORMAT} "
      f'(a newer lmjax wrote this folder)'
    )
  fields = {k: f for k, f in FIELDS[family].items() if f.since <= version}
  # A newer field an older format implies (its default) may be spelled out: validate(validate(s))
  # is validate(s).
  implied = {k: v for k, v in _defaults(family).items() if k not in fields}
  unknown = sorted(set(spec) - set(fields) - set(implied) - {'experiment', 'format'})
  if unknown:
    raise SpecError(f'{source}: unexpected field {unknown[0]!r} for a {family} model')
  out: dict[str, Any] = {'experiment': family}
  if version > 1:
    out['format'] = int(version)
  for name, field in fields.items():
    if name not in spec:
      raise SpecError(f'{source}: field {name!r} missing (expected {field.expected})')
    value = field.convert(spec[name])
    if value is None:
      raise SpecError(f'{source}: field {name!r} is {spec[name]!r}; expected {field.expected}')
    out[name] = value
  for name, default in implied.items():
    if spec.get(name, default) != default:
      raise SpecError(
        f'{source}: field {name!r} is {spec[name]!r}; a format-{version} folder implies '
        f'{default!r} (format ≥ {FIELDS[family][name].since} stores other values)'
      )
    out[name] = default
  template = out.get('face_template')
  if template is not None and len(template) != out['num_points']:
    raise SpecError(
      f"{source}: field 'face_template' has {len(template)} rows; expected num_points = "
      f'{out["num_points"]}'
    )
  return out


def make_spec(family: str, **fields: Any) -> dict[str, Any]:
  """A current-format spec of `family` from its fields (numpy / tuple values are converted);
  a field with a default (`Field.default`) may be left out.

  Raises:
    SpecError: a field is missing, unknown or of the wrong type.
  """
  defaults = _defaults(family) if family in FIELDS else {}
  return validate({'experiment': family, 'format': FORMAT, **defaults, **fields}, f'{family} spec')


def _defaults(family: str) -> dict[str, Any]:
  """{field: default} of the fields of `family` that have one (`Field.default`)."""
  return {k: f.default for k, f in FIELDS[family].items() if f.default is not None}


def spec_path(directory: str) -> str:
  return str(epath.Path(directory) / SPEC_FILE)


def write_spec(directory: str, spec: Mapping[str, Any]) -> None:
  """Validates `spec` (it must be of the current format) and writes `<directory>/model.json`."""
  spec = validate(spec, spec_path(directory), current=True)
  epath.Path(directory).mkdir(parents=True, exist_ok=True)
  text = json.dumps(spec, indent=2, sort_keys=True)
  text = _PAIR.sub(lambda m: f'[{m[1]}, {m[2]}]', text)  # one [x, y] row per line
  epath.Path(spec_path(directory)).write_text(text + '\n', encoding='utf-8')


def read_spec(directory: str, family: str | None = None) -> dict[str, Any]:
  """The validated `model.json` of a model folder (optionally required to be of `family`).

  Raises:
    FileNotFoundError: `directory` has no model.json (one line naming the folder).
    SpecError: the file is not valid JSON (`<dir>/model.json: not valid JSON (line L col C:
      ...)`), breaks the schema or is another family's.
  """
  path = spec_path(directory)
  if not epath.Path(path).is_file():
    raise FileNotFoundError(
      f'{directory} is not an lmjax model folder: {SPEC_FILE} is missing (expected the '
      f'output of training, e.g. <workdir>/models/am, or pretrained/<name>)'
    )
  try:
    raw = json.loads(epath.Path(path).read_text(encoding='utf-8'))
  except json.JSONDecodeError as e:
    raise SpecError(f'{path}: not valid JSON (line {e.lineno} col {e.colno}: {e.msg})') from None
  except UnicodeDecodeError:
    raise SpecError(f'{path}: not valid JSON (not UTF-8 text)') from None
  found = raw.get('experiment') if isinstance(raw, Mapping) else None
  if family is not None and found in FIELDS and found != family:  # the family first: clearest
    raise SpecError(f"{path}: field 'experiment' is {found!r}, not {family} (another model kind)")
  return validate(raw, path)


def upgrade_spec(spec: Mapping[str, Any], face_template: Any = None) -> dict[str, Any]:
  """A format-1 spec in the current format (BB-FCN ones need their `face_template` [K, 2])."""
  old = validate(spec, 'model spec')
  fields = {k: v for k, v in old.items() if k not in ('experiment', 'format')}
  if old['experiment'] == 'bbfcn' and 'face_template' not in fields:
    if face_template is None:
      raise SpecError('upgrading a bbfcn spec: give its face_template [num_points, 2]')
    fields['face_template'] = face_template
  return make_spec(old['experiment'], **fields)


def face_template(spec: Mapping[str, Any]) -> np.ndarray:
  """float32 [K, 2] `face_template` of a BB-FCN spec (a clear error for format-1 folders)."""
  if 'face_template' not in spec:
    raise SpecError(
      "field 'face_template' missing (a format-1 BB-FCN folder); add it with "
      "lmjax.train.checkpoint.upgrade_model_folder('<folder>')"
    )
  return np.asarray(spec['face_template'], np.float32)


# ------------------------------------------------------------------- build and init


def build(spec: Mapping[str, Any], *, batch_norm: bool = True) -> nn.Module:
  """The flax module of a (validated) spec.

  Args:
    spec: a `make_spec` / `read_spec` dict.
    batch_norm: MCL only: False builds the inference layout whose BatchNorm is folded into the
      convolutions (`lmjax.models.mcl.fold_batch_norm`).
  """
  family = spec['experiment']
  if family == 'mcl':
    return mcl.MCL(
      num_points=spec['num_points'],
      width=spec['width'],
      num_heads=spec['num_heads'],
      variant=spec['variant'],
      batch_norm=batch_norm,
    )
  if not batch_norm:
    raise ValueError(f'batch_norm=False: only MCL models have BatchNorm, not {family}')
  if family == 'bbfcn':
    if spec['variant'] == 'regression':
      return bbfcn.RegressionFCN(num_points=spec['num_points'])
    return bbfcn.BBFCN(num_points=spec['num_points'], map_features=spec['map_features'])
  if family == 'facecls':
    return facenet.FaceNet(widths=tuple(spec['widths']), hidden=spec['hidden'])
  if family == 'proposer':
    return proposal_net.ProposalNet(widths=tuple(spec['widths']))
  raise SpecError(f"field 'experiment' is {family!r}; expected one of {FAMILIES}")


def example_inputs(spec: Mapping[str, Any]) -> tuple[jax.Array, ...]:
  """Zero inputs (batch 1) that `model.init` needs to create every parameter.

  mcl: crops [1, S, S, C] (C = 1 grey, 3 RGB); bbfcn: crops [1, S, S, 3] and, with branches,
  branch inputs [1, K, P, P, 4]; regression, facecls and proposer: crops [1, S, S, 3].
  """
  s = spec['size']
  channels = 1 if spec['experiment'] == 'mcl' and spec['grayscale'] else 3
  crops = jnp.zeros((1, s, s, channels), jnp.float32)
  if spec['experiment'] == 'bbfcn' and spec['variant'] != 'regression':
    p = bbfcn.PATCH
    return crops, jnp.zeros((1, spec['num_points'], p, p, 4), jnp.float32)
  return (crops,)


def init(spec: Mapping[str, Any], seed: int = 0) -> dict[str, Any]:
  """Fresh variables ({params[, batch_stats]}) of the model of `spec`, from key(seed)."""
  model, kwargs = build(spec), {'train': False} if spec['experiment'] == 'mcl' else {}
  return dict(model.init(jax.random.key(seed), *example_inputs(spec), **kwargs))


def abstract_variables(spec: Mapping[str, Any]) -> dict[str, Any]:
  """`jax.eval_shape` of `init(spec)`: shapes and dtypes, no computation (for restoring)."""
  return jax.eval_shape(lambda: init(spec))
