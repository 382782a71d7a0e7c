"""Stage: INT8 calibration (person crops from COCO files -> Q/DQ ONNX, activation ranges, legacy caches)."""
