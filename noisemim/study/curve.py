"""Probe accuracy during pre-training: a learning curve per run."""
from typing import Callable, Dict, List

from mmengine.hooks import Hook


class ProbeCurveHook(Hook):
    """Probe the model every ``interval`` iterations of training.

    Not registered: ``tools/study.py --probe-every`` adds it to a Runner.

    Args:
        interval (int): Iterations between probes (>= 1).
        probe (Callable): Maps the model to a dict of results (e.g. ``knn``
            and ``linear`` accuracies); called in eval mode, without grad.

    Attributes:
        curve (List[dict]): One entry per probe: the results and ``iter``.
    """

    priority = 'LOWEST'

    def __init__(self, interval: int, probe: Callable[..., Dict]) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(
                f'the probe interval must be a positive integer, got '
                f'{interval!r}')
        self.interval = interval
        self.probe = probe
        self.curve: List[Dict] = []

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        if self.every_n_train_iters(runner, self.interval):
            self.curve.append(dict(self.probe(runner.model),
                                   iter=runner.iter + 1))
