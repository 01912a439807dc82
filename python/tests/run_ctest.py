"""ctest's entry to the Python suite: runs pytest on python/tests (with --models, only
test_transformers.py, the tests on real models: ctest python_models).

Exit 77 (ctest: skipped) when numpy, ml_dtypes, pytest or torch >= 2.5 is missing, with a
loud message, unless CI is set: there a missing dependency fails the run.
"""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


class _Skips:
    """Counts the tests pytest skipped."""

    def __init__(self):
        self.skipped = 0

    def pytest_runtest_logreport(self, report):
        if report.skipped:
            self.skipped += 1


def main():
    want = ("numpy", "ml_dtypes", "pytest", "torch")
    if "--models" in sys.argv:
        want += ("transformers", "tokenizers", "gguf", "accelerate")
    missing = [m for m in want if importlib.util.find_spec(m) is None]
    if not missing:
        import torch
        major, minor = (int(x) for x in torch.__version__.split(".")[:2])
        if (major, minor) < (2, 5):
            missing.append(f"torch >= 2.5 (found {torch.__version__}: it lacks enable_gqa)")
    if missing:
        bar = "*" * 78
        print(f"{bar}\n*** python: the Python conformance suite needs {', '.join(missing)}")
        print(f"*** ({sys.executable}); install them with: {sys.executable} -m pip install "
              f"{' '.join(m.split()[0] for m in missing)}")
        if os.environ.get("CI"):
            print(f"*** CI is set: this is a FAILURE, the suite must run in CI\n{bar}")
            return 1
        print(f"*** the suite did NOT run: reported as skipped\n{bar}")
        return 77
    import pytest
    # "--models": only the tests on real models (ctest python_models), else all but them
    models = os.path.join(HERE, "test_transformers.py")
    args = sys.argv[1:]
    if "--models" in args:
        args.remove("--models")
        target = [models]
    else:
        target = [HERE, "--ignore=" + models]
    counter = _Skips()
    rc = pytest.main(target + ["-q", "-p", "no:cacheprovider", "-rfEs"] + args, plugins=[counter])
    if rc == 0 and counter.skipped:  # a skipped test is never a pass: ctest shows it skipped
        print(f"*** python: {counter.skipped} test(s) did NOT run (skipped; reasons above): reported as skipped")
        return 1 if os.environ.get("CI") else 77
    if rc == 5:  # no test collected: never a pass
        print("*** python: pytest collected no test")
        return 1
    return int(rc)


if __name__ == "__main__":
    sys.exit(main())
