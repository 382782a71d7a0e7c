"""Triton Python-backend pose model: ONNX Runtime (or OpenVINO) inside. Copied into a repository as
``<name>/1/model.py``.

Self-contained on purpose (numpy + onnxruntime or openvino, no gtpt_deploy import) so that it serves on any Triton
with a Python backend: the CPU-only server of the ``nvidia-pytriton`` wheel as well as NVIDIA's containers. Its
``config.pbtxt`` names the ONNX file (``onnx_file``, next to this file), the device (``device``: cpu / gpu) and the
runtime (``runtime``: onnxruntime / openvino, with ``inference_precision`` f32 / bf16 for OpenVINO); tensor names
come from the config's input/output entries, which were written from the artifact's metadata.

Every request of one ``execute`` call (the dynamic batcher's batch) runs as one inference on the concatenated
crops: input float32 (B, 3, H, W) -> simcc_x (B, K, W*split), simcc_y (B, K, H*split).
"""

import json
import os

import numpy as np


class TritonPythonModel:
    """The class name and the three methods are the Python backend's interface."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "model.onnx"))
        gpu = params.get("device") == "gpu" or args.get("model_instance_kind") == "GPU"
        threads = int(params.get("threads", "0") or 0)
        self.input_name = config["input"][0]["name"]
        self.output_names = [o["name"] for o in config["output"]]
        runtime = params.get("runtime", "onnxruntime")
        if runtime == "openvino":
            self._run, inputs, info = self._openvino(path, gpu, threads, params.get("inference_precision", "f32"),
                                                     args)
        elif runtime == "onnxruntime":
            self._run, inputs, info = self._onnxruntime(path, gpu, threads, args)
        else:
            raise pb_utils.TritonModelException(f"runtime '{runtime}' is not onnxruntime or openvino; rewrite the "
                                                f"repository with gtpt-deploy triton")
        if inputs[0] != self.input_name:
            raise pb_utils.TritonModelException(f"config input '{self.input_name}' is not the ONNX input "
                                                f"'{inputs[0]}'; rewrite the repository with gtpt-deploy triton")
        pb_utils.Logger.log_info(f"{args['model_name']}: {info}")

    def _onnxruntime(self, path, gpu, threads, args):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if gpu:
            # Instance kind GPU: CUDA only (needs onnxruntime-gpu in the server's Python). No CPU entry in the list:
            # ONNX Runtime would fall back to it silently, and a GPU deployment must never run on the CPU unsaid.
            providers = [("CUDAExecutionProvider", {"device_id": int(args.get("model_instance_device_id", 0))})]
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, sess_options=opts, providers=providers)
        if gpu and "CUDAExecutionProvider" not in self.session.get_providers():
            raise self.pb.TritonModelException(
                f"{args['model_name']} is a KIND_GPU instance but ONNX Runtime {ort.__version__} runs it on "
                f"{self.session.get_providers()} (available: {ort.get_available_providers()}); install "
                f"onnxruntime-gpu in the server's Python, or write the repository with --kind cpu")
        session = self.session
        return (lambda batch: session.run(self.output_names, {self.input_name: batch}),
                [i.name for i in session.get_inputs()],
                f"ONNX Runtime {ort.__version__} providers {session.get_providers()}")

    def _openvino(self, path, gpu, threads, precision, args):
        import openvino as ov

        if gpu:  # this model compiles for OpenVINO's CPU plugin only: a GPU instance would silently run on the CPU
            raise self.pb.TritonModelException(f"{args['model_name']}: the OpenVINO runtime of this model runs on "
                                               f"the CPU; write the repository with --kind cpu")
        core = ov.Core()
        supported = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "bf16" and "BF16" not in supported:
            raise self.pb.TritonModelException(f"{args['model_name']}: inference_precision bf16 asked, but this "
                                               f"CPU's OpenVINO capabilities are {supported}; use f32")
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.session = core.compile_model(path, "CPU", config)
        request = self.session.create_infer_request()
        outputs = [self.session.output(n) for n in self.output_names]

        def run(batch):
            result = request.infer({self.input_name: batch})
            return [np.array(result[o]) for o in outputs]  # copies: the request reuses its output buffers

        return (run, [i.get_any_name() for i in self.session.inputs],
                f"OpenVINO {ov.__version__} CPU, inference precision {precision}")

    def execute(self, requests):
        pb = self.pb
        arrays = [pb.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [a.shape[0] for a in arrays]
        batch = np.ascontiguousarray(np.concatenate(arrays) if len(arrays) > 1 else arrays[0], dtype=np.float32)
        try:
            outputs = self._run(batch)
        except Exception as e:  # the runtimes' own exception types are not all importable
            return [pb.InferenceResponse(error=pb.TritonError(f"inference failed on {batch.shape}: {e}"))
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
        self._run = None
