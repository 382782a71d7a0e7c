"""TensorRT helpers shared by the engine builder (``engines/``) and the runner (``runners/trt.py``), below both:

* :mod:`.api`: the one place that imports ``tensorrt`` (inside a function) and knows what differs between 10.x/11.x;
* :mod:`.cuda_mem`: the device-memory seam (cuda-python), which tests fill with host memory;
* :mod:`.sidecar`: the one reader of an engine's JSON sidecar.

Nothing here imports ``tensorrt`` or CUDA at import time.
"""
