"""Real photographs that ship inside scikit-image: pre-training data with no download."""
import os.path as osp
from typing import List, Optional, Sequence

from mmengine.dataset import BaseDataset
from mmpretrain.registry import DATASETS

# Real photographs among scikit-image's sample files (the synthetic test
# patterns, microscopy stacks and tiny icons are left out).
PHOTOS = ('astronaut.png', 'brick.png', 'camera.png', 'chelsea.png',
          'coffee.png', 'coins.png', 'grass.png', 'gravel.png',
          'hubble_deep_field.jpg', 'ihc.png', 'microaneurysms.png', 'moon.png',
          'motorcycle_left.png', 'motorcycle_right.png', 'retina.jpg',
          'rocket.jpg')


@DATASETS.register_module()
class EmbeddedPhotos(BaseDataset):
    """The photographs of ``skimage/data``, repeated to make an epoch.

    Args:
        names (Sequence[str], optional): File names to use; defaults to the
            photographs in :data:`PHOTOS` that this scikit-image has.
        repeat (int): How often each photo appears per epoch. Defaults to 1.
        pipeline (Sequence[dict]): The data pipeline.
        **kwargs: Passed to ``BaseDataset``.
    """

    def __init__(self,
                 names: Optional[Sequence[str]] = None,
                 repeat: int = 1,
                 pipeline: Sequence[dict] = (),
                 **kwargs) -> None:
        self.names = names
        self.repeat = repeat
        super().__init__(pipeline=pipeline, serialize_data=False, **kwargs)

    @staticmethod
    def data_dir() -> str:
        """The folder of scikit-image's sample files."""
        import skimage
        return osp.join(osp.dirname(skimage.__file__), 'data')

    def load_data_list(self) -> List[dict]:
        root = self.data_dir()
        names = self.names or [n for n in PHOTOS if osp.exists(osp.join(root, n))]
        missing = [n for n in names if not osp.exists(osp.join(root, n))]
        if missing or not names:
            raise FileNotFoundError(
                f'EmbeddedPhotos: {missing or "no photographs"} not found in '
                f'{root}; install scikit-image (pip install scikit-image).')
        return [
            dict(img_path=osp.join(root, n), sample_idx=i)
            for i, n in enumerate(sorted(names) * self.repeat)
        ]
