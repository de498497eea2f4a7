"""The C extensions of recommend's request path (docs/serving.md): the renderer
(src/movierec/_render.c) and the answers' tally (src/movierec/_tally.c); the rest of the build is
in pyproject.toml. Building them needs a C compiler and the Python headers."""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("movierec._render", ["src/movierec/_render.c"]),
    Extension("movierec._tally", ["src/movierec/_tally.c"]),
])
