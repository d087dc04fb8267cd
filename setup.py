"""Build the Cython core (guard._core) and map bench/ and domains/ into the package.

Metadata lives in pyproject.toml; this file only describes what pyproject cannot:
the compiled extension and the package directories that sit outside guard/.
"""

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "guard._core",
        ["guard/_core.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
        depends=["guard/sha256.h"],  # included by _audit.pxi: rebuild when it changes
    )
]

setup(
    packages=[
        "guard",
        "guard.cli",
        "guard.markings",
        "guard.audit",
        "guard.data",
        "guard.bench",
        "guard.domains",
    ],
    package_dir={"guard.bench": "bench", "guard.domains": "domains"},
    package_data={
        "guard": ["_core.pyx", "*.pxi", "*.h"],
        "guard.data": ["*", "**/*"],
        "guard.domains": ["*.yaml"],  # the simulated domain descriptions
    },
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
        annotate=False,
    ),
    zip_safe=False,
)
