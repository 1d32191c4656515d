"""noisemim takes no name another OpenMMLab library or project uses.

noisemim has no registries of its own for its parts: it registers them in
mmpretrain's, mmdet's and mmengine's. A generic name there collides with the
library itself or with code that a user imports beside noisemim (mmdet's
``projects/ViTDet`` registers ``LN2d`` and ``SimpleFPN`` in mmdet's
``MODELS``, the names noisemim used to take).

* Both orders of importing noisemim and the ViTDet project's names (stand-in
  classes registered under them in mmdet's registries, as the project does)
  work in one process, and each name then gets its own class.
* Every name that importing noisemim (and each of its modules) adds to any
  registry of mmengine, mmpretrain, mmdet or mmseg is the name of a class
  defined in noisemim (or carries the ``NoiseMIM`` prefix), and none of them
  is a name that mmengine, mmcv, mmpretrain, mmdet or mmseg registers in any
  registry of that kind (all their modules imported first).
"""
import json
import os
import subprocess
import sys

import pytest

# The names mmdet's projects/ViTDet/vitdet registers (its __init__.py),
# by mmdet registry; 'Compresssion' is the project's own spelling.
VITDET_NAMES = {
    'MODELS': ('LN2d', 'SimpleFPN', 'ViT'),
    'OPTIM_WRAPPER_CONSTRUCTORS': ('LayerDecayOptimizerConstructor', ),
    'HOOKS': ('Fp16CompresssionHook', ),
}

REGISTER_VITDET = f'''
import mmdet.registry
VITDET_NAMES = {VITDET_NAMES!r}
standins = {{}}
for registry, names in VITDET_NAMES.items():
    for name in names:
        standins[name] = type(name, (), {{'__module__': 'vitdet'}})
        getattr(mmdet.registry, registry).register_module(
            name=name, module=standins[name])
'''

CHECK = '''
import json
from mmengine.registry import DefaultScope
from mmdet.registry import MODELS
with DefaultScope.overwrite_default_scope('mmdet'):
    for registry, names in VITDET_NAMES.items():
        for name in names:
            assert getattr(mmdet.registry, registry).get(name) is \\
                standins[name], name
    fpn = MODELS.get('NoiseMIMSimpleFPN')
    vitdet = MODELS.get('mmpretrain.NoiseMIMViTDet')
print('VITDET ' + json.dumps([fpn.__module__, vitdet.__module__]))
'''


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter; its stdout (fail on an error)."""
    result = subprocess.run([sys.executable, '-c', code], capture_output=True,
                            text=True, env=dict(os.environ,
                                                OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def tagged(stdout: str, tag: str):
    """The JSON a script printed after ``tag``."""
    line, = [x for x in stdout.splitlines() if x.startswith(tag + ' ')]
    return json.loads(line[len(tag) + 1:])


@pytest.fixture(scope='module')
def noisemim_first() -> str:
    """One interpreter: the registries walked before and after importing
    noisemim and all of its modules (:data:`REGISTERED`), then the ViTDet
    project's names registered after noisemim's."""
    return run_python(REGISTERED + REGISTER_VITDET + CHECK)


def test_noisemim_and_the_vitdet_project_in_one_process(noisemim_first):
    fresh = run_python(REGISTER_VITDET + 'import noisemim\n' + CHECK)
    for order, stdout in (('noisemim first', noisemim_first),
                          ('ViTDet first', fresh)):
        assert tagged(stdout, 'VITDET') == [
            'noisemim.models.necks.simple_fpn',
            'noisemim.models.backbones.vitdet'
        ], order


REGISTERED = '''
import importlib
import json
import pkgutil

import mmengine.registry as root

# Every module of the upstream libraries, so that their registries are full.
import mmengine.runner  # noqa: F401  (hooks, loops, optim, schedulers, ...)
import mmcv.cnn, mmcv.transforms  # noqa: F401,E401
from mmpretrain.utils import register_all_modules as pretrain_all
from mmdet.utils import register_all_modules as det_all
from mmseg.utils import register_all_modules as seg_all
for register_all in (pretrain_all, det_all, seg_all):
    register_all(init_default_scope=False)


def registries():
    """Every registry of the four libraries' registry modules and every
    registry in their trees."""
    import mmdet.registry, mmpretrain.registry, mmseg.registry  # noqa: E401
    todo = [
        r for module in (root, mmpretrain.registry, mmdet.registry,
                         mmseg.registry)
        for r in vars(module).values() if isinstance(r, root.Registry)
    ]
    found = {}
    while todo:
        registry = todo.pop()
        if id(registry) not in found:
            found[id(registry)] = registry
            todo.extend(registry._children.values())
    return found.values()


def tree(registry):
    """The name of a registry's root (its kind: 'model', 'hook', ...)."""
    while registry.parent is not None:
        registry = registry.parent
    return registry.name


def names():
    return {(tree(r), r.scope, r.name, key): value
            for r in registries() for key, value in r.module_dict.items()}


before = names()
import noisemim
for module in pkgutil.walk_packages(noisemim.__path__, 'noisemim.'):
    importlib.import_module(module.name)
after = names()
upstream = {}
for (kind, _, _, key) in before:
    upstream.setdefault(kind, set()).add(key)
print('REGISTERED ' + json.dumps([
    dict(kind=kind, scope=scope, registry=name, key=key,
         module=getattr(obj, '__module__', ''),
         qualname=getattr(obj, '__qualname__', ''),
         upstream=key in upstream.get(kind, ()))
    for (kind, scope, name, key), obj in sorted(after.items())
    if (kind, scope, name, key) not in before
]))
'''


def own_name(entry: dict) -> bool:
    """Whether a registered name is noisemim's: the name of the class,
    defined in noisemim, or ``NoiseMIM``-prefixed. Weight initializers follow
    mmengine's convention (``Pretrained`` is ``PretrainedInit``)."""
    if not entry['module'].startswith('noisemim.'):
        return False
    name, cls = entry['key'], entry['qualname']
    return (name == cls or name.startswith('NoiseMIM')
            or (entry['kind'] == 'weight initializer'
                and cls == name + 'Init'))


def test_every_name_noisemim_registers_is_its_own(noisemim_first):
    entries = tagged(noisemim_first, 'REGISTERED')
    print('\n'.join(f"{e['scope']}::{e['registry']}: {e['key']} "
                    f"({e['module']}.{e['qualname']})" for e in entries))
    found = {(e['scope'], e['registry'], e['key']) for e in entries}
    # some of what must be there (so that an empty walk cannot pass)
    assert {('mmpretrain', 'model', 'NoiseMIM'),
            ('mmpretrain', 'model', 'NoiseMIMViTDet'),
            ('mmdet', 'model', 'NoiseMIMSimpleFPN'),
            ('mmengine', 'weight initializer', 'StrictPretrained'),
            ('mmengine', 'optimizer wrapper constructor',
             'LayerDecayOptimWrapperConstructor')} <= found
    assert [e for e in entries if e['upstream']] == []
    assert [e for e in entries if not own_name(e)] == []
