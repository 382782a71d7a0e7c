"""The demo data shipped inside the package: six COCO val2017 images with their person-keypoint annotations and two
public-domain portraits (``gtpt_deploy/data/demo/``, about 1 MB; sources and licenses in NOTICE).

It is package data, so a wheel install has it too: ``bench`` and ``bench --concurrency`` time real person crops by
default, export's parity check uses real crops, and ``demo`` runs its images. A checkout also reaches it as the
top-level ``demo/`` folder (a link here), which the README's commands name. No import of the package.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent / "data" / "demo"
DEMO_ANN = DEMO_DIR / "person_keypoints_demo.json"     # COCO person keypoints of the six COCO images
DEMO_IMAGES = DEMO_DIR / "images"
