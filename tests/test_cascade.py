"""The scanner's cascade mode: proposal geometry, bounded compiles over photo sizes, the pyramid
scanner's output contract, a face found on a synthetic photo, and one-line errors."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.bbfcn.predictor import BBFCNPredictor
from lmjax.models import proposal_net, registry
from lmjax.scan import cascade, modes, proposer, tiling
from lmjax.scan.scanner import Scanner
from lmjax.train import checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]
BBFCN5 = str(ROOT / 'pretrained' / 'bbfcn5')
PROPOSER5 = ROOT / 'pretrained' / 'proposer5'


def _proposer_spec():
  return registry.make_spec('proposer', size=12, widths=[10, 16, 32], crop='window', dataset='x')


@pytest.fixture(scope='module')
def proposer_dir(tmp_path_factory) -> str:
  """A ProposalNet model folder with fresh weights (plumbing tests)."""
  spec = _proposer_spec()
  path = str(tmp_path_factory.mktemp('model') / 'proposer5')
  checkpoint.export_model(path, registry.init(spec), spec)
  return path


@pytest.fixture(scope='module')
def xla_predictor() -> BBFCNPredictor:
  return BBFCNPredictor(BBFCN5, backend='xla')


def _photo(rng, height, width):
  """A uint8 photo: a random 24 × 32 patch on a black canvas (cheap to make at any size)."""
  photo = np.zeros((int(height), int(width), 3), np.uint8)
  photo[:24, :32] = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
  return photo


def _framed_square_net(_, x):
  """A stand-in ProposalNet [C, T, T, 3] -> (logits, zero offsets) on its output grid: a
  window scores high when its central 8 × 8 pixels are white and its 2-pixel border black (a
  pattern that fills the window at one scale and one place only)."""
  n = proposal_net.output_size(x.shape[1])
  window_sums = lambda side: jax.lax.reduce_window(
    x[..., 0], 0.0, jax.lax.add, (1, side, side), (1, 1, 1), 'VALID'
  )
  whole = window_sums(12)[:, ::2, ::2][:, :n, :n]
  centre = window_sums(8)[:, 2::2, 2::2][:, :n, :n]
  match = (2 * centre - whole) / 144.0  # centre minus border
  logits = 30.0 * (match - 0.3)
  return logits, jnp.zeros((*logits.shape, 4))


def test_window_scales_reach_min_face_and_stop_at_the_window():
  scales = proposer.window_scales(480, 640, 40, 0.709)
  assert scales[0] == pytest.approx(12 / 40)
  assert 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709
  assert proposer.window_scales(30, 40, 40, 0.709) == []  # smaller than one face


@pytest.mark.parametrize('side', [48, 100, 230])
def test_a_pattern_is_proposed_where_it_is(side):
  image = np.full((700, 1100, 3), 128, np.uint8)
  x0, y0 = 613, 151
  image[y0 : y0 + side, x0 : x0 + side] = 0
  border = side // 6
  image[y0 + border : y0 + side - border, x0 + border : x0 + side - border] = 255
  stage = proposer.ProposerStage(_framed_square_net, proposer.ProposerParams(threshold=0.5))
  found = stage.propose(None, image, min_face=40)
  assert found['valid'][0]
  truth = np.array([x0 - 0.5, y0 - 0.5, x0 + side - 0.5, y0 + side - 0.5])
  from lmjax.core.geometry import box_iou

  # the best window: a √2 pyramid step and stride 2 from exact
  assert box_iou(found['boxes'][:1], truth[None])[0, 0] > 0.6, (found['boxes'][0], truth)


def test_fifty_photo_sizes_compile_a_bounded_number_of_programs(proposer_dir, xla_predictor):
  spec, variables = _proposer_spec(), checkpoint.load_model(proposer_dir, 'proposer')[1]
  sc = cascade.CascadeScanner(
    xla_predictor, (spec, variables), min_face=250, threshold=0.0, detections=4, max_faces=2,
    proposals=8, candidates=16,
  )  # fmt: skip
  rng = np.random.default_rng(0)
  sizes = rng.integers(300, 4001, (50, 2))
  for h, w in sizes:
    out = sc.scan(_photo(rng, h, w))
  assert out['points'].shape == (5, 4, 2)
  assert out['valid'].any()  # threshold 0: every photo has faces, the predictor ran
  assert len({sc.levels_for(min(h, w)) for h, w in sizes}) > 3  # the depth did vary
  assert sc.compiled_programs() <= 8, sc.compiled_programs()


def test_output_keys_and_shapes_are_the_pyramid_scanners(proposer_dir):
  rng = np.random.default_rng(1)
  image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
  pyramid_out = Scanner.load(BBFCN5, levels=2).scan(image)
  sc = modes.load(
    BBFCN5, 'cascade', proposer=proposer_dir, classifier=None, min_face=40, proposal_threshold=0.0
  )
  out = sc.scan(image)
  assert sorted(out) == sorted(pyramid_out)
  for key, value in pyramid_out.items():
    assert out[key].shape == value.shape and out[key].dtype == value.dtype, key
  assert out['valid'].any()
  # every landmark lies in or near its face box; faces are the best detections, best first
  box = out['faces'][0]
  side = box[2] - box[0]
  assert np.all(np.abs(out['face_points'][0] - (box[:2] + box[2:]) / 2) < side)
  assert np.all(np.diff(out['score'][0][out['valid'][0]]) <= 0)
  np.testing.assert_array_equal(out['face_points'][0], out['points'][:, 0])
  again = sc.regroup(out, out['coarse_points'], image.shape)
  np.testing.assert_array_equal(again['face_points'][0], out['coarse_points'][:, 0])
  from lmjax.scan import detect

  faces = detect.faces_from_scan(out, min_score=0.0)
  assert len(faces) and np.isfinite(faces[0].points).all()


def test_a_face_on_a_synthetic_photo_is_found():
  if not (PROPOSER5 / 'model.json').is_file():
    pytest.skip('pretrained/proposer5 is not in this checkout')
  sys.path.insert(0, str(ROOT / 'benchmarks'))
  from _settings import photo_with_face

  photo, box = photo_with_face()
  sc = cascade.CascadeScanner.load(BBFCN5, min_face=40)
  out = sc.scan(photo)
  from lmjax.core.geometry import box_iou

  assert out['face_valid'][0]
  assert box_iou(out['faces'][:1], box[None])[0, 0] > 0.4, (out['faces'][0], box)
  inside = (out['face_points'][0] >= box[:2]) & (out['face_points'][0] <= box[2:])
  assert inside.all()
  # detections 0 and 1: the best box's landmarks from its crop and from the mirrored crop
  # (mapped back, left and right swapped): the same face, so the same points within a few px
  np.testing.assert_array_equal(out['proposals'][0], out['proposals'][1])
  side = box[2] - box[0]
  assert np.abs(out['points'][:, 0] - out['points'][:, 1]).max() < 0.05 * side


def test_bad_arguments_are_one_line_errors(proposer_dir, tmp_path, xla_predictor):
  proposal = (_proposer_spec(), checkpoint.load_model(proposer_dir, 'proposer')[1])
  cases = [
    (dict(min_face=-3), 'min_face is -3'),
    (dict(min_face=40, levels=3), 'either levels or min_face'),
    (dict(threshold=1.5), 'threshold is 1.5'),
    (dict(detections=100), 'detections is 100'),
    (dict(max_faces=40), 'max_faces is 40'),
    (dict(factor=1.2), 'factor is 1.2'),
    (dict(colour='red'), "unknown cascade setting(s) ['colour']"),
  ]
  for kwargs, message in cases:
    with pytest.raises(ValueError) as e:
      cascade.CascadeScanner(xla_predictor, proposal, **kwargs)
    assert message in str(e.value) and '\n' not in str(e.value)
  missing = str(tmp_path / 'nowhere')
  with pytest.raises(ValueError, match=f'proposer {missing}: no model folder'):
    cascade.CascadeScanner.load(BBFCN5, proposer=missing)
  with pytest.raises(ValueError, match="scan mode is 'fast'"):
    modes.load(BBFCN5, 'fast')
  with pytest.raises(ValueError, match='proposer: not a setting of the pyramid'):
    modes.load(BBFCN5, 'pyramid', proposer=proposer_dir)
  with pytest.raises(ValueError, match='threshold: not a setting of the cascade'):
    modes.load(BBFCN5, 'cascade', proposer=proposer_dir, threshold=0.3)


def test_tiling_pack_sizes_keeps_pack():
  image = np.random.default_rng(2).integers(0, 255, (300, 500, 3), dtype=np.uint8)
  a = tiling.pack(image, 6, 1.16)
  b = tiling.pack_sizes(image, tiling.level_sizes(300, 500, 6, 1.16))
  np.testing.assert_array_equal(a.tiles, b.tiles)
  assert a.pieces == b.pieces


def test_cli_cascade_mode_writes_faces(proposer_dir, tmp_path):
  import json

  import cv2

  from lmjax.scan import cli

  image = np.random.default_rng(3).integers(0, 255, (96, 128, 3), dtype=np.uint8)
  cv2.imwrite(str(tmp_path / 'one.png'), image)
  out = tmp_path / 'faces.json'
  argv = [str(tmp_path / 'one.png'), f'--checkpoint={BBFCN5}', '--scan_mode=cascade',
          f'--proposer={proposer_dir}', '--proposal_threshold=0', '--min_score=0',
          '--face_classifier=none',
          f'--json={out}']  # fmt: skip
  assert cli.main(argv) == 0
  faces = json.loads(out.read_text())[0]['faces']
  assert faces and len(faces[0]['points']) == 5
