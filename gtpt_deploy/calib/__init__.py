"""Stage: INT8 calibration on COCO person crops (``calibrate``), recipes (``int8``), ranges and TensorRT legacy
caches (``ranges``), the AP-budgeted layer search (``budget``) and ONNX Runtime's CPU fusion check (``fusion``)."""

from .calibrate import CalibrationResult, calibrate_int8

__all__ = ["CalibrationResult", "calibrate_int8"]
