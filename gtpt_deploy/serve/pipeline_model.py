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

Input ``image`` TYPE_STRING (1,); outputs for N persons: ``keypoints`` float32 (N, K, 3), ``boxes`` float32 (N, 4)
xywh, ``box_scores`` float32 (N,).
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
        request = pb.InferenceRequest(model_name=self.model, requested_output_names=self.output_names,
                                      inputs=[pb.Tensor(self.input_name, batch)])
        response = request.exec()
        if response.has_error():
            raise GtptError(f"pose model {self.model} failed: {response.error().message()}")
        # copies: as_numpy() views the response's shared memory, which the next request may reuse
        x, y = (np.array(pb.get_output_tensor_by_name(response, n).as_numpy()) for n in self.output_names)
        return x, y


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
        pb = self.pb
        paths = []
        for i, r in enumerate(requests):
            data = pb.get_input_tensor_by_name(r, "image").as_numpy().reshape(-1)[0]
            path = Path(self._tmp.name) / f"request_{i}"
            path.write_bytes(bytes(data))
            paths.append(path)
        responses = []
        try:  # all images of this call go through one predict(): their crops share the pose batches
            results = list(self.predictor.predict(paths, self.detector))
        except GtptError as e:
            return [pb.InferenceResponse(error=pb.TritonError(str(e))) for _ in requests]
        finally:
            for path in paths:
                path.unlink(missing_ok=True)
        for result in results:
            if not hasattr(result, "keypoints"):  # ImageFailure: undecodable bytes
                responses.append(pb.InferenceResponse(error=pb.TritonError(result.error.replace(
                    str(result.path), "image"))))
                continue
            tensors = [pb.Tensor("keypoints", result.keypoints.astype(np.float32)),
                       pb.Tensor("boxes", np.asarray(result.boxes, np.float32).reshape(-1, 4)),
                       pb.Tensor("box_scores", np.asarray(result.box_scores, np.float32).reshape(-1))]
            responses.append(pb.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self):
        self.runner.deactivate()
        self._tmp.cleanup()
