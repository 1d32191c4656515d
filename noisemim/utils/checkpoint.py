"""Safe checkpoint loading under torch's ``weights_only=True`` default.

torch >= 2.6 unpickles checkpoints with ``weights_only=True``: only tensors,
plain containers and allow-listed globals may be created. mmengine 0.10.7 calls
``torch.load`` without ``weights_only``, so that default applies to every path
(``--resume``, ``load_from``, ``Pretrained`` init, converters, analysis tools),
and a Runner checkpoint fails to load because its ``message_hub`` holds
``HistoryBuffer`` objects with numpy arrays and scalars.

:func:`install_safe_globals` (run when ``noisemim`` is imported) allow-lists
exactly the globals that Runner checkpoints carry, found with
``torch.serialization.get_unsafe_globals_in_checkpoint`` on real checkpoints:

* numpy's array and scalar reconstruction (``ndarray``, ``dtype``,
  ``_reconstruct``, ``scalar``), under numpy 2's and numpy 1's module names,
  and the numeric, boolean and string dtype classes (``numpy.dtypes.*``) whose
  state the unpickler sets;
* ``mmengine.logging.HistoryBuffer``;
* ``builtins.getattr``, which a ``HistoryBuffer`` uses to pickle its statistics
  methods (``getattr(HistoryBuffer, 'mean')``). ``getattr`` itself would open
  every attribute of every allowed object to a checkpoint, so the name is
  bound to :func:`history_buffer_method`, which returns only those methods.

A checkpoint with any other global is refused by torch's unpickler before
anything in it runs. :func:`check_checkpoint` gives the same verdict without
unpickling, with an error that names the file and the globals.

Safety stays on: this never sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` and never
passes ``weights_only=False``.
"""
import os.path as osp
import pickle
from typing import Callable, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

#: The statistics methods a ``HistoryBuffer`` pickles by ``getattr``.
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint carries globals that are not allow-listed."""


def history_buffer_method(owner: type, name: str) -> Callable:
    """``getattr`` limited to the statistics methods of ``HistoryBuffer``.

    Args:
        owner (type): Must be ``HistoryBuffer``.
        name (str): One of :data:`HISTORY_BUFFER_METHODS`.

    Returns:
        Callable: ``getattr(HistoryBuffer, name)``.

    Raises:
        UnsafeCheckpointError: For any other object or attribute.
    """
    if owner is not HistoryBuffer or name not in HISTORY_BUFFER_METHODS:
        raise UnsafeCheckpointError(
            f'The checkpoint asks for getattr({owner!r}, {name!r}); only '
            f'getattr(HistoryBuffer, m) with m in {HISTORY_BUFFER_METHODS} '
            'is allowed. Refusing to load it.')
    return getattr(owner, name)


def _numpy_globals() -> List[Tuple[Callable, str]]:
    """numpy's reconstruction globals under numpy 2's and numpy 1's names."""
    try:
        multiarray = np._core.multiarray  # numpy >= 2
    except AttributeError:  # pragma: no cover (numpy 1.x)
        multiarray = np.core.multiarray
    found = []
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        found += [(multiarray._reconstruct, f'{module}._reconstruct'),
                  (multiarray.scalar, f'{module}.scalar')]
    found += [(np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype')]
    # A dtype's state is set on an instance of its class (numpy.dtypes.*):
    # numbers, booleans and strings only (no object or void dtypes).
    for name in dir(np.dtypes):
        cls = getattr(np.dtypes, name)
        if (name.endswith('DType') and isinstance(cls, type)
                and getattr(cls, 'type', None) is not None
                and issubclass(cls.type, (np.number, np.bool_, np.str_,
                                          np.bytes_))):
            found.append((cls, f'numpy.dtypes.{name}'))
    return found


def safe_globals() -> List[Tuple[Callable, str]]:
    """Every global that mmengine Runner checkpoints need, with its name.

    Returns:
        List[Tuple[Callable, str]]: ``(object, name in the pickle)`` pairs.
    """
    return _numpy_globals() + [
        (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        (history_buffer_method, 'builtins.getattr'),
    ]


def install_safe_globals() -> None:
    """Allow-list :func:`safe_globals` for ``torch.load`` in this process."""
    torch.serialization.add_safe_globals(safe_globals())


def unsafe_globals(path: str) -> List[str]:
    """The globals in a checkpoint that are not allow-listed (nothing runs).

    Args:
        path (str): A checkpoint written by ``torch.save`` (zip format).

    Returns:
        List[str]: ``module.name`` of each global that would be refused.
    """
    return torch.serialization.get_unsafe_globals_in_checkpoint(path)


def check_checkpoint(path: Union[str, None]) -> None:
    """Refuse a local checkpoint that carries a global not allow-listed.

    Nothing in the file is executed: the pickle's opcodes are only scanned.
    Remote paths (``http://``, ``open-mmlab://``, ...) and missing files are
    left to the loader, and torch's ``weights_only`` unpickler still guards
    them.

    Args:
        path (str, optional): The checkpoint; ``None`` is accepted.

    Raises:
        UnsafeCheckpointError: The checkpoint carries other globals.
    """
    if not path or not osp.isfile(path):
        return
    try:
        bad = unsafe_globals(path)
    except (ValueError, RuntimeError):
        return  # not a zip checkpoint: torch.load's own checks apply
    if bad:
        raise UnsafeCheckpointError(
            f'Refusing to load the checkpoint {path!r}: it carries the '
            f'globals {bad}, which are not allow-listed. noisemim loads '
            'tensors, plain containers and the numpy / mmengine objects of '
            'mmengine Runner checkpoints only; a checkpoint that needs more '
            'could run code when loaded.')
