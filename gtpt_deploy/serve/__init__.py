"""Serving with NVIDIA Triton Inference Server: model repositories written from the artifact's own metadata.

* :mod:`.config` builds every ``config.pbtxt`` as a ``inference.ModelConfig`` protobuf message (tritonclient's
  ``model_config_pb2``), checks it against the rules Triton and its backends enforce at load time
  (:func:`.config.check`) and parses the text back before it is written;
* :mod:`.repository` writes ``<repo>/<name>/config.pbtxt`` + ``<repo>/<name>/1/model.*``; :mod:`.commit` puts the
  finished repository in place (an earlier one is replaced only as far as its manifest ``.gtpt-triton.json`` lists);
* :mod:`.python_model` / :mod:`.pipeline_model` are the Python-backend models copied into a repository as
  ``1/model.py`` (the pose model needs numpy + onnxruntime only; the pipeline imports gtpt_deploy);
* :mod:`.server` starts the ``tritonserver`` that the ``nvidia-pytriton`` wheel bundles (CPU-only, Python backend)
  on 127.0.0.1 and stops it again; :mod:`.launch` is ``gtpt-deploy serve`` (that server for CPU Python-backend
  repositories, NVIDIA's container command for the others).

The client side is :class:`gtpt_deploy.runners.triton.TritonRunner` (``create_runner("triton://HOST:PORT/NAME")``).
No torch import; tritonclient only inside the functions that need it.
"""
