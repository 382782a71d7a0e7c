"""Stage: INT8 calibration on COCO person crops (``calibrate``), recipes (``int8``), ranges and TensorRT legacy
caches (``ranges``), the AP-budgeted layer search (``budget``) judged on a bootstrap bound of ΔAP (``noise``) and
ONNX Runtime's CPU fusion check (``fusion``)."""

from .calibrate import CalibrateOptions, CalibrationResult, calibrate_int8

__all__ = ["CalibrateOptions", "CalibrationResult", "calibrate_int8"]
