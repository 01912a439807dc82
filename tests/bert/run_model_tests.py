"""ctest's entry to tests/bert/test_model.py: the real all-MiniLM-L6-v2 against the
tokenizers package, a NumPy float64 BERT and sentence-transformers.

    run_model_tests.py PATH/TO/sattn

Exit 77 (ctest: skipped) with a loud message when numpy, pytest or tokenizers is
missing or the model cannot be fetched, unless CI is set: there that fails."""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def skip(why):
    bar = "*" * 78
    print("%s\n*** bert_model: %s" % (bar, why))
    if os.environ.get("CI"):
        print("*** CI is set: this is a FAILURE, the suite must run in CI\n" + bar)
        return 1
    print("*** the suite did NOT run: reported as skipped\n" + bar)
    return 77


def main():
    missing = [m for m in ("numpy", "pytest", "tokenizers") if importlib.util.find_spec(m) is None]
    if missing:
        return skip("needs %s (%s -m pip install %s)" % (", ".join(missing), sys.executable, " ".join(missing)))
    import model_files
    try:
        os.environ["SATTN_MODEL_DIR"] = model_files.model_dir()
    except RuntimeError as e:
        return skip(str(e))
    os.environ["SATTN_CLI"] = os.path.abspath(sys.argv[1])
    import pytest
    rc = pytest.main([os.path.join(HERE, "test_model.py"), "-q", "-s", "-p", "no:cacheprovider", "-rfEs"]
                     + sys.argv[2:])
    if rc == 5:
        print("*** bert_model: pytest collected no test")
        return 1
    return int(rc)


if __name__ == "__main__":
    sys.exit(main())
