"""The one C extension, recommend's renderer (src/movierec/_render.c, docs/serving.md); the rest
of the build is in pyproject.toml. Building it needs a C compiler and the Python headers."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("movierec._render", ["src/movierec/_render.c"])])
