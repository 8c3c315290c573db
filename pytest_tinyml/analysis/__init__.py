"""Everything measured from a ``.tflite`` without TensorFlow.

- :mod:`.model`: ``load_model_bytes``, ``parse_model``, ``load_model`` -> ``ModelInfo`` (ops, tensors,
  quantization, MACs, weight bytes), one-line ``ModelFileError`` on bad files.
- :mod:`.tflm`: host TFLM in a child process (``allocate``, ``invoke``), the 32-bit arena
  (``arena_32bit``) and the op support report (``tflm_op_report``).
- :mod:`.tflm_ops`: the ops TFLM ships, as data.
- :mod:`.flash`: ``estimate_flash`` (model bytes + measured TFLM code sizes).

Submodules are not imported here, so importing the package stays cheap.
"""
