"""Engine parts (hooks, optimizer constructors) registered in mmengine-based registries."""
