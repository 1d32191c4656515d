"""The largest per-device batch whose training step fits in memory.

:func:`sweep_batch_sizes` doubles the batch from ``start`` until a step runs
out of memory (``torch.cuda.OutOfMemoryError``, or any error that says "out
of memory"), freeing the caches after every trial, and can then bisect between
the last batch that fitted and the first that did not. The step is any
``step(batch_size)`` callable, so the search is tested on CPU with a fake
memory limit; :class:`TrainingStep` is the real one: a full training step
(data preprocessor, forward, loss, backward, optimizer step) of a pre-training
config's model on random images, on any device.

Command line (``tools/gpu_check.py --only sweep`` runs it)::

    python -m noisemim.benchmark.batch_sweep --device cuda --amp bf16 \\
        --config configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py
"""
import argparse
import gc
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional, Union

import torch

AMP_DTYPES = dict(bf16='bfloat16', fp16='float16')


@dataclass
class BatchTrial:
    """One step at one batch size.

    Attributes:
        batch_size (int): Images in the step.
        fits (bool): Whether it ran without running out of memory.
        seconds (float): Wall time of the trial (one or more steps).
        peak_allocated_mib (float, optional): CUDA ``max_memory_allocated``
            during the trial; None on CPU.
        peak_reserved_mib (float, optional): CUDA ``max_memory_reserved``
            (what the caching allocator held); None on CPU.
    """
    batch_size: int
    fits: bool
    seconds: float
    peak_allocated_mib: Optional[float] = None
    peak_reserved_mib: Optional[float] = None


@dataclass
class SweepResult:
    """The trials of a sweep.

    Attributes:
        trials (List[BatchTrial]): In the order they ran.
        max_batch (int): The largest batch the sweep would try.
    """
    trials: List[BatchTrial] = field(default_factory=list)
    max_batch: int = 0

    @property
    def largest(self) -> Optional[int]:
        """The largest batch that fitted (None if none did)."""
        fitted = [t.batch_size for t in self.trials if t.fits]
        return max(fitted) if fitted else None

    @property
    def first_failing(self) -> Optional[int]:
        """The smallest batch that ran out of memory (None if none did)."""
        failed = [t.batch_size for t in self.trials if not t.fits]
        return min(failed) if failed else None

    def summary(self) -> str:
        """One line: the largest batch and what bounded it."""
        largest, failing = self.largest, self.first_failing
        if largest is None:
            return (f'no batch fits: {failing} images ran out of memory')
        fitted = next(t for t in self.trials if t.batch_size == largest)
        memory = ''
        if fitted.peak_reserved_mib is not None:
            memory = (f' ({fitted.peak_allocated_mib / 1024:.1f} GiB '
                      f'allocated, {fitted.peak_reserved_mib / 1024:.1f} GiB '
                      'reserved)')
        bound = (f'{failing} ran out of memory' if failing is not None else
                 f'the sweep stopped at its maximum, {self.max_batch}')
        return f'largest batch that fits: {largest}{memory}; {bound}'


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an out-of-memory error of torch.

    Args:
        error (BaseException): The error a step raised.

    Returns:
        bool: True for ``torch.cuda.OutOfMemoryError`` and for errors whose
        message says "out of memory" (other backends, cuBLAS/cuDNN).
    """
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return (isinstance(error, RuntimeError)
            and 'out of memory' in str(error).lower())


def free_memory(device: torch.device) -> None:
    """On CUDA, collect garbage (a failed step's tensors can sit in reference
    cycles) and return the caching allocator's blocks; elsewhere nothing."""
    if device.type == 'cuda':
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def run_trial(step: Callable[[int], None], batch_size: int,
              device: torch.device) -> BatchTrial:
    """Run ``step(batch_size)`` and record whether it fitted.

    Args:
        step (Callable[[int], None]): Runs a step at a batch size.
        batch_size (int): The batch size.
        device (torch.device): The step's device (for the memory figures).

    Returns:
        BatchTrial: The trial. Errors other than out-of-memory propagate.
    """
    cuda = device.type == 'cuda'
    free_memory(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    fits = True
    try:
        step(batch_size)
        if cuda:
            torch.cuda.synchronize(device)
    except Exception as error:  # noqa: BLE001 (re-raised unless OOM)
        if not is_out_of_memory(error):
            raise
        fits = False
        # The traceback holds the step's tensors: drop it before freeing.
        error.__traceback__ = None
        del error
    seconds = time.perf_counter() - start
    mib = 2.**20
    trial = BatchTrial(batch_size, fits, seconds)
    if cuda:
        trial.peak_allocated_mib = torch.cuda.max_memory_allocated(device) / mib
        trial.peak_reserved_mib = torch.cuda.max_memory_reserved(device) / mib
    free_memory(device)
    return trial


def sweep_batch_sizes(step: Callable[[int], None],
                      device: Union[str, torch.device] = 'cuda',
                      start: int = 8,
                      max_batch: int = 4096,
                      bisect_steps: int = 0,
                      multiple: int = 8,
                      log: Optional[Callable[[str], None]] = print
                      ) -> SweepResult:
    """Double the batch until a step runs out of memory, then bisect.

    Args:
        step (Callable[[int], None]): Runs one training step (or a few) at a
            batch size; out-of-memory errors mark the batch as not fitting.
        device (str | torch.device): The step's device.
        start (int): The first batch size. Defaults to 8.
        max_batch (int): Stop doubling here. Defaults to 4096.
        bisect_steps (int): Bisections between the largest batch that fitted
            and the smallest that did not. Defaults to 0.
        multiple (int): Bisected batches are multiples of this. Defaults
            to 8.
        log (Callable[[str], None], optional): Called with a line per trial.

    Returns:
        SweepResult: All trials; ``largest`` is the answer.
    """
    for name, value in (('start', start), ('max_batch', max_batch),
                        ('multiple', multiple)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
    if max_batch < start:
        raise ValueError(f'max_batch must be >= start={start}, got '
                         f'{max_batch}')
    if not (isinstance(bisect_steps, int) and bisect_steps >= 0):
        raise ValueError(f'bisect_steps must be an integer >= 0, got '
                         f'{bisect_steps!r}')
    device = torch.device(device)
    result = SweepResult(max_batch=max_batch)

    def trial(batch_size: int) -> bool:
        t = run_trial(step, batch_size, device)
        result.trials.append(t)
        if log is not None:
            memory = ('' if t.peak_reserved_mib is None else
                      f', peak {t.peak_allocated_mib:.0f} MiB allocated / '
                      f'{t.peak_reserved_mib:.0f} MiB reserved')
            log(f'batch {batch_size}: '
                f'{"fits" if t.fits else "out of memory"} '
                f'({t.seconds:.1f} s{memory})')
        return t.fits

    batch = start
    while trial(batch) and batch < max_batch:
        batch = min(batch * 2, max_batch)
    for _ in range(bisect_steps):
        low, high = result.largest, result.first_failing
        if low is None or high is None:
            break
        middle = (low + high) // 2 // multiple * multiple
        if middle <= low:
            break
        trial(middle)
    return result


class TrainingStep:
    """Full training steps of a pre-training model at any batch size.

    Args:
        model (dict): The mmpretrain model config (with its data
            preprocessor).
        img_size (int): Image side in pixels.
        device (str | torch.device): Where to train.
        amp (str): ``'none'``, ``'bf16'`` or ``'fp16'`` (CUDA only).
        optimizer (dict, optional): The optimizer config. Defaults to AdamW.
        steps (int): Steps per call (the first one allocates the optimizer
            state). Defaults to 2.
        seed (int): Seed of the weights and the images. Defaults to 0.
    """

    def __init__(self,
                 model: dict,
                 img_size: int,
                 device: Union[str, torch.device] = 'cuda',
                 amp: str = 'none',
                 optimizer: Optional[dict] = None,
                 steps: int = 2,
                 seed: int = 0) -> None:
        from mmengine.optim import build_optim_wrapper
        from mmpretrain.registry import MODELS

        import noisemim  # noqa: F401  (registers noisemim's modules)
        if amp not in ('none', *AMP_DTYPES):
            raise ValueError(f"amp must be 'none', 'bf16' or 'fp16', got "
                             f'{amp!r}')
        self.device = torch.device(device)
        if amp != 'none' and self.device.type != 'cuda':
            raise ValueError(f'amp={amp!r} needs a CUDA device, got '
                             f'{self.device}')
        self.img_size = img_size
        self.steps = steps
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.model = MODELS.build(model)
        self.model.init_weights()
        self.model.to(self.device).train()
        wrapper = dict(type='OptimWrapper', optimizer=optimizer or dict(
            type='AdamW', lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05))
        if amp != 'none':  # a loss scale only for fp16
            wrapper.update(type='AmpOptimWrapper', dtype=AMP_DTYPES[amp],
                           loss_scale='dynamic' if amp == 'fp16' else dict(
                               enabled=False))
        self.optim_wrapper = build_optim_wrapper(self.model, wrapper)

    def __call__(self, batch_size: int) -> None:
        """Run ``steps`` training steps on ``batch_size`` random images."""
        from mmpretrain.structures import DataSample
        images = torch.randint(
            0, 256, (batch_size, 3, self.img_size, self.img_size),
            generator=self.generator, dtype=torch.uint8)
        data = dict(inputs=images,
                    data_samples=[DataSample() for _ in range(batch_size)])
        try:
            for _ in range(self.steps):
                self.model.train_step(data, self.optim_wrapper)
        finally:
            # A failed step leaves gradients behind: free them for the next.
            self.optim_wrapper.zero_grad(set_to_none=True)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='The largest per-device batch of a pre-training config '
        "that fits: doubling until out of memory (the config's model, random "
        'images, full training steps).')
    parser.add_argument(
        '--config',
        default='configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py')
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--amp', choices=['none', *AMP_DTYPES], default='bf16')
    parser.add_argument('--start', type=int, default=64)
    parser.add_argument('--max-batch', type=int, default=2048)
    parser.add_argument('--bisect-steps', type=int, default=2)
    parser.add_argument('--steps', type=int, default=2,
                        help='training steps per trial')
    parser.add_argument('--json', help='write the trials here')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> SweepResult:
    from mmengine.config import Config
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('batch_sweep: no CUDA device '
                         '(torch.cuda.is_available() is False)')
    cfg = Config.fromfile(args.config)
    optimizer = cfg.optim_wrapper.optimizer.to_dict()
    model = cfg.model.to_dict()
    if cfg.get('data_preprocessor'):  # as the Runner does
        model.setdefault('data_preprocessor', cfg.data_preprocessor.to_dict())
    step = TrainingStep(model, cfg.model.backbone.img_size,
                        device, args.amp if device.type == 'cuda' else 'none',
                        optimizer, steps=args.steps)
    result = sweep_batch_sizes(step, device, args.start, args.max_batch,
                               args.bisect_steps)
    print(result.summary())
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(config=args.config, device=str(device),
                           amp=args.amp, largest=result.largest,
                           first_failing=result.first_failing,
                           max_batch=result.max_batch,
                           summary=result.summary(),
                           trials=[asdict(t) for t in result.trials]),
                      f, indent=2)
    return result


if __name__ == '__main__':
    main()
