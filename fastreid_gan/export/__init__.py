"""Deployable exports of any method's test-time model (``tools/export.py``, ``docs/export.md``).

:mod:`.onnx_export`: the eval forward as an ONNX file (dynamic batch, 0..255 RGB in, the eval feature out),
checked with onnxruntime against the torch model.  Importing this package needs neither onnx nor onnxruntime
(the ``export`` extra); the functions that use them say how to install them.
"""
from .onnx_export import (
    DEFAULT_TOLERANCE,
    ONNX_OPSET,
    ExportError,
    OnnxCheck,
    check_onnx_model,
    export_model_to_onnx,
    export_onnx,
    max_relative_error,
    onnx_features,
    onnx_session,
    sample_test_images,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "ONNX_OPSET",
    "ExportError",
    "OnnxCheck",
    "check_onnx_model",
    "export_model_to_onnx",
    "export_onnx",
    "max_relative_error",
    "onnx_features",
    "onnx_session",
    "sample_test_images",
]
