"""Triton Python-backend ``gtpt_pipeline``: encoded image bytes in, per-person keypoints out.

Copied into a repository as ``gtpt_pipeline/1/model.py``. It is the project's own pipeline, not a second copy:
:class:`~gtpt_deploy.runtime.detect.PersonDetector` (the detector ONNX next to this file), the
:class:`~gtpt_deploy.runtime.predictor.Predictor` (image reading, crops, flip test, SimCC decoding) - the code
``gtpt-deploy run`` uses - with a runner that sends the crops to the repository's pose model through Triton's
business-logic scripting (BLS), so pose crops of concurrent pipeline requests share the pose model's dynamic batches.

The server's Python environment must import gtpt_deploy (``pip install --no-deps gtpt-deploy`` there, or start
the server with the checkout on ``PYTHONPATH``) plus numpy, onnxruntime and opencv-python-headless. The Python
backend runs its stub interpreter isolated (``sys.flags.isolated``: PYTHONPATH is ignored), so this file puts the
``PYTHONPATH`` entries on ``sys.path`` itself before importing gtpt_deploy.

Input ``image`` TYPE_STRING (1, 1) per request (batch dim first; the dynamic batcher hands ``execute`` several
requests); outputs for N persons: ``keypoints`` float32 (1, N, K, 3), ``boxes`` float32 (1, N, 4) xywh,
``box_scores`` float32 (1, N).
"""

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from gtpt_deploy.errors import GtptError
from gtpt_deploy.metadata import ModelMeta
from gtpt_deploy.runners.base import Runner


class BlsRunner(Runner):
    """The Runner contract over a Triton pose model, called from inside the server (BLS)."""

    backend = "triton-bls"

    def __init__(self, pb_utils, model: str, meta: ModelMeta, input_name: str, output_names: list) -> None:
        super().__init__(f"triton-bls:{model}")
        self.pb, self.model, self._bls_meta = pb_utils, model, meta
        self.input_name, self.output_names = input_name, list(output_names)

    def _activate(self):
        return self._bls_meta, None

    def _infer(self, batch):
        pb = self.pb
        # CPU outputs asked for: a pose model on a GPU instance (tensorrt_plan, ONNX Runtime on CUDA) would otherwise
        # hand back GPU tensors, and as_numpy() refuses those ("Tensor is stored in GPU and cannot be converted to
        # NumPy", python_backend src/pb_tensor.cc PbTensor::AsNumpy).
        request = pb.InferenceRequest(model_name=self.model, requested_output_names=self.output_names,
                                      inputs=[pb.Tensor(self.input_name, batch)],
                                      preferred_memory=pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0))
        response = request.exec()
        if response.has_error():
            raise GtptError(f"pose model {self.model} failed: {response.error().message()}")
        x, y = (host_array(pb.get_output_tensor_by_name(response, n), n) for n in self.output_names)
        return x, y


def host_array(tensor, name: str) -> np.ndarray:
    """A BLS output tensor as a numpy array of its own (a copy).

    CPU tensors: ``as_numpy()`` views the response's shared memory, which the next request may reuse - hence the
    copy. A tensor still on the GPU (preferred_memory is a preference) never goes through ``as_numpy()``: it is
    read through DLPack with torch when the server's Python has it, else refused with a one-line reason.
    """
    if tensor.is_cpu():
        return np.array(tensor.as_numpy())
    try:
        import torch
    except ImportError:
        raise GtptError(f"pose output '{name}' came back in GPU memory and this server's Python has no torch to "
                        f"read it through DLPack; install torch there or serve the pose model on CPU") from None
    return torch.from_dlpack(tensor.to_dlpack()).cpu().numpy().copy()


class TritonPythonModel:
    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        from gtpt_deploy.runtime.detect import PersonDetector
        from gtpt_deploy.runtime.predictor import Predictor

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        p = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = Path(args["model_repository"]) / args["model_version"]
        meta = ModelMeta.from_dict(json.loads((here / p["meta_file"]).read_text()), source=p["meta_file"])
        self.detector = PersonDetector(here / p["detector_file"], score_thr=float(p.get("box_thr", 0.3)))
        self.runner = BlsRunner(pb_utils, p["pose_model"], meta, p["pose_input"], p["pose_outputs"].split(","))
        self.runner.activate()
        self.predictor = Predictor(self.runner, flip=p.get("flip", "true") == "true", batch=int(p["batch"]))
        # Predictor reads files (load_image, the one image reader): each request's bytes go to a private temp dir.
        self._tmp = tempfile.TemporaryDirectory(prefix="gtpt_pipeline_")

    def execute(self, requests):
        """The dynamic batcher's requests, one image each: one detector + pose pass over all their images."""
        pb = self.pb
        paths, responses = [], [None] * len(requests)
        for i, r in enumerate(requests):
            data = pb.get_input_tensor_by_name(r, "image").as_numpy().reshape(-1)
            if len(data) != 1:  # the persons of several images cannot share one response's batch dimension
                responses[i] = pb.InferenceResponse(error=pb.TritonError(
                    f"expected one image per request (shape [1, 1]), got {len(data)}; send concurrent requests "
                    f"instead - the server batches them"))
                continue
            path = Path(self._tmp.name) / f"request_{i}"
            path.write_bytes(bytes(data[0]))
            paths.append((i, path))
        try:  # all images of this call go through one predict(): their crops share the pose batches
            results = list(self.predictor.predict([path for _, path in paths], self.detector))
        except GtptError as e:
            return [pb.InferenceResponse(error=pb.TritonError(str(e))) for _ in requests]
        finally:
            for _, path in paths:
                path.unlink(missing_ok=True)
        for (i, path), result in zip(paths, results):
            if not hasattr(result, "keypoints"):  # ImageFailure: undecodable bytes
                responses[i] = pb.InferenceResponse(error=pb.TritonError(result.error.replace(str(path), "image")))
                continue
            # batch dim first (max_batch_size > 0): each request holds one image -> (1, N, ...)
            tensors = [pb.Tensor("keypoints", result.keypoints.astype(np.float32)[None]),
                       pb.Tensor("boxes", np.asarray(result.boxes, np.float32).reshape(1, -1, 4)),
                       pb.Tensor("box_scores", np.asarray(result.box_scores, np.float32).reshape(1, -1))]
            responses[i] = pb.InferenceResponse(output_tensors=tensors)
        return responses

    def finalize(self):
        self.runner.deactivate()
        self._tmp.cleanup()
