"""Silero voice activity detection: the shared ONNX model, a streaming detector and the Wyoming server."""
