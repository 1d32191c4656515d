from .device_decode import (DeviceDecodeDataPreprocessor, LoadImageBytes,
                            PackEncodedInputs, RandomFlipFlag,
                            RandomResizedCropParams)
from .embedded_photos import EmbeddedPhotos
from .image_folder import NoiseMIMImageFolder
from .inaturalist import INaturalist
from .nabirds import NABirds
from .skip_bad_samples import (BadSampleError, SkipBadSamples,
                               TooManyBadSamplesError)

__all__ = [
    'BadSampleError', 'DeviceDecodeDataPreprocessor', 'LoadImageBytes',
    'PackEncodedInputs', 'RandomFlipFlag', 'RandomResizedCropParams',
    'EmbeddedPhotos', 'NoiseMIMImageFolder', 'INaturalist', 'NABirds',
    'SkipBadSamples', 'TooManyBadSamplesError'
]
