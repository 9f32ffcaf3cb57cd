"""Scanner plumbing end to end: multi-face evaluation (CLI), lmjax-scan, faces from a scan."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from lmjax import synthface
from lmjax.data import datasets
from lmjax.data.datasets import synthetic
from lmjax.data.datasets.pts import write_pts
from lmjax.eval import multiface
from lmjax.facecls.classifier import FaceClassifier
from lmjax.models import registry
from lmjax.scan import cli, detect
from lmjax.scan.scanner import Scanner
from lmjax.train import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _afw_folder(root):
  """Two photos in the AFW layout: `<photo>_<k>.jpg` + 1-based `.pts` per face."""
  root.mkdir()
  count = 0
  for seed in range(30):
    scene = synthface.render_scene((5, seed), (120, 160), max_faces=3)
    if not scene['faces']:
      continue
    bgr = cv2.cvtColor(scene['image'], cv2.COLOR_RGB2BGR)
    for k, face in enumerate(scene['faces'], 1):
      cv2.imwrite(str(root / f'{seed}_{k}.jpg'), bgr)
      write_pts(root / f'{seed}_{k}.pts', face['landmarks'])
    count += 1
    if count == 2:
      return root
  raise AssertionError('no scenes with faces')


def _check_report(report, num_images):
  assert report['num_images'] == num_images
  for key in ('bbfcn', 'backbone_only'):
    row = report['summary'][key]
    assert len(row['recall10_m30']) == 5
    assert all(0 <= v <= 100 or np.isnan(v) for v in row['recall10_m30'])
    assert row['recall10_m30'][0] >= row['recall10_m15'][0]  # more detections, more recall
    assert set(row) >= {'proposal_recall_at_2', 'proposal_recall_at_20', 'faces_ap'}


@pytest.fixture(scope='module')
def classifier_dir(tmp_path_factory):
  """A face/non-face CNN folder with fresh weights."""
  spec = registry.make_spec(
    'facecls', size=24, supersample=2, widths=[4, 4, 4], hidden=8, crop='square',
    dataset='synthetic',
  )  # fmt: skip
  path = str(tmp_path_factory.mktemp('facecls') / 'facecls')
  checkpoint.export_model(path, registry.init(spec), spec)
  return path


def test_evaluate_cli_on_an_afw_style_folder(model_dir, classifier_dir, tmp_path):
  folder = _afw_folder(tmp_path / 'afw')
  out = tmp_path / 'eval' / 'recall.json'
  cmd = [
    sys.executable, '-m', 'lmjax.evaluate', f'--checkpoint={model_dir}', '--dataset=afw_multiface',
    f'--manual_dir={folder}', f'--output={out}', f'--data_dir={tmp_path / "tfds"}', '--levels=4',
    f'--face_classifier={classifier_dir}', '--scan_mode=pyramid',
  ]  # fmt: skip
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'recall@10% (m=30)' in proc.stdout
  report = json.loads(out.read_text())
  _check_report(report, 2)
  assert report['dataset'] == 'afw_multiface/test' and report['levels'] == 4
  assert report['checkpoint'] == os.path.abspath(model_dir) and report['threshold'] == 0.2
  assert 'detector_ap' in report['summary']['bbfcn']  # the classifier was wired in
  for suffix in ('recall', 'proposals', 'pr'):
    assert (tmp_path / 'eval' / f'recall_{suffix}.png').stat().st_size > 1000


def test_evaluate_synthetic_scenes_with_a_face_classifier(model_dir, classifier_dir, tmp_path):
  config = synthetic.make_config('scene5', num_train=1, num_validation=1, num_test=3)
  source = datasets.load('synthetic', 'test', data_dir=str(tmp_path / 'tfds'), config=config)
  scanner = Scanner.load(model_dir, levels=4, threshold=0.2, detections=max(multiface.MS))
  classifier, calls = FaceClassifier.load(classifier_dir), []

  def rescore(out, image):
    calls.append(image.shape)
    found = detect.faces_from_scan(out, image, classifier, min_score=0.0)
    return np.array([f.box for f in found]).reshape(-1, 4), np.array([f.score for f in found])

  report = multiface.evaluate_scanner(
    scanner, source, tmp_path / 'r.json', name='scene5', checkpoint=model_dir, rescore=rescore
  )
  _check_report(report, 3)
  assert len(calls) == 6  # every image, for the model and its backbone-only ablation
  assert report['box_convention'] == 'bbox' and report['levels'] == 4
  row = report['summary']['bbfcn']
  assert 'detector_ap' in row and 'rescored_proposal_recall_at_2' in row
  assert 'detector' in report['details']['bbfcn']
  assert json.loads((tmp_path / 'r.json').read_text())['num_images'] == 3
  plain = multiface.evaluate_scanner(scanner, source, tmp_path / 'p.json', max_images=2)
  assert plain['num_images'] == 2 and 'detector_ap' not in plain['summary']['bbfcn']


def test_evaluate_on_an_fddb_layout(model_dir, tmp_path, capsys):
  """`lmjax.evaluate.run` (the command line's body, in process) with a random-weight scanner."""
  from test_fddb import write_fddb

  from lmjax import evaluate

  tree = write_fddb(tmp_path / 'fddb')
  out = tmp_path / 'eval' / 'fddb.json'
  evaluate.run(model_dir, 'fddb', 'fold_01', str(out), manual_dir=str(tree),
               data_dir=str(tmp_path / 'tfds'), levels=4)  # fmt: skip
  report = json.loads(out.read_text())
  assert report['dataset'] == 'fddb/fold_01' and report['folds'] == [1]
  assert report['num_images'] == 2 and report['num_faces'] == 3 and report['levels'] == 4
  curve = report['fddb_discrete_roc']
  assert len(curve['thresholds']) == len(curve['false_positives']) == len(curve['true_positives'])
  detections = np.array(curve['true_positives']) + np.array(curve['false_positives'])
  assert (detections[-1] if detections.size else 0) == report['num_detections']
  assert 'fddb_discrete_recall_at_1000_fp' in report  # null: far fewer than 1000 detections
  assert report['faces_scored_by'] == 'landmark consensus'
  assert (tmp_path / 'eval' / 'fddb_fddb_roc.png').stat().st_size > 1000
  assert 'discrete true-positive rate at 1000 false positives' in capsys.readouterr().out


def test_scan_cli_image_folder_and_video(model_dir, tmp_path):
  scene = synthface.render_scene((5, 1), (120, 160), max_faces=3)
  image = tmp_path / 'in' / 'scene.png'
  image.parent.mkdir()
  cv2.imwrite(str(image), cv2.cvtColor(scene['image'], cv2.COLOR_RGB2BGR))
  common = [f'--checkpoint={model_dir}', '--levels=3', '--min_score=0.0']
  assert cli.main([str(image), '--out', str(tmp_path / 'viz.png'), *common]) == 0
  assert cv2.imread(str(tmp_path / 'viz.png')).shape == (120, 160, 3)
  assert cli.main([str(image.parent), '--out', str(tmp_path / 'drawn'), '--json',
                        str(tmp_path / 'f.json'), *common]) == 0  # fmt: skip
  assert os.listdir(tmp_path / 'drawn') == ['scene.png']
  records = json.loads((tmp_path / 'f.json').read_text())
  assert records[0]['input'].endswith('scene.png')
  for face in records[0]['faces']:
    assert len(face['box']) == 4 and len(face['points']) == 5
  video = str(tmp_path / 'clip.avi')
  writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'MJPG'), 5, (160, 120))
  for _ in range(3):
    writer.write(cv2.cvtColor(scene['image'], cv2.COLOR_RGB2BGR))
  writer.release()
  assert cli.main([video, '--json', str(tmp_path / 'v.json'), *common]) == 0
  assert len(json.loads((tmp_path / 'v.json').read_text())) == 3
  with pytest.raises(SystemExit, match='does not exist'):
    cli.main([str(tmp_path / 'missing.jpg'), *common])


def test_scan_cli_help_and_usage_errors(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(['--help'])
  assert exit_info.value.code == 0 and '--min_face' in capsys.readouterr().out
  cases = [
    (['--checkpoint=m'], 'expected one input'),
    (['a.png', 'b.png', '--checkpoint=m'], 'expected one input'),
    (['a.png'], '--checkpoint must have a value'),
    (['a.png', '--checkpoint=m', '--levels=2', '--min_face=30'], 'levels, min_face'),
    (['a.png', '--checkpoint=m', '--levels=two'], '--levels=two'),
  ]
  for argv, message in cases:
    with pytest.raises(SystemExit) as exit_info:
      cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and 'lmjax-scan: error:' in err and message in err, argv


def _scan_out():
  """A hand-made scan of one image: two types, two detection slots, two face slots."""
  return {
    'points': np.array([[[10, 10], [50, 50]], [[20, 10], [90, 90]]], np.float32),
    'score': np.array([[0.9, 0.7], [0.8, 0.0]], np.float32),
    'valid': np.array([[True, True], [True, False]]),
    'proposals': np.array(
      [[0, 0, 30, 30], [40, 40, 70, 70], [1, 0, 31, 30], [80, 80, 99, 99]], np.float32
    ),
    'proposal_score': np.array([1.0, 0.81, 0.5, 0.5], np.float32),
    'proposal_valid': np.array([True, True, False, False]),
    'faces': np.array([[0, 0, 30, 30], [40, 40, 70, 70]], np.float32),
    'face_score': np.array([0.9, 0.7], np.float32),
    'face_valid': np.array([True, True]),
  }


def test_faces_from_scan_with_and_without_a_classifier():
  out = _scan_out()
  faces = detect.faces_from_scan(out, min_score=0.75)
  assert len(faces) == 1 and faces[0].score == pytest.approx(0.9)
  np.testing.assert_allclose(faces[0].points, [[10, 10], [20, 10]])  # both types joined

  class Classifier:  # prefers the second proposal
    def score(self, image, boxes):
      return np.where(boxes[:, 0] > 20, 0.95, 0.1)

  faces = detect.faces_from_scan(out, np.zeros((100, 100, 3), np.uint8), Classifier())
  assert len(faces) == 1 and faces[0].score == pytest.approx(0.95 * 0.9)  # prob × √consensus
  np.testing.assert_allclose(faces[0].points[0], [50, 50])
  assert np.isnan(faces[0].points[1]).all()  # no type-1 detection on that face
  with pytest.raises(ValueError, match='needs the image'):
    detect.faces_from_scan(out, None, Classifier())


@pytest.fixture(scope='module')
def model_dir(bbfcn5_random_dir):
  return bbfcn5_random_dir
