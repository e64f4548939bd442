"""The compiled inner loops of grouping; everything else is configured in pyproject.toml.

The extension is optional: where no C compiler is found the build goes on without it, and
grouping runs its pure-Python twins (same results; a replay about 1.5 times slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "newswatch.grouping._speedups",
            ["service/newswatch/grouping/_speedups.c"],
            optional=True,
        )
    ]
)
