"""Real person crops for export's parity check: the demo COCO file shipped in the package (seeded GT crops), a photo
folder or one photo. No torch import."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..bundled import DEMO_ANN
from ..errors import GtptError, InputImageError

SAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAX_REAL_CROPS = 12


def default_samples() -> Path:
    """$GTPT_SAMPLES, else the demo annotations shipped in the package (COCO val images with their GT person boxes)."""
    if os.environ.get("GTPT_SAMPLES"):
        return Path(os.environ["GTPT_SAMPLES"])
    return DEMO_ANN


def load_samples(samples: str | os.PathLike[str] | None, input_size: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """Normalized real person crops float32 (N<=12,3,H,W) for the parity check, and the image paths used.

    ``samples``: a COCO keypoint JSON (up to 12 seeded GT person crops, ``runtime.crops.person_crops``; images in
    ``images/`` next to it), a folder of person photos or one photo (boxes: the whole frame and its left / right
    halves); None = ``default_samples()``.
    """
    import cv2

    from ..runtime.crops import person_crops
    from ..runtime.images import load_image  # the one image reader: grayscale / RGBA / 16-bit handled
    from ..runtime.transforms import box_to_center_scale, crop_and_normalize

    source = Path(samples) if samples is not None else default_samples()
    if source.suffix.lower() == ".json":
        folder = source.parent / "images" if (source.parent / "images").is_dir() else source.parent
        try:
            got = person_crops(source, folder, MAX_REAL_CROPS, seed=0, input_size=input_size, at_most=True)
        except GtptError as e:  # a --samples file that is no usable COCO keypoint file, or its images are missing
            raise InputImageError(f"--samples: {e}") from None
        return got.crops, sorted({str(folder / n) for n in got.file_names})
    if source.is_dir():
        found = sorted(p for p in source.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES)
        if not found:
            raise InputImageError(f"sample folder {source} holds no .jpg/.png images; pass a folder of person photos")
    elif not source.is_file():
        raise InputImageError(f"sample image {source} does not exist; pass an image or a folder of person photos")
    else:
        found = [source]
    crops, names = [], []
    for path in found:
        rgb = cv2.cvtColor(load_image(path), cv2.COLOR_BGR2RGB)  # InputImageError for a missing / bad file
        h, w = rgb.shape[:2]
        boxes = np.array([[0, 0, w, h], [0, 0, w / 2, h], [w / 2, 0, w / 2, h]], dtype=np.float32)
        center, scale = box_to_center_scale(boxes, input_size)
        crops.append(crop_and_normalize(rgb, center, scale, input_size))
        names.append(str(path))
    return np.concatenate(crops)[:MAX_REAL_CROPS], names
