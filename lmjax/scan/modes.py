"""The scanner's two modes, behind one factory.

    scanner = modes.load('pretrained/bbfcn5', mode='cascade', min_face=40)
    scanner = modes.load('pretrained/bbfcn5', mode='pyramid', levels=20)

* `pyramid` (`lmjax.scan.scanner.Scanner`): the paper-faithful scan (§III-E-2), the BB-FCN
  backbone over a 1.16-step pyramid, landmarks found as response peaks and grouped into faces;
* `cascade` (`lmjax.scan.cascade.CascadeScanner`): a ProposalNet finds the face boxes and BB-FCN
  marks each box; much faster on a CPU (see the README's scanner section for the numbers).

Both return the same keys from `scan(image)`. `DEFAULT_MODE` is what the command lines use when
no `--scan_mode` is given.
"""

from __future__ import annotations

SCAN_MODES = ('pyramid', 'cascade')
DEFAULT_MODE = 'cascade'  # 28x the pyramid's VGA speed at min_face 40, same recall (README)
# Settings that only one mode has (the others are shared: min_face, levels, refine, ...).
PYRAMID_ONLY = ('threshold',)  # the cascade's is `proposal_threshold`
CASCADE_ONLY = ('proposer', 'classifier', 'proposal_threshold', 'backend')


def check_mode(mode: str) -> str:
  """`mode` if it is one of `SCAN_MODES`, else a one-line ValueError."""
  if mode not in SCAN_MODES:
    raise ValueError(f'scan mode is {mode!r}; expected one of {", ".join(SCAN_MODES)}')
  return mode


def load(folder: str, mode: str = DEFAULT_MODE, **kwargs):
  """The scanner of a BB-FCN model folder in `mode`.

  Args:
    folder: the BB-FCN model folder.
    mode: 'pyramid' or 'cascade'.
    **kwargs: the mode's settings: `min_face` or `levels`, `refine`, `scale_step`, `detections`;
      pyramid: `threshold` (coarse response), `candidates`, ... (`ScanParams`); cascade:
      `proposer` / `classifier` folders (classifier None: no re-scoring; default 'auto'),
      `proposal_threshold` (the proposer's probability
      threshold), `backend`, ... (`CascadeParams`). Settings of the other mode are an error.
  """
  check_mode(mode)
  other = CASCADE_ONLY if mode == 'pyramid' else PYRAMID_ONLY
  wrong = sorted(k for k in kwargs if k in other and kwargs[k] is not None)
  if wrong:
    raise ValueError(f'{", ".join(wrong)}: not a setting of the {mode} scan mode')
  if mode == 'pyramid':
    from lmjax.scan.scanner import Scanner

    return Scanner.load(folder, **kwargs)
  from lmjax.scan.cascade import CascadeScanner

  kwargs = {k: v for k, v in kwargs.items() if v is not None or k == 'classifier'}
  if 'proposal_threshold' in kwargs:
    kwargs['threshold'] = kwargs.pop('proposal_threshold')
  return CascadeScanner.load(folder, **kwargs)
