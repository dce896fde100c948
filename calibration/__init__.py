"""INT8 by explicit quantization (Q/DQ) for ONNX Runtime CPUs and TensorRT, with an accuracy guard."""
