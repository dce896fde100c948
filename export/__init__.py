"""Checkpoint -> unrolled, self-describing ONNX (FP32/FP16) with a parity gate; TensorRT engines on the target."""
