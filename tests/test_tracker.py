"""Video tracking (`lmjax.track`): the One Euro filter, the tracker's losses and re-detection,
the rendered sequences, and `lmjax-scan clip.avi --json` end to end."""

import json
import pathlib
import re
import types

import cv2
import numpy as np
import pytest

from lmjax.core import landmarks
from lmjax.core.geometry import box_iou
from lmjax.inference import Face
from lmjax.models.interface import check_face
from lmjax.scan import cli
from lmjax.synthface import sequence
from lmjax.track import video
from lmjax.track.one_euro import OneEuroConfig, OneEuroFilter, _alpha
from lmjax.track.tracker import TrackerConfig, VideoTracker

PRETRAINED = pathlib.Path(__file__).resolve().parents[1] / 'pretrained'
FPS = 30.0


def test_one_euro_passes_a_constant_and_its_first_sample():
  f = OneEuroFilter()
  x = np.random.default_rng(0).normal(size=(68, 2)) * 50
  for i in range(20):
    np.testing.assert_allclose(f(x, i / FPS, scale=40.0), x, atol=1e-9)
  f.reset()
  np.testing.assert_array_equal(f(x + 5, 1.0), x + 5)
  with pytest.raises(ValueError, match='not after'):
    f(x + 5, 1.0)
  with pytest.raises(ValueError, match='shape'):
    f(x[:5], 2.0)
  with pytest.raises(ValueError, match='min_cutoff'):
    OneEuroConfig(min_cutoff=0.0)


def test_one_euro_reduces_noise_on_a_still_signal():
  """Points jittering by 0.5 % of a 60-pixel face: the variance and the frame-to-frame steps
  shrink several times (less so for larger noise, which raises the cutoff), the mean stays."""
  rng = np.random.default_rng(1)
  noisy = 100.0 + rng.normal(0.0, 0.3, (300, 68, 2))
  f = OneEuroFilter()
  out = np.stack([f(x, i / FPS, scale=60.0) for i, x in enumerate(noisy)])[30:]
  noisy = noisy[30:]
  steps = lambda a: np.linalg.norm(np.diff(a, axis=0), axis=-1).mean()
  assert steps(out) < steps(noisy) / 3, (steps(out), steps(noisy))
  assert out.var() < noisy.var() / 3
  assert np.abs(out.mean() - 100.0) < 0.05


def test_one_euro_lag_on_a_ramp_is_bounded_by_its_cutoff():
  """On a ramp the filter settles to a first-order lag (1 - a) / a frames, with a from the
  cutoff the speed gives; it is below a frame at the default beta."""
  config = OneEuroConfig()
  speed = 1.0  # scale units (face sizes) per second
  f = OneEuroFilter(config)
  n = 90
  truth = np.stack([np.full((5, 2), speed * i / FPS) for i in range(n)])
  out = np.stack([f(x, i / FPS, scale=1.0) for i, x in enumerate(truth)])
  lag_frames = (truth[-1] - out[-1]).mean() / (speed / FPS)
  a = _alpha(config.min_cutoff + config.beta * speed * np.sqrt(2), 1 / FPS)
  assert 0 < lag_frames <= (1 - a) / a + 0.05 and lag_frames < 1.0, lag_frames


class _FakeLandmarker:
  """A landmarker that knows the truth: frame i (its pixel [0, 0, 0]) shows `truth[i]`; on
  `hidden` frames the box-given points have low confidence and the scan finds nothing; on
  `drift` frames the box-given points leave the frame but the scan finds the face."""

  def __init__(self, truth, hidden=(), drift=()):
    self.truth, self.hidden, self.drift = truth, set(hidden), set(drift)
    self.predictor = types.SimpleNamespace(schema=landmarks.get_schema(68))
    self.scanned = []

  def detect(self, image, boxes=None):
    i = int(image[0, 0, 0])
    points = self.truth[i]
    box = np.concatenate([points.min(0), points.max(0)])
    conf = np.full(68, 0.1 if i in self.hidden else 0.9, np.float32)
    if boxes is None:
      self.scanned.append(i)
      return [] if i in self.hidden else [Face(box, 1.0, points, conf, None)]
    shift = -1000.0 if i in self.drift else 0.0
    return [Face(np.asarray(b), None, points + shift, conf, None) for b in boxes]


def _fake_clip(n):
  base = sequence.trajectory('static', 1, (120, 160))  # a centre and side
  rng = np.random.default_rng(0)
  truth = rng.normal(0, 10, (68, 2)) + base.centre[0]
  motion = np.arange(n)[:, None, None] * np.array([1.0, 0.5])  # pixels per frame
  truth = (truth[None] + motion).astype(np.float32)
  frames = np.zeros((n, 120, 160, 3), np.uint8)
  frames[:, 0, 0, 0] = np.arange(n)
  return truth, frames


def test_tracker_scans_on_key_frames_and_redetects_after_a_loss():
  truth, frames = _fake_clip(20)
  fake = _FakeLandmarker(truth, hidden=(8, 9, 10), drift=(15,))
  tracker = VideoTracker(fake, TrackerConfig(key_interval=0, smoothing=None))
  out = [tracker.update(frame) for frame in frames]
  # Scans: the first frame, the loss at 8, nothing found at 8-10, found at 11, the drift at 15.
  assert fake.scanned == [0, 8, 9, 10, 11, 15]
  assert tracker.losses == 2 and tracker.scans == 6
  assert [len(faces) for faces in out] == [1] * 8 + [0] * 3 + [1] * 9
  ids = [faces[0].track_id for faces in out if faces]
  assert set(ids[:8]) == {0} and set(ids[8:]) == {1}  # a new face after the gap ...
  assert out[15][0].scanned and out[15][0].track_id == 1  # ... re-detected at once: same id
  for i in (0, 7, 11, 15, 19):
    np.testing.assert_allclose(out[i][0].points, truth[i])
  # Key frames every 5 frames, no loss.
  fake = _FakeLandmarker(truth)
  tracker = VideoTracker(fake, TrackerConfig(key_interval=5))
  out = [tracker.update(frame) for frame in frames]
  assert fake.scanned == [0, 5, 10, 15] and tracker.losses == 0
  assert {faces[0].track_id for faces in out} == {0}
  fake.scanner = None  # a Landmarker loaded without a detector
  with pytest.raises(ValueError, match='no face detector'):
    VideoTracker(fake)


def test_tracker_predicts_the_box_from_the_motion():
  """With constant motion the box is placed where the landmarks will be (after two frames)."""
  truth, frames = _fake_clip(6)
  fake = _FakeLandmarker(truth)
  tracker = VideoTracker(fake, TrackerConfig(key_interval=0, smoothing=None))
  out = [tracker.update(frame) for frame in frames]
  expected = np.concatenate([truth[5].min(0), truth[5].max(0)])
  np.testing.assert_allclose(out[5][0].box, expected, atol=1e-3)
  config = TrackerConfig(key_interval=0, predict_motion=False, smoothing=None)
  still = VideoTracker(_FakeLandmarker(truth), config)
  out = [still.update(frame) for frame in frames]
  np.testing.assert_allclose(out[5][0].box, np.concatenate([truth[4].min(0), truth[4].max(0)]))


def test_a_box_moved_off_the_frame_is_a_loss_not_a_bad_box():
  """A face that shrinks while it runs down the frame: the box its motion predicts for the
  next frame lies below the image, which the predictor refuses (`check_face`); the track is
  lost and the frame scanned instead."""
  truth, frames = _fake_clip(3)
  centre = np.array([80.0, 60.0])
  spread = truth[0] - truth[0].mean(0)
  truth[0] = centre + spread
  truth[1] = centre + [0.0, 40.0] + 0.5 * spread  # all inside the 160 × 120 frame
  truth[2] = truth[1]  # scanned here: the box would be centred at y = 140, zoomed 1/2
  fake = _FakeLandmarker(truth)
  detect = fake.detect

  def detect_checking_boxes(image, boxes=None):
    for i, box in enumerate(boxes or []):
      check_face(image, box, box_name=f'boxes[{i}]')
    return detect(image, boxes)

  fake.detect = detect_checking_boxes
  tracker = VideoTracker(fake, TrackerConfig(key_interval=0, smoothing=None))
  out = [tracker.update(frame) for frame in frames]
  assert tracker.losses == 1 and fake.scanned == [0, 2]
  np.testing.assert_allclose(out[2][0].points, truth[2])


def test_rendered_sequences_follow_their_trajectory():
  size = (96, 128)
  static = sequence.render_sequence(0, sequence.trajectory('static', 3, size), size)
  assert static['frames'].shape == (3, *size, 3) and static['landmarks'].shape == (3, 68, 2)
  np.testing.assert_allclose(static['landmarks'][0], static['landmarks'][2])
  assert (static['frames'][0] != static['frames'][1]).any()  # sensor noise differs per frame
  moving = sequence.trajectory('moving', 5, size)
  clip = sequence.render_sequence(0, moving, size, occluder=True)
  centre = (clip['bbox'][:, :2] + clip['bbox'][:, 2:]) / 2
  np.testing.assert_allclose(centre, moving.centre, atol=1e-3)
  with pytest.raises(ValueError, match='trajectory'):
    sequence.trajectory('spinning', 3, size)


@pytest.fixture(scope='module')
def clip_file(tmp_path_factory):
  size = (160, 208)
  clip = sequence.render_sequence(3, sequence.trajectory('static', 8, size), size)
  path = tmp_path_factory.mktemp('video') / 'clip.avi'
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), FPS, size[::-1])
  assert writer.isOpened()
  for frame in clip['frames']:
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  writer.release()
  return path, clip


def test_scan_cli_tracks_a_video_into_json(clip_file, tmp_path, capsys):
  path, clip = clip_file
  out, js = tmp_path / 'drawn.avi', tmp_path / 'tracks.json'
  code = cli.main(
    [
      str(path),
      f'--checkpoint={PRETRAINED / "bbfcn5"}',
      f'--landmarks={PRETRAINED / "mcl68"}',
      '--key_interval=4',
      f'--out={out}',
      f'--json={js}',
    ]
  )
  assert code == 0
  scans = re.search(r'tracking: (\d+) scan\(s\)', capsys.readouterr().err)
  assert scans and 2 <= int(scans[1]) < 8  # frames 0 and 4, and after any loss
  records = json.loads(js.read_text())
  assert [r['frame'] for r in records] == list(range(8))
  ids = set()
  for record, truth, box in zip(records, clip['landmarks'], clip['bbox'], strict=True):
    boxes = np.array([f['box'] for f in record['faces']], np.float32)
    face = record['faces'][int(box_iou(boxes, box[None])[:, 0].argmax())]
    points = np.array(face['points'])
    assert points.shape == (68, 2) and len(face['confidence']) == 68
    eyes = np.linalg.norm(truth[36] - truth[45])
    assert np.linalg.norm(points - truth, axis=-1).mean() / eyes < 0.15
    ids.add(face['track_id'])
  assert len(ids) == 1
  assert video.open_video(str(out)).count == 8


def test_unreadable_video_is_one_line_naming_it(tmp_path, capsys):
  bad = tmp_path / 'broken.mp4'
  bad.write_bytes(b'not a video at all')
  with pytest.raises(SystemExit) as e:
    cli.main([str(bad), f'--checkpoint={PRETRAINED / "bbfcn5"}'])
  message = str(e.value.code)
  assert str(bad) in message and '\n' not in message, message
  with pytest.raises(ValueError, match=r'broken\.mp4: cannot open the video'):
    video.open_video(str(bad))
