"""300-VW builder on a generated copy of the official layout (rendered faces written as MJPG
`vid.avi` + per-frame `.pts`), the tracking metrics by hand, and the evaluation command's `run`
end to end with the pretrained MCL68 landmarker behind the BB-FCN5 scanner."""

import json
import pathlib
import shutil
import types

import cv2
import numpy as np
import pytest

from lmjax.core.landmarks import IBUG68
from lmjax.data import datasets
from lmjax.data.datasets import DatasetFormatError, the300vw
from lmjax.data.datasets.pts import write_pts
from lmjax.eval import tracking, video_metrics
from lmjax.synthface import sequence

PRETRAINED = pathlib.Path(__file__).resolve().parents[1] / 'pretrained'
SIZE = (160, 208)  # frame height, width: faces of about 56 px
FPS = 25.0
# video id -> (trajectory, frames): one training video, one of test categories 1 and 3
VIDEOS = {'001': ('static', 3), '114': ('turning', 5), '410': ('static', 4)}


def _decoded(path):
  """The RGB frames of a video, as cv2 decodes them."""
  capture, frames = cv2.VideoCapture(str(path)), []
  while (frame := capture.read())[0]:
    frames.append(cv2.cvtColor(frame[1], cv2.COLOR_BGR2RGB).astype(float))
  capture.release()
  return frames


@pytest.fixture(scope='module')
def clean_tree(tmp_path_factory):
  root = tmp_path_factory.mktemp('vw') / '300VW'
  clips = {}
  for seed, (video_id, (kind, frames)) in enumerate(VIDEOS.items()):
    clips[video_id] = sequence.render_sequence(seed, sequence.trajectory(kind, frames, SIZE), SIZE)
    the300vw.write_video(
      root / video_id, clips[video_id]['frames'], clips[video_id]['landmarks'], FPS
    )
  return root, clips


@pytest.fixture
def tree(clean_tree, tmp_path):
  """A copy of the fixture tree that a test may damage."""
  root, clips = clean_tree
  shutil.copytree(root, tmp_path / '300VW')
  return tmp_path / '300VW', clips


def _load(split, root, tmp_path, config=None):
  return datasets.load(
    '300vw', split, manual_dir=str(root), data_dir=str(tmp_path / 'tfds'), config=config
  )


def test_300vw_builder_yields_frames_grouped_by_video(tree, tmp_path):
  root, clips = tree
  test = _load('test', root, tmp_path)
  assert len(test) == 9 and datasets.schema_of(test) is IBUG68
  examples = [datasets.decode(test[i]) for i in range(len(test))]
  assert [ex['image_id'] for ex in examples] == [
    *(f'114/{i:06d}' for i in range(1, 6)),
    *(f'410/{i:06d}' for i in range(1, 5)),
  ]
  for ex in examples:
    video_id = ex['image_id'].split('/')[0]
    truth = clips[video_id]['landmarks'][ex['frame_index']]
    np.testing.assert_allclose(ex['landmarks'], truth, atol=2e-3)  # 1-based .pts read back
    np.testing.assert_allclose(ex['bbox'], [*truth.min(0), *truth.max(0)], atol=2e-3)
    assert ex['video_id'].decode() == video_id and ex['fps'] == FPS
    assert ex['category'] == (1 if video_id == '114' else 3) and ex['visible'].all()
    decoded = _decoded(root / video_id / 'vid.avi')
    index, image = ex['frame_index'], ex['image'].astype(float)
    assert image.shape == (*SIZE, 3)
    diff = [np.abs(image - frame).mean() for frame in decoded]
    assert diff[index] < 5 and int(np.argmin(diff)) == index  # that frame, stored as JPEG
  train = _load('train', root, tmp_path)
  assert len(train) == 3 and datasets.decode(train[2])['category'] == 0
  every2 = the300vw.The300vwConfig(name='step2', frame_step=2)
  test2 = [datasets.decode(ex) for ex in _load('test', root, tmp_path, every2)]
  assert [(ex['video_id'].decode(), ex['frame_index']) for ex in test2] == [
    ('114', 0),
    ('114', 2),
    ('114', 4),
    ('410', 0),
    ('410', 2),
  ]
  assert test2[0]['fps'] == FPS / 2


@pytest.mark.parametrize(
  ('damage', 'message'),
  [
    ('points', r'114/annot/000003\.pts: expected 68 points, file has 67'),
    ('line', r'114/annot/000004\.pts: point 9: expected "x y", got \'12\.5\''),
    ('missing_last', r'410/annot/000004\.pts: annotation of video frame 4 not found'),
    ('gap', r'114/annot/000002\.pts: annotation of frame 2 not found'),
    ('beyond', r'114/annot/000006\.pts: annotates frame 6, beyond the 5 frame\(s\)'),
    ('unknown', r'300VW/999: video 999 is not one of the 114 300-VW videos'),
    ('video', r'410/vid\.avi: cannot open the video'),
    ('name', r'114/annot/frame7\.pts: expected only frame annotations named NNNNNN\.pts'),
  ],
)
def test_300vw_malformed_files_name_file_and_line(tree, tmp_path, damage, message):
  root, _ = tree
  annot = root / '114' / 'annot'
  if damage == 'points':
    write_pts(annot / '000003.pts', np.zeros((67, 2)))
  elif damage == 'line':
    lines = (annot / '000004.pts').read_text().splitlines()
    lines[3 + 8] = '12.5'
    (annot / '000004.pts').write_text('\n'.join(lines) + '\n')
  elif damage == 'missing_last':
    (root / '410' / 'annot' / '000004.pts').unlink()
  elif damage == 'gap':
    (annot / '000002.pts').unlink()
  elif damage == 'beyond':
    shutil.copy(annot / '000005.pts', annot / '000006.pts')
  elif damage == 'unknown':
    shutil.copytree(root / '410', root / '999')
  elif damage == 'video':
    (root / '410' / 'vid.avi').write_bytes(b'not a video')
  elif damage == 'name':
    shutil.copy(annot / '000005.pts', annot / 'frame7.pts')
  with pytest.raises(DatasetFormatError, match=message) as e:
    _load('test', root, tmp_path)
  assert '\n' not in str(e.value), str(e.value)


def test_300vw_missing_split_and_layout_errors(tree, tmp_path):
  root, _ = tree
  with pytest.raises(DatasetFormatError, match="300-VW has no split 'validation'"):
    _load('validation', root, tmp_path)
  shutil.rmtree(root / '001')
  with pytest.raises(DatasetFormatError, match=r"300-VW split 'train': none of its 50 video"):
    _load('train', root, tmp_path)
  (root / '410' / 'vid.avi').unlink()
  with pytest.raises(DatasetFormatError, match=r'410/vid\.avi: video file not found'):
    _load('test', root, tmp_path)


class _Tracker:
  """What `tracking.score_runs` reads of a tracker: its loss count."""

  def __init__(self, losses):
    self.losses = losses


def _eyes(num_frames, distance=100.0):
  """[T, 68, 2] truth: every point at the origin but the right outer eye corner (45) at
  (distance, 0): an outer-eye-corner (ioc) distance of `distance` pixels."""
  gt = np.zeros((num_frames, 68, 2))
  gt[:, 45, 0] = distance
  return gt


def test_tracking_metrics_by_hand():
  """Per-frame NME, jitter and missed frames of one sequence; FR / AUC count a missed frame as
  a failure."""
  gt = _eyes(4)
  points = gt + np.array([[3.0, 4.0], [0.0, 5.0], [0.0, 0.0], [0.0, 10.0]])[:, None]
  points[2] = np.nan  # missed
  errors = video_metrics.frame_errors(points, gt, IBUG68)
  np.testing.assert_array_equal(errors['found'], [True, True, False, True])
  np.testing.assert_allclose(errors['nme'], [0.05, 0.05, np.nan, 0.10])
  np.testing.assert_allclose(errors['jitter'], [np.sqrt(10) / 100, np.nan, np.nan])
  row = video_metrics.summary(errors['nme'], errors['jitter'])
  assert row['num_frames'] == 4 and row['missed_frames'] == 1 and row['missed_percent'] == 25
  assert row['nme_ioc'] == pytest.approx(20 / 3)
  assert row['jitter_ioc'] == pytest.approx(np.sqrt(10))
  assert row['fr_8_ioc'] == 50  # the 10 % frame and the missed one
  # CED: 0 below 5 %, 1/2 from 5 % to 8 %: area (8 - 5) / 2 over 8.
  assert row['auc_8_ioc'] == pytest.approx(100 * 1.5 / 8, abs=0.05)
  missed = video_metrics.summary(np.full(2, np.nan), np.full(1, np.nan))
  assert missed['fr_8_ioc'] == 100 and missed['auc_8_ioc'] == 0 and 'nme_ioc' not in missed
  # A centroid 2 px behind a truth moving 2 px per frame lags one frame.
  moving = gt + np.arange(4)[:, None, None] * np.array([2.0, 0.0])
  np.testing.assert_allclose(video_metrics.lag_frames(moving - [2.0, 0.0], moving), 1.0)
  boxes = [np.array([0, 0, 10, 10]), np.array([50, 50, 60, 60])]
  assert video_metrics.best_match(boxes, np.array([51, 51, 61, 61])) == 1
  assert video_metrics.best_match(boxes, np.array([20, 20, 30, 30])) is None
  assert video_metrics.best_match([], np.array([0, 0, 10, 10])) is None


def test_tracking_scores_by_category():
  """Two videos of category 1 and one of category 3: the groups pool their frames."""
  runs = []
  for video_id, category, offsets, losses in (
    ('114', 1, [1.0, 2.0], 0),  # NMEs 1 %, 2 %
    ('124', 1, [np.nan, 4.0], 2),  # missed, 4 %
    ('410', 3, [8.0, 8.0, 8.0], 1),  # 8 % three times, no jitter
  ):
    gt = _eyes(len(offsets))
    points = gt + np.array(offsets)[:, None, None] * np.array([1.0, 0.0])
    run = tracking.VideoRun(video_id, category, 25.0, _Tracker(losses))
    run.points, run.truth = list(points), list(gt)
    runs.append(run)
  protocol, curves = tracking.score_runs(runs, IBUG68)
  groups = protocol['groups']
  assert list(groups) == ['all', 'category_1', 'category_3']
  one, three, every = groups['category_1'], groups['category_3'], groups['all']
  assert one['num_videos'] == 2 and one['num_frames'] == 4 and one['missed_frames'] == 1
  assert one['nme_ioc'] == pytest.approx(7 / 3) and one['track_losses'] == 2
  assert one['jitter_ioc'] == pytest.approx(1.0)  # 114 only: 1 % -> 2 %
  assert three['nme_ioc'] == pytest.approx(8) and three['jitter_ioc'] == 0
  assert every['nme_ioc'] == pytest.approx((1 + 2 + 4 + 24) / 6) and every['track_losses'] == 3
  assert every['fr_8_ioc'] == pytest.approx(100 / 7)  # the missed frame; 8 % is no failure
  assert protocol['videos']['124']['missed_frames'] == 1
  assert len(curves['all']) == 7 and np.isnan(curves['category_1']).sum() == 1
  table = tracking.tracking_table({'protocol': {'dataset': 'the300vw', **protocol}})
  assert 'category_3' in table and 'jitter_ioc' in table


class _Source(list):
  """Decoded frames as a data source: a list with `dataset_info` (name, features)."""

  dataset_info = types.SimpleNamespace(
    name='the300vw', features=dict.fromkeys(['landmarks', *tracking.NEEDS])
  )


class _OffsetTracker:
  """Reports the truth shifted by 1 px (hidden in the frame's pixels), none on black frames."""

  losses = 0

  def update(self, frame):
    if not frame.any():
      return []
    points = frame[0, :68, :2].astype(np.float32) + 1.0
    return [types.SimpleNamespace(box=np.r_[points.min(0), points.max(0)], points=points)]


def _frame(video_id, index, found=True):
  gt = _eyes(1)[0] + index
  gt[:, 1] += np.arange(68) % 10  # a box of some height
  image = np.zeros((4, 68, 3), np.uint8)
  if found:
    image[0, :, :2] = gt
  box = np.r_[gt.min(0), gt.max(0)]
  return dict(
    image=image, landmarks=gt, bbox=box, image_id=f'{video_id}/{index + 1:06d}',
    video_id=video_id.encode(), frame_index=index, category=1, fps=25.0,
  )  # fmt: skip


def test_run_tracker_pairs_frames_and_checks_their_order():
  source = _Source([_frame('114', 0), _frame('114', 1, found=False), _frame('124', 0)])
  runs = tracking.run_tracker(lambda fps: _OffsetTracker(), source)
  assert [(r.video_id, len(r.points), r.fps) for r in runs] == [('114', 2, 25.0), ('124', 1, 25.0)]
  np.testing.assert_allclose(runs[0].points[0], runs[0].truth[0] + 1.0)
  assert np.isnan(runs[0].points[1]).all() and runs[1].image_ids == ['124/000001']
  assert len(tracking.run_tracker(lambda fps: _OffsetTracker(), source, max_videos=1)) == 1
  apart = _Source([_frame('114', 0), _frame('124', 0), _frame('114', 1)])
  with pytest.raises(ValueError, match=r'example 2 \(video 114\) comes after another video'):
    tracking.run_tracker(lambda fps: _OffsetTracker(), apart)
  backwards = _Source([_frame('114', 1), _frame('114', 0)])
  with pytest.raises(ValueError, match=r'example 1 \(video 114\) has frame_index 0 after 1'):
    tracking.run_tracker(lambda fps: _OffsetTracker(), backwards)
  still = _Source([_frame('114', 0)])
  still.dataset_info = types.SimpleNamespace(name='the300w', features={'landmarks': None})
  with pytest.raises(ValueError, match=r"needs the per-frame features .* lacks \['video_id'"):
    tracking.run_tracker(lambda fps: _OffsetTracker(), still)


def test_evaluate_tracks_the_300vw_fixture(clean_tree, tmp_path, capsys, monkeypatch):
  """`lmjax.evaluate.run` on the fixture's test split: the pretrained MCL68 landmarker behind
  the BB-FCN5 scanner tracks both rendered videos."""
  from lmjax import evaluate

  root, _ = clean_tree
  monkeypatch.setenv('LMJAX_DATA_DIR', str(tmp_path / 'tfds'))
  out, pred = tmp_path / 'eval' / 'vw.json', tmp_path / 'eval' / 'pred.npz'
  evaluate.run(
    str(PRETRAINED / 'mcl68'), '300vw', 'test', str(out), manual_dir=str(root),
    detector=str(PRETRAINED / 'bbfcn5'), predictions=str(pred),
  )  # fmt: skip
  metrics = json.loads(out.read_text())
  groups = metrics['protocol']['groups']
  assert metrics['num_videos'] == 2 and metrics['num_frames'] == 9
  assert list(groups) == ['all', 'category_1', 'category_3']
  assert groups['category_1']['num_frames'] == 5 and groups['category_3']['num_videos'] == 1
  assert groups['all']['missed_frames'] == 0 and groups['all']['nme_ioc'] < 15
  assert groups['all']['jitter_ioc'] is not None and metrics['detector'].endswith('bbfcn5')
  for name in ('ced_protocol', 'ced_ioc', 'ced_ipd'):
    assert (tmp_path / 'eval' / f'vw_{name}.png').stat().st_size > 0
  assert metrics['num_faces'] == 9 and len(metrics['per_landmark_ipd']) == 68  # found frames
  assert metrics['nme_ioc'] == pytest.approx(groups['all']['nme_ioc'])
  saved = np.load(pred)
  assert saved['pred'].shape == (9, 68, 2) and saved['image_ids'][0] == '114/000001'
  stdout = capsys.readouterr().out
  assert 'the300vw tracking' in stdout and 'category_3' in stdout
  with pytest.raises(ValueError, match=r'--detector: 300vw is scored by tracking'):
    evaluate.run(str(PRETRAINED / 'mcl68'), '300vw', 'test', str(out), manual_dir=str(root))
