"""`lmjax.train.xla_cpu`: the XLA:CPU flag training adds before JAX starts its backend."""

import subprocess
import sys

from lmjax.train import xla_cpu


def test_the_flag_goes_into_xla_flags_unless_the_user_chose(monkeypatch):
  monkeypatch.setattr(xla_cpu, '_backend_started', lambda: False)
  monkeypatch.setattr(xla_cpu, 'jaxlib_knows', lambda: True)
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  assert xla_cpu.prefer_eigen_convolutions(env)
  assert env['XLA_FLAGS'] == f'--xla_force_host_platform_device_count=2 {xla_cpu.FLAG}'
  assert not xla_cpu.prefer_eigen_convolutions(env)  # once
  chosen = {'XLA_FLAGS': f'--{xla_cpu.OPTION}=-ELTWISE'}
  assert not xla_cpu.prefer_eigen_convolutions(chosen)
  assert chosen == {'XLA_FLAGS': f'--{xla_cpu.OPTION}=-ELTWISE'}


def test_nothing_changes_where_it_cannot_take_effect(monkeypatch):
  assert not xla_cpu.jaxlib_knows('xla_cpu_no_such_option_anywhere')
  monkeypatch.setattr(xla_cpu, 'jaxlib_knows', lambda: False)  # an XLA without the option
  monkeypatch.setattr(xla_cpu, '_backend_started', lambda: False)
  env = {}
  assert not xla_cpu.prefer_eigen_convolutions(env) and env == {}
  monkeypatch.setattr(xla_cpu, 'jaxlib_knows', lambda: True)
  monkeypatch.setattr(xla_cpu, '_backend_started', lambda: True)  # JAX already started
  assert not xla_cpu.prefer_eigen_convolutions(env) and env == {}


def test_xla_takes_the_flag_and_a_convolution_keeps_its_value_and_gradient():
  """With the flag (when this jaxlib has it) XLA accepts the option and a convolution's value
  and gradients match the default backend's."""
  script = """
import json, os, sys
import numpy as np
from lmjax.train import xla_cpu
added = xla_cpu.prefer_eigen_convolutions() if sys.argv[1] == 'flag' else False
import jax, jax.numpy as jnp
x = np.random.default_rng(0).normal(size=(4, 12, 12, 3)).astype(np.float32)
k = np.random.default_rng(1).normal(size=(3, 3, 3, 8)).astype(np.float32)
conv = lambda k: jnp.sum(jax.nn.relu(jax.lax.conv_general_dilated(
  x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))) ** 2)
value, grad = jax.value_and_grad(conv)(k)
print(json.dumps({'added': added, 'flags': os.environ.get('XLA_FLAGS', ''),
                  'value': float(value), 'grad': np.asarray(grad).ravel().tolist()}))
"""
  import json

  env_out = {}
  for mode in ('flag', 'default'):
    done = subprocess.run(
      [sys.executable, '-c', script, mode], capture_output=True, text=True, check=True
    )
    env_out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
  with_flag, default = env_out['flag'], env_out['default']
  assert with_flag['added'] == xla_cpu.jaxlib_knows()
  if with_flag['added']:
    assert xla_cpu.FLAG in with_flag['flags']
  assert abs(with_flag['value'] - default['value']) <= 1e-4 * abs(default['value'])
  import numpy as np

  np.testing.assert_allclose(with_flag['grad'], default['grad'], rtol=1e-4, atol=1e-3)
