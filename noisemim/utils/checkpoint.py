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

The second half serves crash safety (docs/reliability.md): files written
atomically (:func:`atomic_write_text`, :func:`commit_file`), a cheap check of
whether a checkpoint is complete (:func:`checkpoint_problem`), and the choice
of the checkpoint to resume from (:func:`find_resume_checkpoint`,
:func:`check_resume_checkpoint`), used by
:class:`noisemim.engine.hooks.AtomicCheckpointHook`.
"""
import logging
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log

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


# ---------------------------------------------------------------------------
# Crash-safe files and resume from the newest complete checkpoint.
# ---------------------------------------------------------------------------

#: What a complete Runner checkpoint holds at its top level.
RUNNER_CHECKPOINT_KEYS = ('meta', 'state_dict')


class BrokenCheckpointError(RuntimeError):
    """No complete checkpoint to resume from (each file and why)."""


def temp_path(path: str) -> str:
    """The temporary name a file is written under before it is renamed.

    It lies in the same folder (so the rename is atomic), is hidden, and
    carries the writer's pid: ``work/iter_4.pth`` -> ``work/.iter_4.pth.tmp123``.

    Args:
        path (str): The final path.

    Returns:
        str: The temporary path.
    """
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}.tmp{os.getpid()}')


#: Matches the names :func:`temp_path` gives (the final name is group 1).
TEMP_NAME = re.compile(r'^\.(.+)\.tmp\d+$')


def fsync_dir(folder: str) -> None:
    """Flush a folder's entries (a rename in it) to disk, where supported."""
    try:
        fd = os.open(folder or '.', os.O_RDONLY)
    except OSError:  # pragma: no cover (platforms without folder handles)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover (file systems that refuse it)
        pass
    finally:
        os.close(fd)


def commit_file(tmp: str, path: str) -> None:
    """fsync a fully written ``tmp`` and rename it over ``path`` atomically.

    Readers see either the old ``path`` or the complete new one, never a
    part, whatever moment the process dies at.

    Args:
        tmp (str): The written temporary file (same folder as ``path``).
        path (str): The final path.
    """
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(osp.dirname(path))


def atomic_write_text(path: str, text: str) -> None:
    """Write a small text file (e.g. ``last_checkpoint``) atomically.

    Args:
        path (str): The file.
        text (str): Its new content.
    """
    tmp = temp_path(path)
    try:
        with open(tmp, 'w') as f:
            f.write(text)
        commit_file(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


def remove_quietly(path: str) -> None:
    """Remove a file if it exists; errors are ignored."""
    try:
        os.remove(path)
    except OSError:
        pass


def checkpoint_problem(path: str) -> Optional[str]:
    """Why a local Runner checkpoint cannot be resumed from, if it cannot.

    Cheap: the zip's central directory is read (a file cut short has none),
    then ``torch.load(..., weights_only=True, mmap=True)`` unpickles the
    structure with the tensors mapped, not read. A checkpoint carrying
    globals that are not allow-listed is not "broken" but refused.

    Args:
        path (str): The checkpoint.

    Returns:
        str, optional: ``None`` when it loads, else the reason.

    Raises:
        UnsafeCheckpointError: It carries globals that are not allowed.
    """
    if not osp.isfile(path):
        return 'the file does not exist'
    size = osp.getsize(path)
    if size == 0:
        return 'the file is empty (0 bytes)'
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        return (f'incomplete or not a torch checkpoint ({size} bytes; '
                f'{type(error).__name__}: {error})')
    check_checkpoint(path)
    try:
        checkpoint = torch.load(
            path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as error:  # any failure to load is the verdict
        return f'unreadable ({type(error).__name__}: {error})'
    if not isinstance(checkpoint, dict) or any(
            key not in checkpoint for key in RUNNER_CHECKPOINT_KEYS):
        return (f'not a Runner checkpoint (needs the keys '
                f'{RUNNER_CHECKPOINT_KEYS})')
    return None


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The path recorded in ``<work_dir>/last_checkpoint``, if any.

    Args:
        work_dir (str): The run's work dir.

    Returns:
        str, optional: The recorded path; ``None`` when the file is missing,
        empty or unreadable.
    """
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            return f.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _step_pattern(filename_tmpl: str) -> 're.Pattern':
    head, _, tail = filename_tmpl.partition('{}')
    return re.compile('^' + re.escape(head) + r'(\d+)' + re.escape(tail) + '$')


def checkpoints_in(folder: str,
                   filename_tmpls: Sequence[str] = ('iter_{}.pth',
                                                    'epoch_{}.pth')
                   ) -> List[Tuple[int, str]]:
    """The periodic checkpoints in a folder, newest (highest step) first.

    Args:
        folder (str): The folder.
        filename_tmpls (Sequence[str]): Checkpoint name templates, as
            ``CheckpointHook.filename_tmpl``.

    Returns:
        List[Tuple[int, str]]: ``(step, path)`` pairs.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    patterns = [_step_pattern(tmpl) for tmpl in filename_tmpls]
    found = []
    for name in names:
        for pattern in patterns:
            match = pattern.match(name)
            if match and osp.isfile(osp.join(folder, name)):
                found.append((int(match.group(1)), osp.join(folder, name)))
                break
    return sorted(found, reverse=True)


def _candidates(work_dir: str, folders: Sequence[str],
                filename_tmpls: Sequence[str]) -> List[str]:
    """``last_checkpoint``'s file first, then the others newest first."""
    last = read_last_checkpoint(work_dir)
    paths = [last] if last else []
    seen = set()
    for folder in ([osp.dirname(last)] if last else []) + list(folders) + [
            work_dir]:
        if osp.abspath(folder) in seen:
            continue
        seen.add(osp.abspath(folder))
        paths += [path for _, path in checkpoints_in(folder, filename_tmpls)]
    unique, seen = [], set()
    for path in paths:
        if osp.abspath(path) not in seen:
            seen.add(osp.abspath(path))
            unique.append(path)
    return unique


def find_resume_checkpoint(
        work_dir: str,
        folders: Sequence[str] = (),
        filename_tmpls: Sequence[str] = ('iter_{}.pth', 'epoch_{}.pth'),
        logger: Optional[logging.Logger] = None) -> Optional[str]:
    """The newest complete checkpoint to auto-resume from.

    The file named in ``last_checkpoint`` comes first, then the periodic
    checkpoints beside it and in ``folders`` and ``work_dir``, newest first.
    Each is validated (:func:`checkpoint_problem`); broken ones are skipped
    with a warning that names each and the one used instead. A remote path
    (``s3://...``) is returned unchecked.

    Args:
        work_dir (str): The run's work dir (holds ``last_checkpoint``).
        folders (Sequence[str]): More folders holding the run's checkpoints
            (e.g. the checkpoint hook's ``out_dir``).
        filename_tmpls (Sequence[str]): Checkpoint name templates.
        logger (logging.Logger, optional): Where the warning goes; defaults
            to mmengine's current logger.

    Returns:
        str, optional: The checkpoint; ``None`` when there is none at all (a
        fresh start).

    Raises:
        BrokenCheckpointError: There are checkpoints, none of them loads.
        UnsafeCheckpointError: A checkpoint checked carries unsafe globals.
    """
    candidates = _candidates(work_dir, folders, filename_tmpls)
    skipped = []
    for path in candidates:
        if '://' in path:  # remote storage: left to the loader
            return path
        problem = checkpoint_problem(path)
        if problem is None:
            if skipped:
                _warn(
                    logger, 'Cannot resume from ' + '; nor from '.join(
                        f'{p!r}: {why}' for p, why in skipped) +
                    f'. Falling back to the newest complete checkpoint '
                    f'{path!r}.')
            return path
        skipped.append((path, problem))
    if skipped:
        raise BrokenCheckpointError(
            f'Cannot resume the run in {work_dir!r}: none of its checkpoints '
            'loads:\n' + '\n'.join(f'  {p}: {why}' for p, why in skipped) +
            '\nStart afresh without --resume (or resume=False), or point '
            '--resume at a complete checkpoint.')
    return None


def check_resume_checkpoint(
        path: str,
        work_dir: str,
        filename_tmpls: Sequence[str] = ('iter_{}.pth', 'epoch_{}.pth')
) -> None:
    """Refuse an explicit ``--resume PATH`` that cannot be loaded.

    Remote paths (``s3://``, ``http://`` ...) are left to the loader.

    Args:
        path (str): The checkpoint asked for.
        work_dir (str): The run's work dir (searched for an alternative).
        filename_tmpls (Sequence[str]): Checkpoint name templates.

    Raises:
        BrokenCheckpointError: Naming ``path``, the reason and the nearest
            complete checkpoint (the newest one not newer than ``path``,
            else the newest).
        UnsafeCheckpointError: It carries globals that are not allowed.
    """
    if '://' in path:
        return
    problem = checkpoint_problem(path)
    if problem is None:
        return
    step = None
    for pattern in map(_step_pattern, filename_tmpls):
        match = pattern.match(osp.basename(path))
        if match:
            step = int(match.group(1))
    found = []
    for folder in {osp.abspath(osp.dirname(path)), osp.abspath(work_dir)}:
        found += checkpoints_in(folder, filename_tmpls)
    found = sorted(
        (s, p) for s, p in set(found) if osp.abspath(p) != osp.abspath(path))
    older = [p for s, p in reversed(found) if step is None or s <= step]
    newer = [p for s, p in found if step is not None and s > step]
    nearest = next(
        (p for p in older + newer if checkpoint_problem(p) is None), None)
    hint = (f'The nearest complete checkpoint is {nearest!r}: resume with '
            f'--resume {nearest}' if nearest else
            'No complete checkpoint lies beside it.')
    raise BrokenCheckpointError(
        f'Cannot resume from {path!r}: {problem}. {hint}')


def _warn(logger: Optional[logging.Logger], message: str) -> None:
    if logger is None:
        print_log(message, logger='current', level=logging.WARNING)
    else:
        logger.warning(message)
