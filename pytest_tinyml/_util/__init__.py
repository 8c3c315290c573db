"""Small internal utilities, one of each: JSON-safe conversion, process supervision, bounded verified
download, ``module:function`` import, duration formatting, and the file primitives caches share.

Nothing here imports a module of the project above :mod:`pytest_tinyml.options`, :mod:`pytest_tinyml.kinds`
and :mod:`pytest_tinyml.errors`.
"""
