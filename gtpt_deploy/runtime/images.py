"""Reading images: the one image reader (as the official code reads them) and input expansion. No torch import."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from ..errors import InputImageError
from .imageinfo import image_info

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm", ".pnm")
# The official reader: always 3-channel 8-bit BGR (grayscale is replicated, alpha dropped, 16-bit scaled by 1/256),
# EXIF orientation ignored (COCO annotations are in stored-pixel coordinates).
IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
# Largest image decoded, in pixels: 120 MP is a 0.36 GB BGR frame (a 100 MP medium-format photo fits). Above it an
# image is refused before decoding, per image (a 30000x30000 PNG took 5.4 GB, a 40000x40000 one hit OpenCV's own
# 2^30 limit and stopped the whole run). Person poses do not need more: every crop is resampled to 256x192.
MAX_PIXELS = 120_000_000


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file -> uint8 (H, W, 3) BGR, as ``cv2.imread(IMREAD_COLOR | IMREAD_IGNORE_ORIENTATION)``.

    Grayscale, RGBA and 16-bit files are converted; raises InputImageError for a missing or undecodable file, a
    float-sample TIFF and an image above ``MAX_PIXELS`` (checked from the header, before decoding).
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode: also works for non-ASCII paths
    except FileNotFoundError:
        raise InputImageError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, OSError) as e:
        raise InputImageError(f"{path}: cannot read it ({e.strerror or type(e).__name__})") from None
    info = image_info(data) if data.size else None
    if info is not None and info.pixels > MAX_PIXELS:
        raise InputImageError(f"{path}: {info.format} of {info.width}x{info.height} = {info.pixels / 1e6:.0f} "
                              f"megapixels, above the limit of {MAX_PIXELS / 1e6:.0f}; downscale it first")
    if info is not None and info.float_samples:
        raise InputImageError(f"{path}: a TIFF with floating-point samples, an unsupported sample format; expected "
                              f"8- or 16-bit integer samples - convert it (e.g. scale to 16-bit)")
    try:
        image = cv2.imdecode(data, IMREAD_FLAGS) if data.size else None
    except cv2.error as e:  # OpenCV's own limits and codec failures raise instead of returning None
        raise InputImageError(f"{path}: OpenCV cannot decode it ({str(e).strip().splitlines()[-1][:120]})") from None
    if image is None:
        raise InputImageError(f"{path}: not a decodable image ({data.size} bytes); expected JPEG, PNG, BMP, TIFF "
                              f"or WebP")
    if image.ndim == 2:  # defensive: codecs that ignore IMREAD_COLOR
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.dtype != np.uint8:
        image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else cv2.convertScaleAbs(image)
    return image[..., :3] if image.shape[2] > 3 else image


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files and folders -> image paths. Folders: their image files (by suffix), sorted, not recursive.

    Paths that do not exist are kept (they fail, and are reported, when loaded).
    """
    out: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out
