from .disruption import DisruptionLoss

__all__ = ['DisruptionLoss']
