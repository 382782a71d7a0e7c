"""Real person crops for export's parity check: the bundled demo COCO file (seeded GT crops), a photo folder or one
photo. No torch import."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import GtptError, InputImageError

log = logging.getLogger(__name__)

SAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Bundled with the repository (demo/, see NOTICE): COCO val images with their GT person boxes.
DEMO_ANNOTATIONS = Path(__file__).resolve().parents[2] / "demo" / "person_keypoints_demo.json"
MAX_REAL_CROPS = 12


def default_samples() -> Path | None:
    """$GTPT_SAMPLES, else the repository's demo annotations, else the shared people photos, else None."""
    if os.environ.get("GTPT_SAMPLES"):
        return Path(os.environ["GTPT_SAMPLES"])
    if DEMO_ANNOTATIONS.is_file():
        return DEMO_ANNOTATIONS
    shared = Path(os.environ.get("GTPT_SHARED", Path(__file__).resolve().parents[3] / "shared"))
    photos = shared / "data" / "people_photos_pypi"
    return photos if photos.is_dir() else None


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
    if source is None:
        log.warning("no sample person photos found (set GTPT_SAMPLES or pass --samples); parity uses random inputs only")
        return np.zeros((0, 3, *input_size), np.float32), []
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
