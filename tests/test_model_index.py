"""The OpenMMLab model index lists every config, and only configs that exist.

``model-index.yml`` imports one ``metafile.yml`` per config folder, in the
format mmpretrain, mmdet and mmseg ship (Collections + Models). Every config
that is not a ``_base_`` piece must be listed exactly once, with its task,
training data, schedule, batch size and architecture; no model may claim a
result, since nothing was run at full scale for this project.
"""
import ast
import os
import os.path as osp
from typing import Dict, List

import yaml

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
INDEX = osp.join(ROOT, 'model-index.yml')


def _load(path: str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _metafiles() -> List[str]:
    return _load(INDEX)['Import']


def _models() -> List[Dict]:
    models = []
    for rel in _metafiles():
        for model in _load(osp.join(ROOT, rel)).get('Models', []):
            models.append(dict(model, _metafile=rel))
    return models


def _builds_a_model(path: str) -> bool:
    """Whether a config sets ``model`` or inherits (``_base_``). The study's
    protocol presets (``configs/pretrain/study/protocols/``) do neither: they
    name cells, probe data and seeds for ``tools/study.py`` and build no model,
    so they are not models of the index."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = {
        target.id
        for node in tree.body if isinstance(node, ast.Assign)
        for target in node.targets if isinstance(target, ast.Name)
    }
    return bool(names & {'model', '_base_'})


def _configs_on_disk() -> List[str]:
    """Every model config under configs/ outside the ``_base_`` folders and
    ``configs/smoke/`` (a real config shrunk for a CPU smoke run, not a
    model: docs/smoke.md)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(osp.join(ROOT, 'configs')):
        dirnames[:] = [d for d in dirnames if d not in ('_base_', 'smoke')]
        found += [
            osp.relpath(osp.join(dirpath, f), ROOT) for f in filenames
            if f.endswith('.py') and _builds_a_model(osp.join(dirpath, f))
        ]
    return sorted(found)


def test_every_imported_metafile_exists_and_sits_in_its_config_folder():
    metafiles = _metafiles()
    assert metafiles, 'model-index.yml imports nothing'
    for rel in metafiles:
        assert osp.isfile(osp.join(ROOT, rel)), f'{rel} (imported by model-index.yml) is missing'
        assert rel.startswith('configs/') and rel.endswith('/metafile.yml'), rel
    # and every metafile on disk is imported
    on_disk = sorted(
        osp.relpath(osp.join(d, 'metafile.yml'), ROOT)
        for d, _, files in os.walk(osp.join(ROOT, 'configs')) if 'metafile.yml' in files)
    assert sorted(metafiles) == on_disk


def test_every_config_is_listed_once_and_every_listed_config_exists():
    listed = [m['Config'] for m in _models()]
    duplicates = sorted({c for c in listed if listed.count(c) > 1})
    assert not duplicates, f'configs listed more than once: {duplicates}'
    missing_files = [c for c in listed if not osp.isfile(osp.join(ROOT, c))]
    assert not missing_files, f'listed in a metafile but not on disk: {missing_files}'
    unlisted = sorted(set(_configs_on_disk()) - set(listed))
    assert not unlisted, f'configs missing from the model index: {unlisted}'


def test_models_are_complete_and_claim_no_result():
    models = _models()
    names = [m['Name'] for m in models]
    assert len(names) == len(set(names)), 'model names must be unique'
    for model in models:
        meta = _load(osp.join(ROOT, model['_metafile']))
        collections = {c['Name']: c for c in meta['Collections']}
        where = f"{model['Name']} ({model['_metafile']})"
        # The name is the config's file name (with its folder where two
        # folders share file names), as in OpenMMLab's metafiles.
        stem = osp.splitext(osp.basename(model['Config']))[0]
        assert model['Name'].endswith(stem), where
        assert model['In Collection'] in collections, where
        md = model['Metadata']
        for key in ('Task', 'Training Data', 'Batch Size', 'Architecture'):
            assert md.get(key), f'{where}: Metadata.{key} is missing'
        assert 'Epochs' in md or 'Iterations' in md, f'{where}: no schedule'
        assert isinstance(md['Batch Size'], int) and md['Batch Size'] > 0, where
        assert isinstance(md['Architecture'], list), where
        # Nothing was run at full scale: no invented numbers, no weights.
        assert 'Results' in model and model['Results'] is None, where
        assert 'Weights' not in model, where
        for downstream in model.get('Downstream', []):
            assert downstream in names, f'{where}: unknown downstream model {downstream}'


def test_collections_name_their_paper_and_an_existing_doc():
    for rel in _metafiles():
        for collection in _load(osp.join(ROOT, rel))['Collections']:
            assert collection['Paper']['URL'].startswith('https://arxiv.org/abs/'), collection
            assert collection['Paper']['Title'], collection
            assert osp.isfile(osp.join(ROOT, collection['README'])), collection['README']


def test_openmmlab_modelindex_reads_it():
    """The ``modelindex`` package (what ``mim`` reads) loads the whole index
    and finds nothing wrong with it."""
    import modelindex
    index = modelindex.load(INDEX)
    assert {m.name for m in index.models} == {m['Name'] for m in _models()}
    assert all(m.in_collection for m in index.models)
    errors = [
        f"{e['filepath']} {e['type']}: {message}"
        for e in index.collect_check_errors() for message in e['errors']
        # modelindex resolves a collection's README against the metafile's
        # folder; OpenMMLab's metafiles (mmpretrain: ``README:
        # configs/mae/README.md``) give it from the repository root, as here
        # (checked above).
        if not message.startswith('Path to README file')
    ]
    assert not errors, errors
