"""A study protocol: which cells, how long, on what data, probed how.

A protocol is an mmengine config (``configs/pretrain/study/protocols/``)
with these keys (``tools/study.py``'s flags override the first four):

- ``cells`` (list[str]): cell configs, by name under
  ``configs/pretrain/study/`` (or paths);
- ``iters`` (int) and ``seeds`` (list[int]): the pre-training budget;
- ``random_init`` (bool): add the untrained encoder of the first cell;
- ``principle_cells`` (list[str]): optional rows added by ``--principles``;
- ``cell_options`` (dict): merged into every cell's config;
- ``pretrain_dataset`` (dict, optional): replaces every cell's
  ``train_dataloader.dataset`` (the cell's pipeline is kept unless it
  gives its own);
- ``probe`` (dict): ``train`` and ``val`` dataset configs (any mmpretrain
  classification dataset with a pipeline that ends in ``PackInputs``), and
  ``knn_k``, ``blocks``, ``batch_size``, ``num_workers``, ``cache``;
- ``analysis_images`` (int): validation images (evenly spaced over the
  split) for the per-cell analyses (0 turns them off);
- ``description`` (str): what the protocol is, for the report.
"""
from mmengine.config import Config, ConfigDict

DEFAULTS = dict(
    cells=[],
    principle_cells=[],
    iters=200,
    seeds=[0, 1, 2],
    random_init=True,
    cell_options={},
    pretrain_dataset=None,
    analysis_images=64,
    description='')
PROBE_DEFAULTS = dict(
    knn_k=10, blocks=[], batch_size=256, num_workers=0, cache=True)


def load_protocol(path: str, options: dict = None) -> Config:
    """Read a protocol config and fill in the defaults.

    Args:
        path (str): The protocol's ``.py`` file.
        options (dict, optional): Overrides, ``key=value`` as from
            ``--protocol-options``.

    Returns:
        Config: The protocol.

    Raises:
        ValueError: If the probe's ``train`` or ``val`` dataset is missing.
    """
    protocol = Config.fromfile(path)
    if options:
        protocol.merge_from_dict(options)
    for key, value in DEFAULTS.items():
        if key not in protocol:
            protocol[key] = value
    probe = protocol.get('probe') or ConfigDict()
    missing = [s for s in ('train', 'val') if not probe.get(s)]
    if missing:
        raise ValueError(f'the protocol {path} needs probe.train and '
                         f'probe.val dataset configs; missing: {missing}')
    for key, value in PROBE_DEFAULTS.items():
        probe.setdefault(key, value)
    protocol.probe = probe
    return protocol


def apply_protocol(cfg: Config, protocol: Config) -> None:
    """Put a protocol's cell options and pre-training data into a cell.

    Args:
        cfg (Config): The cell's config (changed in place).
        protocol (Config): From :func:`load_protocol`.
    """
    if protocol.cell_options:
        cfg.merge_from_dict(protocol.cell_options.to_dict())
    dataset = protocol.pretrain_dataset
    if dataset:
        dataset = ConfigDict(dataset.to_dict())
        if 'pipeline' not in dataset:
            dataset.pipeline = cfg.train_dataloader.dataset.pipeline
        cfg.train_dataloader.dataset = dataset
