"""noisemim's parts for mmdet and mmseg, registered only where those exist.

Pre-training needs mmpretrain, mmengine and the pure-Python part of mmcv
(``mmcv-lite`` is enough). The detection part (ViTDet's simple feature
pyramid, ``NoiseMIMSimpleFPN`` in mmdet's ``MODELS``) imports mmdet, which
needs mmcv's compiled ops (``mmcv.ops``). ``import noisemim`` registers it
when mmdet imports, and
stays silent when it does not; a detection or segmentation config imports
:mod:`noisemim.detection` or :mod:`noisemim.segmentation`, which call
:func:`require` and fail with what to install.
"""
import importlib
import importlib.util
from typing import Dict, Optional, Tuple

# library -> (the task that needs it, how to install it, noisemim modules that
# register into its registries)
OPTIONAL_LIBRARIES: Dict[str, Tuple[str, str, Tuple[str, ...]]] = {
    'mmdet': ('detection', 'pip install mmdet==3.3.0',
              ('noisemim.models.necks.simple_fpn', )),
    'mmseg': ('segmentation', 'pip install mmsegmentation==1.2.2 ftfy regex',
              ()),
}
MMCV_WITH_OPS = ('mmcv 2.1.0 with its compiled ops, not mmcv-lite (`pip '
                 'install --no-build-isolation mmcv==2.1.0` after torch; see '
                 'docs/install.md)')

# Why a library's parts are not registered (library -> reason).
_not_registered: Dict[str, str] = {}


def _installed(name: str) -> bool:
    """Whether ``name`` can be found (an import blocker counts as absent)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _import_error(name: str) -> Optional[str]:
    """Import ``name``; the error as text, or None when it imports."""
    try:
        importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 (any failure is reported)
        return f'{type(error).__name__}: {error}'
    return None


def _check_library(library: str, ops: bool = True) -> None:
    """Raise :class:`ImportError` naming what to install for ``library``
    (and for mmcv's compiled ops, if ``ops``)."""
    if library not in OPTIONAL_LIBRARIES:
        raise ValueError(f'library must be one of '
                         f'{sorted(OPTIONAL_LIBRARIES)}, got {library!r}')
    task, install, _ = OPTIONAL_LIBRARIES[library]
    if not _installed(library):
        raise ImportError(f'{library} is not installed: {task} needs '
                          f'`{install}` and {MMCV_WITH_OPS}.')
    error = _import_error('mmcv.ops') if ops else None
    if error is not None:
        raise ImportError(f'mmcv.ops cannot be imported ({error}): {task} '
                          f'needs {MMCV_WITH_OPS}. Pre-training does not.')
    error = _import_error(library)
    if error is not None:
        raise ImportError(f'{library} is installed but does not import '
                          f'({error}): {task} needs `{install}` and '
                          f'{MMCV_WITH_OPS}.')


def register(library: str, ops: bool = True) -> None:
    """Import ``library`` and register noisemim's parts in its registries.

    Args:
        library (str): ``'mmdet'`` or ``'mmseg'``.
        ops (bool): Also require mmcv's compiled ops (training in mmdet and
            mmseg needs them; registering the parts does not).

    Raises:
        ImportError: The library, or mmcv's compiled ops, is missing; the
            message says what to install.
    """
    _check_library(library, ops)
    for module in OPTIONAL_LIBRARIES[library][2]:
        importlib.import_module(module)
    _not_registered.pop(library, None)


def register_available() -> Dict[str, bool]:
    """Register the parts of every optional library that imports.

    Called by ``import noisemim``. A missing or broken library is skipped
    silently (pre-training does not need it); :func:`not_registered` says why.
    A library with no parts to register is not imported.

    Returns:
        Dict[str, bool]: Whether each library's parts are registered.
    """
    done = {}
    for library, (_, _, parts) in OPTIONAL_LIBRARIES.items():
        if not parts:
            continue
        try:
            register(library, ops=False)
        except ImportError as error:
            _not_registered[library] = str(error)
        done[library] = library not in _not_registered
    return done


def not_registered() -> Dict[str, str]:
    """Why the parts of some optional libraries are not registered.

    Returns:
        Dict[str, str]: library -> the message of its failed import.
    """
    return dict(_not_registered)


def require(library: str) -> None:
    """What a detection or segmentation config imports: fail clearly.

    Args:
        library (str): ``'mmdet'`` or ``'mmseg'``.

    Raises:
        ImportError: The library, or mmcv's compiled ops, is missing; the
            message says what to install.
    """
    register(library)
