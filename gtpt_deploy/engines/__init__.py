"""Stage: TensorRT engines (the only builder code that imports tensorrt)."""
