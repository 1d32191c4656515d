"""Engine parts (hooks, optimizer constructors) registered in mmengine-based registries."""
from . import hooks  # noqa: F401  (registration)
from .optimizers import LayerDecayOptimWrapperConstructor  # noqa: F401
