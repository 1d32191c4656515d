from .embedded_photos import EmbeddedPhotos

__all__ = ['EmbeddedPhotos']
