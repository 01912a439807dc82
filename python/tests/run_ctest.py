"""ctest's entry to the Python suite: runs pytest on python/tests.

Exit 77 (ctest: skipped) when numpy, ml_dtypes, pytest or torch >= 2.5 is missing, with a
loud message, unless CI is set: there a missing dependency fails the run.
"""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    missing = [m for m in ("numpy", "ml_dtypes", "pytest", "torch") if importlib.util.find_spec(m) is None]
    if not missing:
        import torch
        major, minor = (int(x) for x in torch.__version__.split(".")[:2])
        if (major, minor) < (2, 5):
            missing.append(f"torch >= 2.5 (found {torch.__version__}: it lacks enable_gqa)")
    if missing:
        bar = "*" * 78
        print(f"{bar}\n*** python: the Python conformance suite needs {', '.join(missing)}")
        print(f"*** ({sys.executable}); install them with: {sys.executable} -m pip install "
              "numpy ml_dtypes pytest torch")
        if os.environ.get("CI"):
            print(f"*** CI is set: this is a FAILURE, the suite must run in CI\n{bar}")
            return 1
        print(f"*** the suite did NOT run: reported as skipped\n{bar}")
        return 77
    import pytest
    rc = pytest.main([HERE, "-q", "-p", "no:cacheprovider", "-rfEs"] + sys.argv[1:])
    if rc == 5:  # no test collected: never a pass
        print("*** python: pytest collected no test")
        return 1
    return int(rc)


if __name__ == "__main__":
    sys.exit(main())
