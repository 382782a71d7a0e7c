"""Triton Python-backend pose model: ONNX Runtime inside. Copied into a repository as ``<name>/1/model.py``.

Self-contained on purpose (numpy + onnxruntime, no gtpt_deploy import) so that it serves on any Triton with a
Python backend: the CPU-only server of the ``nvidia-pytriton`` wheel as well as NVIDIA's containers. Its
``config.pbtxt`` names the ONNX file (``onnx_file``, next to this file) and the device (``device``: cpu / gpu);
tensor names come from the config's input/output entries, which were written from the artifact's metadata.

Every request of one ``execute`` call (the dynamic batcher's batch) runs as one ONNX Runtime call on the
concatenated crops: input float32 (B, 3, H, W) -> simcc_x (B, K, W*split), simcc_y (B, K, H*split).
"""

import json
import os

import numpy as np


class TritonPythonModel:
    """The class name and the three methods are the Python backend's interface."""

    def initialize(self, args):
        import onnxruntime as ort
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = os.path.join(args["model_repository"], args["model_version"])
        providers = ["CPUExecutionProvider"]
        gpu = params.get("device") == "gpu" or args.get("model_instance_kind") == "GPU"
        if gpu:
            # Instance kind GPU: CUDA only (needs onnxruntime-gpu in the server's Python). No CPU entry in the list:
            # ONNX Runtime would fall back to it silently, and a GPU deployment must never run on the CPU unsaid.
            providers = [("CUDAExecutionProvider", {"device_id": int(args.get("model_instance_device_id", 0))})]
        opts = ort.SessionOptions()
        threads = int(params.get("threads", "0") or 0)
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(os.path.join(here, params.get("onnx_file", "model.onnx")),
                                            sess_options=opts, providers=providers)
        if gpu and "CUDAExecutionProvider" not in self.session.get_providers():
            raise pb_utils.TritonModelException(
                f"{args['model_name']} is a KIND_GPU instance but ONNX Runtime {ort.__version__} runs it on "
                f"{self.session.get_providers()} (available: {ort.get_available_providers()}); install "
                f"onnxruntime-gpu in the server's Python, or write the repository with --kind cpu")
        self.input_name = config["input"][0]["name"]
        self.output_names = [o["name"] for o in config["output"]]
        onnx_input = self.session.get_inputs()[0].name
        if onnx_input != self.input_name:
            raise pb_utils.TritonModelException(f"config input '{self.input_name}' is not the ONNX input "
                                                f"'{onnx_input}'; rewrite the repository with gtpt-deploy triton")
        pb_utils.Logger.log_info(f"{args['model_name']}: ONNX Runtime {ort.__version__} "
                                 f"providers {self.session.get_providers()}")

    def execute(self, requests):
        pb = self.pb
        arrays = [pb.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [a.shape[0] for a in arrays]
        batch = np.ascontiguousarray(np.concatenate(arrays) if len(arrays) > 1 else arrays[0], dtype=np.float32)
        try:
            outputs = self.session.run(self.output_names, {self.input_name: batch})
        except Exception as e:  # onnxruntime's own exception types are not importable
            return [pb.InferenceResponse(error=pb.TritonError(f"ONNX Runtime failed on {batch.shape}: {e}"))
                    for _ in requests]
        responses, start = [], 0
        for n in sizes:
            tensors = [pb.Tensor(name, np.ascontiguousarray(o[start:start + n]))
                       for name, o in zip(self.output_names, outputs)]
            responses.append(pb.InferenceResponse(output_tensors=tensors))
            start += n
        return responses

    def finalize(self):
        self.session = None
