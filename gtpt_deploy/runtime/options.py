"""Typed options of the pose path, built once (by the CLI's option groups or the Python API) and passed down whole.

``run``, ``predict``, ``bench --images`` and ``validate`` take the same few groups of settings; carrying each group
as one small frozen object instead of loose arguments keeps the front doors from drifting apart (the Python
``predict`` once ran the detector on the pose model's device while ``run`` had ``--detector-device``).
No torch import; the objects import their consumers lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..runners.base import Runner
    from .boxes import BoxSource


@dataclass(frozen=True)
class RunnerSpec:
    """How the pose artifact runs and is called.

    Attributes:
        device: ``cpu``, ``cuda``, ``cuda:N``; None: the artifact's default (``cuda`` for an engine, else ``cpu``).
        provider: ONNX Runtime provider ``cpu`` / ``cuda`` / ``tensorrt`` or ``openvino[:f32|:bf16]``; None: by device.
        threads: CPU threads of the backend (None: its default).
        batch: crops per model call for a dynamic-batch artifact (None: 8); a static batch is used as exported.
        flip: the official flip test (the flipped crops run too; about 2x the model time).
    """

    device: str | None = None
    provider: str | None = None
    threads: int | None = None
    batch: int | None = None
    flip: bool = True

    def open(self, artifact: Any) -> "Runner":
        """The runner of ``artifact`` on this device / provider / threads (a context manager, not yet active)."""
        from ..runners import create_runner

        return create_runner(artifact, device=self.device, provider=self.provider, threads=self.threads)


@dataclass(frozen=True)
class BoxSpec:
    """Where person boxes come from and where the detector runs (independent of the pose artifact's device).

    Attributes:
        boxes: ``"gt"`` (ground-truth boxes of ``ann``) or a COCO detection results JSON; exclusive with detector.
        detector: a person detector ONNX (mmdeploy RTMDet / YOLOX export).
        ann: COCO annotation file (or its loaded dict): the source of ``"gt"`` boxes, and of image ids by file name
            where a command uses it.
        box_thr: minimum box score (None: 0.3 for a detector, 0.0 for a detection file).
        detector_device / detector_threads: where the detector runs and its CPU threads.
    Neither ``boxes`` nor ``detector``: each whole image is one person box.
    """

    boxes: str | Path | None = None
    detector: str | Path | None = None
    ann: str | Path | dict | None = None
    box_thr: float | None = None
    detector_device: str = "cpu"
    detector_threads: int | None = None

    @property
    def whole_images(self) -> bool:
        """No detector and no boxes: each whole image is used as one person box."""
        return self.boxes is None and self.detector is None

    def source(self) -> "BoxSource":
        """The box source these options name (loads the detector now; checks ``"gt"`` has ``ann``)."""
        from .person_boxes import box_source

        return box_source(boxes=self.boxes, detector=self.detector, ann=self.ann, score_thr=self.box_thr,
                          device=self.detector_device, threads=self.detector_threads)


@dataclass(frozen=True)
class OutputSpec:
    """What ``run`` writes besides its results, and whether it may reuse a run folder.

    Attributes:
        kpt_thr: draw keypoints above this confidence (None: ``draw.DEFAULT_KPT_THR``).
        draw: annotated images / videos besides the results.
        show: live window for cameras (None: when a display exists; else an annotated video is written).
        force: reuse an existing run folder (the earlier run's files there are removed once this one completes).
    """

    kpt_thr: float | None = None
    draw: bool = True
    show: bool | None = None
    force: bool = False


@dataclass(frozen=True)
class RunnerSweep:
    """``bench``'s runner settings: each one given once for all artifacts or once per artifact, several batches.

    Attributes:
        batches: crops per call, each timed (pipeline mode: the only one, for a dynamic-batch artifact).
        devices, providers: empty (each artifact's default), one for all, or one per artifact in order.
        threads: CPU threads of every backend. flip: the flip test (pipeline mode).
    """

    batches: tuple[int, ...] = (1, 8)
    devices: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    threads: int | None = None
    flip: bool = True

    def first(self) -> RunnerSpec:
        """The one artifact's runner of pipeline mode (``--batch`` only when a single batch was given)."""
        return RunnerSpec(device=self.devices[0] if self.devices else None,
                          provider=self.providers[0] if self.providers else None, threads=self.threads,
                          batch=self.batches[0] if len(self.batches) == 1 else None, flip=self.flip)


@dataclass(frozen=True)
class CalibSpec:
    """INT8 calibration crops: the ground-truth person boxes of a COCO keypoint file.

    Attributes:
        ann: COCO keypoint annotation file; images: the folder holding its images; num: how many crops (None: the
            command's default), a seeded selection.
    """

    ann: Path | None = None
    images: Path | None = None
    num: int | None = None

