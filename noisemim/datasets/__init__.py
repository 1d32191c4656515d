from .embedded_photos import EmbeddedPhotos
from .inaturalist import INaturalist
from .nabirds import NABirds

__all__ = ['EmbeddedPhotos', 'INaturalist', 'NABirds']
