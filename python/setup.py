"""Builds libsattn with CMake from the repository this directory belongs to, and bundles
it inside the package: `pip install ./python` from a checkout of the repository."""
import glob
import os
import re
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HEADER = os.path.join(ROOT, "include", "sattn.h")


def version():
    if not os.path.isfile(HEADER):
        raise RuntimeError(f"sattn: {HEADER} not found: the package builds from a checkout of the "
                           "sattn repository (pip install ./python from its root)")
    text = open(HEADER, encoding="utf-8").read()
    parts = [re.search(rf"#define SATTN_VERSION_{p}\s+(\d+)", text).group(1)
             for p in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts)


class build_py_with_library(build_py):
    """build_py, then libsattn: CMake on the repository root with only the library."""

    def run(self):
        super().run()
        lib = self.build_library()
        dest = os.path.join(self.build_lib, "sattn")
        os.makedirs(dest, exist_ok=True)
        self.copy_file(lib, os.path.join(dest, "libsattn.so"))

    def build_library(self):
        cmake = shutil.which("cmake")
        if cmake is None:
            raise RuntimeError("sattn: building libsattn needs CMake >= 3.16 on PATH")
        build_temp = self.get_finalized_command("build").build_temp
        build = os.path.abspath(os.path.join(build_temp, "libsattn"))
        cache = os.path.join(build, "CMakeCache.txt")
        if os.path.isfile(cache):  # a build directory left by a checkout elsewhere: start anew
            home = re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$", open(cache).read(), re.M)
            if not home or os.path.realpath(home.group(1)) != os.path.realpath(ROOT):
                shutil.rmtree(build)
        args = [cmake, "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                "-DSATTN_BUILD_TESTS=OFF", "-DSATTN_BUILD_BENCH=OFF", "-DSATTN_BUILD_TOOLS=OFF",
                "-DSATTN_BUILD_EXAMPLES=OFF", "-DSATTN_WERROR=OFF"]
        args += os.environ.get("SATTN_CMAKE_ARGS", "").split()
        subprocess.check_call(args)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 1)
        subprocess.check_call([cmake, "--build", build, "--target", "sattn", "-j", jobs])
        found = [f for f in glob.glob(os.path.join(build, "libsattn.so*"))
                 if os.path.isfile(f) and not os.path.islink(f)]
        if not found:
            raise RuntimeError(f"sattn: the CMake build left no libsattn.so in {build}")
        return found[0]


class BinaryDistribution(Distribution):
    """The wheel holds a shared library: platform-specific, not pure Python."""

    def has_ext_modules(self):
        return True


setup(version=version(), cmdclass={"build_py": build_py_with_library},
      distclass=BinaryDistribution)
