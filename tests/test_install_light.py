"""Pre-training without mmcv's compiled ops, mmdet or mmseg (the ``mmcv-lite``
install of docs/install.md).

A subprocess starts with an import blocker (a ``sitecustomize`` on
``PYTHONPATH`` that wraps every meta-path finder so that ``mmcv._ext``, mmcv's
compiled ops, ``mmdet`` and ``mmseg`` are not found, exactly as in an
environment without them: with ``mmcv-lite``, ``mmcv/ops`` is there but its
import fails on the missing ``mmcv._ext``) and then, in that one process:
imports noisemim, imports the benchmark and the converters, checks the
messages of the detection and segmentation imports, and runs the train and
resume steps of ``tools/gpu_check.py --device cpu`` (the tiny demo config,
2 iterations through ``tools/train.py`` and a ``--resume`` to 4, in
subprocesses that inherit the blocker): both the install without compiled ops
and the orchestration of ``make gpu-check`` are checked by one pair of
training runs.
"""
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest

from noisemim import registration

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

BLOCKER = '''
import sys

BLOCKED = {'mmcv._ext', 'mmdet', 'mmseg'}


class Hide:
    """A finder that finds nothing of BLOCKED (as if not installed) and
    everything else as the finder it wraps."""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + '.') for b in BLOCKED):
            return None
        find_spec = getattr(self.finder, 'find_spec', None)
        return None if find_spec is None else find_spec(name, path, target)

    def __getattr__(self, name):
        return getattr(self.finder, name)


sys.meta_path[:] = [Hide(finder) for finder in sys.meta_path]
'''

SCRIPT = '''
import contextlib
import io
import json
import sys

import sitecustomize  # the blocker

report = {}
for name in ('mmcv.ops', 'mmdet', 'mmseg'):
    try:
        __import__(name)
        report['blocked_' + name] = False
    except ImportError:
        report['blocked_' + name] = True

import noisemim  # noqa: E402
from noisemim.registration import not_registered, require  # noqa: E402

report['not_registered'] = sorted(not_registered())
for module in ('noisemim.detection', 'noisemim.segmentation'):
    try:
        __import__(module)
    except ImportError as error:
        report[module] = str(error)
# The benchmark and the converters import without the compiled ops.
sys.path.insert(0, 'tools')
sys.path.insert(0, 'tools/model_converters')
import benchmark, clip_to_teacher, noisemim_to_timm, publish_checkpoint  # noqa: E401,E402,F401,E501
report['benchmark_parses'] = benchmark.parse_args([]).device == 'cpu'

import gpu_check  # noqa: E402
out = io.StringIO()
try:
    with contextlib.redirect_stdout(out):
        report['gpu_check'] = gpu_check.main(sys.argv[1:])
finally:
    report['output'] = out.getvalue()
    report['loaded'] = sorted(
        m for m in sys.modules
        if m.split('.')[0] in ('mmdet', 'mmseg') or m == 'mmcv._ext')
    # With mmdet allowed again but mmcv.ops still blocked, detection names
    # the missing ops.
    sitecustomize.BLOCKED.discard('mmdet')
    try:
        require('mmdet')
    except ImportError as error:
        report['ops_message'] = str(error)
    print('REPORT ' + json.dumps(report))
'''


def test_pretraining_runs_without_compiled_ops_mmdet_and_mmseg(tmp_path):
    shim = tmp_path / 'shim'
    shim.mkdir()
    (shim / 'sitecustomize.py').write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shim), ROOT]),
               OMP_NUM_THREADS='1')
    work_dir = tmp_path / 'work'
    cmd = [sys.executable, '-c', textwrap.dedent(SCRIPT), '--device', 'cpu',
           '--only', 'train,resume', '--work-dir', str(work_dir)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    lines = [x for x in result.stdout.splitlines() if x.startswith('REPORT ')]
    assert result.returncode == 0 and lines, result.stderr[-4000:]
    report = json.loads(lines[-1][len('REPORT '):])
    # The blocker worked, and nothing got around it.
    assert report['blocked_mmcv.ops'] and report['blocked_mmdet']
    assert report['blocked_mmseg'] and report['loaded'] == []
    assert report['not_registered'] == ['mmdet']
    assert report['benchmark_parses']
    assert report['noisemim.detection'].startswith(
        'mmdet is not installed: detection needs `pip install mmdet==3.3.0` '
        'and mmcv 2.1.0 with its compiled ops')
    assert report['noisemim.segmentation'].startswith(
        'mmseg is not installed: segmentation needs `pip install '
        'mmsegmentation==1.2.2')
    assert report['ops_message'].startswith(
        'mmcv.ops cannot be imported (ModuleNotFoundError')
    # gpu_check's table: it trained 2 iterations and resumed to 4 there.
    output = report['output']
    assert report['gpu_check'] == 0, output
    table = output[output.index('| check |'):].splitlines()
    assert len(table) == 7, output
    assert table[2].startswith('| environment | ok |')
    assert 'mmcv compiled ops no, mmdet no, mmseg no' in table[2]
    assert table[3].startswith('| train 2 iters | ok |')
    assert 'trained to iteration 2' in table[3] and 'iter_2.pth' in table[3]
    assert table[4].startswith('| train: idle device | ok |')  # profiled
    assert table[5].startswith('| train: optimizer step | ok |')
    assert table[6].startswith('| resume to 4 iters | ok |')
    assert 'resumed at iteration 2, trained to iteration 4' in table[6]
    runs = sorted((work_dir / 'train').glob('*/vis_data/scalars.json'))
    iters = [[json.loads(x)['iter'] for x in run.read_text().splitlines()
              if '"loss"' in x] for run in runs]
    assert iters == [[1, 2], [3, 4]]
    assert (work_dir / 'train' / 'iter_4.pth').is_file()


def test_detection_parts_register_where_mmdet_is_installed():
    from mmdet.registry import MODELS
    assert registration.not_registered() == {}
    assert MODELS.get('NoiseMIMSimpleFPN') is not None
    registration.require('mmdet')  # mmdet and the compiled ops are here


def test_unknown_library_is_refused():
    with pytest.raises(ValueError, match="got 'mmocr'"):
        registration.require('mmocr')


def _pins(path: str) -> dict:
    with open(osp.join(ROOT, path)) as f:
        lines = [x.split('#')[0].strip() for x in f]
    return dict(x.split('==') for x in lines if '==' in x)


def test_pretraining_lock_agrees_with_the_full_lock():
    """``make demo``'s environment (requirements/lock-pretrain.txt) has the
    full environment's version of every package the two share; it adds only
    mmcv-lite (for mmcv) and setuptools (requirements/build.txt's range)."""
    light, full = _pins('requirements/lock-pretrain.txt'), _pins(
        'requirements/lock.txt')
    assert light['mmcv-lite'] == full['mmcv']
    assert 'mmcv' not in light and 'mmdet' not in light
    assert 'mmsegmentation' not in light
    assert set(light) - set(full) == {'mmcv-lite', 'setuptools'}
    assert {k: v for k, v in light.items() if k in full} == {
        k: full[k] for k in light if k in full}
    major, minor = map(int, light['setuptools'].split('.')[:2])
    assert (77, 0) <= (major, minor) < (81, 0)  # requirements/build.txt


def test_the_demo_uses_a_current_full_environment_as_it_is():
    """tools/setup_env_pretrain.sh names the full environment's Python when
    that one is current (tools/setup_env.sh's stamp), building nothing."""
    import hashlib
    venv = osp.dirname(osp.dirname(sys.executable))
    inputs = b''.join(
        open(osp.join(ROOT, p), 'rb').read()
        for p in ('requirements/lock.txt', 'requirements/build.txt',
                  'tools/setup_env.sh'))
    stamp = '.noisemim-env-' + hashlib.sha256(inputs).hexdigest()[:16]
    if not osp.isfile(osp.join(venv, stamp)):
        pytest.skip('the tests do not run in a current `make env` .venv')
    env = dict(os.environ, NOISEMIM_VENV=venv,
               NOISEMIM_PRETRAIN_VENV=osp.join(venv, 'no-such-venv'))
    result = subprocess.run(['bash', 'tools/setup_env_pretrain.sh'], cwd=ROOT,
                            env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == osp.join(venv, 'bin', 'python')
    assert 'building' not in result.stderr
    assert not osp.exists(osp.join(venv, 'no-such-venv'))
