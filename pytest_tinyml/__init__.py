"""pytest-tinyml: decide whether a neural network can be deployed on a microcontroller, and say why not."""

__version__ = "0.1.0"
