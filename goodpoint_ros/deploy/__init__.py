"""Deployment: ONNX export and int8 quantisation, the accuracy gate, FLOP count, benchmarks.

May import :mod:`goodpoint_ros.core` and :mod:`goodpoint_ros.backends`; torch and onnx lazily
(optional heavy dependencies). Never ``ros``, ``evaluation`` or ``cli``.
"""
