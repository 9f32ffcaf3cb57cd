"""`lmjax-scan` hardening: one-line errors before any work, bad images in a folder skipped."""

import json
import os

import cv2
import numpy as np
import pytest

from lmjax.scan import cli

SIZE = (64, 80)  # (h, w) of every test image and video frame: one bucket, one compile


def _image(seed):
  return np.random.default_rng(seed).integers(0, 255, (*SIZE, 3), dtype=np.uint8)


@pytest.fixture
def inputs(tmp_path):
  """An image, a folder of images, a 2-frame video and a regular file, in tmp_path."""
  image = tmp_path / 'one.png'
  cv2.imwrite(str(image), _image(0))
  folder = tmp_path / 'photos'
  folder.mkdir()
  cv2.imwrite(str(folder / 'a.png'), _image(1))
  video = tmp_path / 'clip.avi'
  writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 5, SIZE[::-1])
  for seed in (2, 3):
    writer.write(_image(seed))
  writer.release()
  (tmp_path / 'a_file').write_text('not a folder')
  return {'tmp': tmp_path, 'img': image, 'folder': folder, 'video': video}


def _run(argv, capsys):
  """(exit code, stderr) of `cli.main(argv)`, whether it returns or exits."""
  try:
    code = cli.main(argv)
  except SystemExit as e:
    code = e.code
  err = capsys.readouterr().err
  if isinstance(code, str):  # SystemExit('message'): printed by Python, exit status 1
    code, err = 1, f'{err}{code}\n'
  return code, err


BAD_COMMAND_LINES = [
  (['{img}', '--min_face=0'], 2, 'flag --min_face=0.0: expected a positive number of pixels'),
  (['{img}', '--min_face=-5'], 2, 'flag --min_face=-5.0: expected a positive number'),
  (['{img}', '--levels=-3'], 2, 'flag --levels=-3: expected an integer 1 to 40'),
  (['{img}', '--levels=0'], 2, 'flag --levels=0: expected an integer 1 to 40'),
  (['{img}', '--levels=41'], 2, 'flag --levels=41: expected an integer 1 to 40'),
  (['{img}', '--threshold=1.5'], 2, 'flag --threshold=1.5: expected a number from 0 to 1'),
  (['{img}', '--threshold=nan'], 2, 'flag --threshold=nan: expected a number from 0 to 1'),
  (['{img}', '--min_score=-0.1'], 2, 'flag --min_score=-0.1: expected a number >= 0'),
  (['{img}', '--out={tmp}/viz'], 2, '--out={tmp}/viz: no file extension'),
  (['{img}', '--out={tmp}/a_file/viz.png'], 2, '{tmp}/a_file is a file, not a folder'),
  (['{img}', '--out={tmp}/viz.mp4'], 2, 'cv2 cannot write .mp4 images'),
  (['{img}', '--scale_step=1'], 2, '--scale_step=1.0: expected a number above 1 and at most 2'),
  (['{img}', '--out={img}'], 2, 'is the input'),
  (['{img}', '--out={tmp}'], 2, '--out={tmp}: is a folder (expected a file name)'),
  (['{img}', '--json={tmp}/a_file/f.json'], 2, '--json={tmp}/a_file/f.json: {tmp}/a_file is'),
  (['{img}', '--json={tmp}'], 2, '--json={tmp}: is a folder'),
  (['{folder}', '--out={tmp}/a_file'], 2, 'is a file, but the input is a folder'),
  (['{folder}', '--out={tmp}/drawn.png'], 2, 'has a file extension, but the input is a folder'),
  (['{video}', '--out={tmp}/drawn.png'], 2, 'expected a video file name (.mp4'),
  (['{video}', '--out={tmp}/a_file/v.mp4'], 2, 'a_file is a file, not a folder'),
  (['{img}', '--input={img}'], 2, "unknown flag '--input={img}': the input is positional"),
  (['--folder', '{folder}'], 2, "unknown flag '--folder {folder}': the input is positional"),
  (['--image={img}'], 2, "e.g. 'lmjax-scan {img} --checkpoint=DIR'"),
  (['{img}', '--levls=3'], 2, "Unknown command line flag 'levls'. Did you mean: levels"),
  (['{img}', '--scan_mode=fast'], 2, 'flag --scan_mode=fast: value should be one of'),
  (
    ['{img}', '--scan_mode=pyramid', '--proposer={tmp}'],
    2,
    '--proposer, --proposal_threshold: settings of --scan_mode',
  ),
  (['{img}', '--scan_mode=cascade', '--proposal_threshold=1'], 2, 'from 0 to below 1'),
  (['{img}', '--threshold=0.3'], 2, '--threshold: a setting of --scan_mode=pyramid'),
  (['{tmp}/missing.png'], 1, '{tmp}/missing.png does not exist'),
  (['{tmp}/a_file'], 1, "INPUT: cannot read '{tmp}/a_file' as an image"),
]


@pytest.mark.parametrize('argv, code, message', BAD_COMMAND_LINES)
def test_bad_command_lines_fail_with_one_line_before_any_work(
  argv, code, message, inputs, model_dir, monkeypatch, capsys
):
  def no_model(args):
    raise AssertionError('the model was loaded before the command line was checked')

  monkeypatch.setattr(cli, '_Runner', no_model)
  argv = [a.format(**inputs) for a in argv] + [f'--checkpoint={model_dir}']
  got, err = _run(argv, capsys)
  assert got == code, err
  assert message.format(**inputs) in err
  errors = [line for line in err.splitlines() if line.startswith('lmjax-scan')]
  assert len(errors) == 1, err  # one line (after the usage line for exit code 2)
  assert not os.path.exists(inputs['tmp'] / 'viz') and not os.path.exists(inputs['tmp'] / 'drawn')


@pytest.mark.skipif(os.geteuid() == 0, reason='root may write anywhere')
def test_unwritable_output_folder_is_a_usage_error(inputs, model_dir, capsys):
  locked = inputs['tmp'] / 'locked'
  locked.mkdir(mode=0o500)
  out = locked / 'new' / 'viz.png'
  code, err = _run([str(inputs['img']), f'--out={out}', f'--checkpoint={model_dir}'], capsys)
  assert code == 2 and f'folder {locked} is not writable' in err


def test_folder_with_bad_images_skips_them_and_writes_the_rest(inputs, model_dir, capsys):
  folder, tmp = inputs['folder'], inputs['tmp']
  cv2.imwrite(str(folder / 'b.jpg'), _image(4))
  data = cv2.imencode('.jpg', _image(5))[1].tobytes()
  (folder / 'c_truncated.jpg').write_bytes(data[: len(data) // 2])
  (folder / 'd_text.png').write_text('not an image')
  os.symlink(tmp / 'gone.png', folder / 'e_broken_link.png')  # an entry that cannot be read
  (folder / 'f_folder.png').mkdir()  # not a file: ignored
  (folder / 'notes.txt').write_text('not an image extension: ignored')
  bad = ['c_truncated.jpg', 'd_text.png', 'e_broken_link.png']
  if os.geteuid() != 0:
    (folder / 'g_locked.png').write_bytes(cv2.imencode('.png', _image(6))[1].tobytes())
    os.chmod(folder / 'g_locked.png', 0)
    bad.append('g_locked.png')
  out, faces_json = tmp / 'drawn', tmp / 'new' / 'faces.json'  # a missing folder for the JSON
  argv = [str(folder), f'--out={out}', f'--json={faces_json}', '--levels=2', '--min_score=0']
  code, err = _run([*argv, f'--checkpoint={model_dir}'], capsys)
  assert code == 1, err
  records = json.loads(faces_json.read_text())
  assert [os.path.basename(r['input']) for r in records] == ['a.png', 'b.jpg']
  for face in (f for r in records for f in r['faces']):  # 5 points: a pose, or null (< 4 found)
    found = sum(p is not None for p in face['points'])
    assert (face['pose'] is None) == (found < 4), face
    assert face['pose'] is None or sorted(face['pose']) == ['pitch', 'roll', 'yaw']
  assert sorted(os.listdir(out)) == ['a.png', 'b.png']
  warnings = [line for line in err.splitlines() if 'lmjax-scan: warning: skipped' in line]
  assert len(warnings) == len(bad), err
  for name, line in zip(bad, warnings, strict=True):
    assert str(folder / name) in line, line
  assert f'2 input(s) scanned, {len(bad)} failed' in err


def test_video_into_a_missing_folder_is_written(inputs, model_dir, capsys):
  out = inputs['tmp'] / 'new' / 'sub' / 'drawn.avi'
  argv = [str(inputs['video']), f'--out={out}', '--levels=2', f'--checkpoint={model_dir}']
  code, err = _run(argv, capsys)
  assert code == 0, err
  cap = cv2.VideoCapture(str(out))
  frames = 0
  while cap.read()[0]:
    frames += 1
  cap.release()
  assert frames == 2 and '2 frame(s) scanned, 0 failed' in err


class _ClosedWriter:
  """A `cv2.VideoWriter` that failed to open."""

  def __init__(self, *args):
    pass

  def isOpened(self):  # noqa: N802 (cv2 name)
    return False

  def release(self):
    pass


def test_video_writer_that_does_not_open_fails(inputs, model_dir, monkeypatch, capsys):
  out = inputs['tmp'] / 'drawn.avi'
  argv = [str(inputs['video']), f'--out={out}', '--levels=2', f'--checkpoint={model_dir}']
  monkeypatch.setattr(cv2, 'VideoWriter', _ClosedWriter)
  code, err = _run(argv, capsys)  # the check before the work
  assert code == 2 and f'--out={out}: cv2 cannot write .avi videos here' in err
  monkeypatch.setattr(cli, '_can_write_video', lambda ext: True)
  code, err = _run(argv, capsys)  # the writer of the first frame
  assert code == 1 and f'lmjax-scan: --out={out}: cv2 cannot open a video writer' in err
  assert not out.exists()


@pytest.fixture(scope='module')
def model_dir(bbfcn5_random_dir):
  return bbfcn5_random_dir
