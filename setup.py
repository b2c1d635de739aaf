"""The one part of the package that pyproject.toml cannot declare stably: the schema's C tally.

The extension is optional: where it cannot be built (no C compiler), the package installs
without it and transforms/schema.py counts in Python, with the same results, more slowly.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("transforms._tally", ["transforms/_tally.c"], optional=True)])
