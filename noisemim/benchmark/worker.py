"""One model's full training steps, each model in its own process.

A separate process per model makes the CPU peak resident memory (``ru_maxrss``)
that model's own; the parent drives the processes in turn, one step at a time,
so that the load of a shared machine hits every model alike.

glibc's malloc moves its mmap and trim thresholds as a process frees large
blocks, and then hands freed activation memory back to the kernel between
steps, to be faulted in (and zeroed) again in the next one. How often depends
on the order in which a model allocates and frees, not on its arithmetic:
measured on ViT-B at batch 8, 10-180 thousand page faults per step, 1-4 % of
the step, differing between models and between runs. Each process therefore
pins both thresholds (:func:`pin_malloc_thresholds`) unless told not to, and
counts its page faults per step.
"""
import ctypes
import ctypes.util
import logging
import multiprocessing as mp
import resource
import time
import traceback
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

import psutil
import torch

from .models import block_mask_draw


# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks above this are mmap-ed (glibc's largest dynamic threshold).
MMAP_THRESHOLD = 32 * 2**20
#: Free memory at the top of the heap kept for the next step, not trimmed.
TRIM_THRESHOLD = 2**30


def pin_malloc_thresholds() -> bool:
    """Fix glibc's mmap and trim thresholds for this process.

    Setting them turns off glibc's dynamic adjustment, so that memory freed
    at the end of a step stays in the heap for the next step instead of
    being returned to the kernel and faulted in again.

    Returns:
        bool: Whether they were set (False where the C library has no
        ``mallopt``, e.g. not glibc).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c'))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


@dataclass
class WorkerSpec:
    """What a worker builds and runs.

    Attributes:
        name (str): The model's name in the table.
        model (dict): The mmpretrain model config.
        optim_wrapper (dict): The mmengine optimizer wrapper config.
        batch_size (int): Images per step.
        img_size (int): Image side in pixels.
        device (str): ``'cpu'`` or ``'cuda'``.
        threads (int): ``torch.set_num_threads``; 0 keeps torch's default.
        seed (int): Seed of the weights and the synthetic images.
        mask_generator (dict, optional): A ``SimMIMMaskGenerator`` config:
            its masks are drawn into the data samples on the device inside
            every timed step (:class:`~.models.BlockMaskDraw`).
        compile_options (dict, optional): Compile the model's encoder blocks
            and heads with these ``torch.compile`` options
            (``noisemim.utils.compile``); None runs it eagerly.
        pin_malloc (bool): Pin glibc's malloc thresholds in the worker
            process (:func:`pin_malloc_thresholds`). Defaults to True.
    """
    name: str
    model: dict
    optim_wrapper: dict
    batch_size: int
    img_size: int
    device: str = 'cpu'
    threads: int = 0
    seed: int = 0
    mask_generator: Optional[dict] = None
    compile_options: Optional[dict] = None
    pin_malloc: bool = True


class StepRunner:
    """Builds a model and its optimizer wrapper and times training steps.

    A step is ``model.train_step`` (data preprocessor, forward, loss,
    backward, optimizer step) on a fixed batch of synthetic uint8 images.

    Args:
        spec (WorkerSpec): What to build.
    """

    def __init__(self, spec: WorkerSpec) -> None:
        from mmengine.logging import MMLogger
        from mmengine.optim import build_optim_wrapper
        from mmpretrain.registry import MODELS

        import noisemim  # noqa: F401  (registers noisemim's modules)
        from . import models  # noqa: F401  (registers the baseline ViT)
        MMLogger.get_instance('mmengine').setLevel(logging.WARNING)
        if spec.threads > 0:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.device = torch.device(spec.device)
        self.rss_before = psutil.Process().memory_info().rss
        torch.manual_seed(spec.seed)
        self.model = MODELS.build(spec.model)
        self.model.init_weights()
        self.model.to(self.device).train()
        self.optim_wrapper = build_optim_wrapper(self.model,
                                                 spec.optim_wrapper)
        if spec.compile_options is not None:
            from noisemim.utils.compile import compile_model
            compile_model(self.model, **spec.compile_options)
        g = torch.Generator().manual_seed(spec.seed)
        self.images = torch.randint(
            0, 256, (spec.batch_size, 3, spec.img_size, spec.img_size),
            generator=g, dtype=torch.uint8)
        self.mask_draw = (block_mask_draw(spec.mask_generator)
                          if spec.mask_generator else None)
        self.cpu_seconds = []
        self.page_faults = []
        if self.device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self.device)

    def _batch(self) -> dict:
        """The batch as the data loader hands it over (images, samples)."""
        from mmpretrain.structures import DataSample
        samples = [DataSample() for _ in range(self.spec.batch_size)]
        return dict(inputs=self.images, data_samples=samples)

    def _draw_masks(self, data: dict) -> None:
        """The SimMIM-style mask of every sample, drawn on the step's device
        (inside the timed step, as NoiseMIM's and MAE's masks are)."""
        if self.mask_draw is not None:
            masks = self.mask_draw(self.spec.batch_size, self.device)
            for sample, mask in zip(data['data_samples'], masks):
                sample.set_field(mask, 'mask')

    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def step(self) -> float:
        """Run one training step.

        Returns:
            float: Its wall time in seconds. The process's CPU time of the
            step (all its threads) is appended to ``cpu_seconds``, its minor
            page faults to ``page_faults``.
        """
        data = self._batch()
        self._sync()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        cpu = time.process_time()
        start = time.perf_counter()
        self._draw_masks(data)
        self.model.train_step(data, self.optim_wrapper)
        self._sync()
        wall = time.perf_counter() - start
        self.cpu_seconds.append(time.process_time() - cpu)
        self.page_faults.append(
            resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
        return wall

    def cpu_times(self) -> list:
        """The CPU seconds of every step so far (see :meth:`step`)."""
        return list(self.cpu_seconds)

    def faults(self) -> list:
        """The minor page faults of every step so far (see :meth:`step`)."""
        return list(self.page_faults)

    def memory(self) -> Dict[str, float]:
        """Peak memory so far, in MiB.

        Returns:
            Dict[str, float]: ``peak``: CUDA ``max_memory_allocated``, or the
            process's peak resident memory on CPU; ``model``: the part of it
            the model, optimizer and steps added (on CPU, the peak minus the
            resident memory after the imports); on CUDA also ``reserved``,
            the peak that the caching allocator held
            (``max_memory_reserved``), which is what the GPU must have.
        """
        mib = 2.**20
        if self.device.type == 'cuda':
            peak = torch.cuda.max_memory_allocated(self.device) / mib
            reserved = torch.cuda.max_memory_reserved(self.device) / mib
            return dict(peak=peak, model=peak, reserved=reserved)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return dict(peak=peak / mib, model=(peak - self.rss_before) / mib)

    def _counted_step(self) -> float:
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as counter:
            self.step()
        return float(counter.get_total_flops())

    def flops(self) -> Dict[str, float]:
        """FLOPs of one training step, from ``torch.utils.flop_counter``.

        Returns:
            Dict[str, float]: Matmul, convolution and attention FLOPs
            (forward and backward) of a step: ``total``, and
            ``without_disruption``, those of a step with the model's
            disruption loss switched off (the same as ``total`` for a
            model without one), so that MFU can be read both ways.
        """
        total = self._counted_step()
        without = total
        disruption = getattr(self.model, 'disruption', None)
        if disruption is not None:
            self.model.disruption = None
            try:
                without = self._counted_step()
            finally:
                self.model.disruption = disruption
        return dict(total=total, without_disruption=without)

    def shares(self, names: Sequence[str], steps: int = 1) -> Dict[str, float]:
        """Share of profiled steps spent in ``record_function`` ranges.

        Args:
            names (Sequence[str]): The range names.
            steps (int): Steps to profile. Defaults to 1.

        Returns:
            Dict[str, float]: See :func:`range_shares`.
        """
        from torch.profiler import ProfilerActivity, profile

        from .profiling import range_shares
        cuda = self.device.type == 'cuda'
        activities = [ProfilerActivity.CPU]
        if cuda:
            activities.append(ProfilerActivity.CUDA)
        with profile(activities=activities) as prof:
            for _ in range(steps):
                self.step()
        # The denominator on the profiler's own clock (see range_shares).
        return range_shares(prof.events(), names, device_time=cuda)


def _serve(conn, spec: WorkerSpec) -> None:
    """The worker process: build, then run the parent's calls until 'stop'."""
    try:
        if spec.pin_malloc:
            pin_malloc_thresholds()
        runner = StepRunner(spec)
        conn.send(('ok', None))
    except BaseException:  # report it to the parent, which raises
        conn.send(('error', traceback.format_exc()))
        return
    while True:
        method, args = conn.recv()
        if method == 'stop':
            return
        try:
            conn.send(('ok', getattr(runner, method)(*args)))
        except BaseException:
            conn.send(('error', traceback.format_exc()))


class Worker:
    """A :class:`StepRunner` in a spawned process, called over a pipe.

    Args:
        spec (WorkerSpec): What the process builds.
    """

    def __init__(self, spec: WorkerSpec) -> None:
        self.name = spec.name
        ctx = mp.get_context('spawn')
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_serve, args=(child, spec), daemon=True)
        self._process.start()
        child.close()
        self._built = False

    def wait_built(self) -> None:
        """Wait until the process has built its model (raises if it failed)."""
        if not self._built:
            self._result()
            self._built = True

    def call(self, method: str, *args) -> Any:
        """Call ``StepRunner.<method>(*args)`` in the process.

        Args:
            method (str): ``'step'``, ``'memory'``, ``'flops'`` or
                ``'shares'``.
            *args: Its arguments.

        Returns:
            Any: What it returned.
        """
        self.wait_built()
        self._conn.send((method, args))
        return self._result()

    def _result(self) -> Any:
        try:
            status, value = self._conn.recv()
        except EOFError:
            raise RuntimeError(
                f'The benchmark process of {self.name} died (exit code '
                f'{self._process.exitcode}); out of memory?') from None
        if status == 'error':
            raise RuntimeError(f'{self.name} failed:\n{value}')
        return value

    @property
    def alive(self) -> bool:
        """Whether the model's process is running."""
        return self._process.is_alive()

    def close(self) -> None:
        """Stop the process."""
        if self._process.is_alive():
            try:
                self._conn.send(('stop', ()))
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(timeout=10)
        self._conn.close()

    def __enter__(self) -> 'Worker':
        return self

    def __exit__(self, *exc) -> None:
        self.close()
