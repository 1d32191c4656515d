"""``tools/train.py --tensorboard``: log to TensorBoard as well.

mmengine's ``TensorboardVisBackend`` writes the same scalars the
``LocalVisBackend`` writes (``vis_data/scalars.json``) as TensorBoard events
under ``<work_dir>/<timestamp>/vis_data/``. It needs the optional
``tensorboard`` package, which mmengine only imports at the first logged
scalar; this checks for it before the run starts.
"""
import importlib.util

from mmengine.config import Config

BACKEND = 'TensorboardVisBackend'


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package can be imported."""
    return importlib.util.find_spec('tensorboard') is not None


def add_tensorboard_backend(cfg: Config) -> None:
    """Add mmengine's TensorBoard backend to ``cfg.visualizer``.

    Args:
        cfg (Config): The run's config. Its ``visualizer.vis_backends`` gets
            ``dict(type='TensorboardVisBackend')`` unless it already has one;
            a config without a visualizer gets mmengine's ``Visualizer`` with
            the local and the TensorBoard backends.

    Raises:
        ImportError: If the ``tensorboard`` package is not installed; says
            how to install it.
    """
    if not tensorboard_available():
        raise ImportError(
            '--tensorboard needs the optional `tensorboard` package, which is '
            'not installed in this environment. Install it with '
            '`pip install tensorboard` (or run without --tensorboard: the '
            'scalars are always logged to <work_dir>/<timestamp>/vis_data/'
            'scalars.json, which tools/analysis/plot_curves.py draws).')
    visualizer = cfg.get('visualizer')
    if visualizer is None:
        cfg.visualizer = dict(
            type='Visualizer',
            vis_backends=[dict(type='LocalVisBackend'),
                          dict(type=BACKEND)])
        return
    backends = list(visualizer.get('vis_backends') or [])
    if not any(str(b.get('type', '')).split('.')[-1] == BACKEND
               for b in backends):
        backends.append(dict(type=BACKEND))
    visualizer['vis_backends'] = backends
