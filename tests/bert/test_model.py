"""all-MiniLM-L6-v2 through `sattn embed` (libsattn_bert) against independent oracles:
the `tokenizers` package for the token ids, a NumPy float64 BERT (numpy_bert.py) and
sentence-transformers (where installed) for the embeddings.

Tolerances: embeddings within 1e-5 per component (max abs) of the float64 reference:
the encoder runs in f32 (six layers, GEMMs of 384 and 1536 terms), whose rounding
measured here stays below 1e-6 on unit-norm embeddings, so 1e-5 fails a wrong
operation (a GELU of the tanh form is ~1e-4 off) without flaking. Batching: 1e-6
(the GEMMs block a larger batch differently; results differ in the last bits).
Thread counts: the same bits."""
import os
import random
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from numpy_bert import Bert  # noqa: E402

CLI = os.environ["SATTN_CLI"]
MODEL = os.environ["SATTN_MODEL_DIR"]


def run(args, input=None):
    return subprocess.run([CLI, "embed", "--model", MODEL] + args, input=input, capture_output=True)


def embed(lines, tmp_path, extra=(), name="e.npy"):
    src = tmp_path / ("in-" + name + ".txt")
    src.write_bytes(b"".join(l.encode("utf-8", "surrogatepass") + b"\n" for l in lines))
    out = tmp_path / name
    r = run(["--input", str(src), "-o", str(out), "-q"] + list(extra))
    assert r.returncode == 0, r.stderr.decode()
    return np.load(out)


def cli_tokens(lines, tmp_path):
    src = tmp_path / "tok.txt"
    src.write_bytes(b"".join(l.encode("utf-8") + b"\n" for l in lines))
    r = run(["--input", str(src), "--tokens"])
    assert r.returncode == 0, r.stderr.decode()
    rows = r.stdout.decode("utf-8").split("\n")[:-1]
    assert len(rows) == len(lines)
    return [[int(t.rsplit(":", 1)[1]) for t in row.split(" ")] for row in rows]


@pytest.fixture(scope="module")
def hf():
    from tokenizers import Tokenizer
    tk = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    tk.no_padding()
    tk.enable_truncation(256)  # sentence-transformers' max_seq_length
    return tk


FIXED = [
    "Hello, world!", "The quick brown fox jumps over the lazy dog.", "",
    "naïve café résumé Ångström Øresund ﬁsh Straße", "İstanbul ΣΊΣΥΦΟΣ ςσ",   # accents, ligature, Turkish İ, Greek
    "Привет, мир! Ёлка", "Γειά σου Κόσμε", "東京タワーは日本の中文한국어", "𠀋𡈽𤭢 CJK extension B",  # Cyrillic, CJK
    "emoji 😀👍🏽👨‍👩‍👧 ❤️ 🇫🇷", "tab\there\rcr\x0bvt\x0cff\x85nel\u2028ls\u00a0nbsp\u3000ideo",  # whitespace kinds
    "zero\u200bwidth\ufeffbom\u00adsoft\u202eRLO\x00nul\x01soh\x7fdel\ufffdrepl",                 # controls, format
    "https://example.com/path?q=1&x=y#frag user@mail.org", "C++ & C# -> $100 (50%) ~/a|b <tag>",    # URLs, symbols
    "a" * 99, "a" * 100, "a" * 101, "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,            # long words
    "unaffable unbelievably antidisestablishmentarianism", "[CLS] inside [SEP] text [MASK] [PAD] [UNK] [cls]",
    "x" + "\u0301" * 50 + "y", "\u0f73\u0f75 \u1d165\u1d16d mark order", "ǅ ǈ ǋ ǲ Ⅻ ⅻ ①",         # marks, titlecase
    " ".join(["word"] * 300),                                                                         # truncated
]


def random_strings(n, seed=20261202):
    rng = random.Random(seed)
    pools = [
        (0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x300, 0x36F), (0x4E00, 0x9FFF),
        (0x3040, 0x30FF), (0xAC00, 0xD7A3), (0x1F300, 0x1FAFF), (0x0, 0x1F), (0x2000, 0x206F), (0x600, 0x6FF),
        (0x900, 0x97F), (0xE000, 0xF8FF), (0x20000, 0x2A6DF), (0x0, 0x10FFFF),
    ]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(0, 40)):
            lo, hi = rng.choice(pools)
            c = rng.randint(lo, hi)
            if 0xD800 <= c <= 0xDFFF or c == 0x0A:
                c = 0x20
            chars.append(chr(c))
        out.append("".join(chars))
    return out


def test_tokens_fixed_set(hf, tmp_path):
    want = [e.ids for e in hf.encode_batch(FIXED)]
    got = cli_tokens(FIXED, tmp_path)
    bad = [(s[:40], g, w) for s, g, w in zip(FIXED, got, want) if g != w]
    assert not bad, bad[:3]


def test_tokens_2000_random_strings(hf, tmp_path):
    texts = random_strings(2000)
    want = [e.ids for e in hf.encode_batch(texts)]
    got = cli_tokens(texts, tmp_path)
    agree = sum(g == w for g, w in zip(got, want))
    print("tokenizer agreement on random strings: %d of %d" % (agree, len(texts)))
    bad = [(repr(t[:30]), g, w) for t, g, w in zip(texts, got, want) if g != w]
    assert not bad, bad[:3]


def test_tokens_every_code_point(hf, tmp_path):
    """Each code point alone and inside a word: removed, a space, punctuation or a letter
    exactly as tokenizers classifies it (its old Unicode tables included)."""
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and c != 0x0A]
    texts = [chr(c) + " x" + chr(c) + "x" for c in cps]
    want = [e.ids for e in hf.encode_batch(texts)]
    got = cli_tokens(texts, tmp_path)
    bad = ["U+%04X" % c for c, g, w in zip(cps, got, want) if g != w]
    print("code points that agree: %d of %d" % (len(cps) - len(bad), len(cps)))
    assert not bad, bad[:20]


@pytest.fixture(scope="module")
def ref():
    return Bert(MODEL)


def test_embeddings_vs_numpy_float64(hf, ref, tmp_path):
    texts = FIXED[:12] + [FIXED[-1], "A man is eating food.", "A man is riding a horse."]
    got = embed(texts, tmp_path)
    want = np.stack([ref.embed(hf.encode(t).ids) for t in texts])
    err = np.abs(got - want).max()
    print("max |sattn - numpy float64| = %.3g over %d texts" % (err, len(texts)))
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    assert err <= 1e-5


def test_embeddings_vs_sentence_transformers(tmp_path):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("sentence-transformers is not installed: CI must install it")
        pytest.skip("sentence-transformers is not installed: that comparison did NOT run")
    m = SentenceTransformer(MODEL, device="cpu")
    texts = FIXED + random_strings(50, seed=5)
    got = embed(texts, tmp_path)
    want = m.encode(texts, convert_to_numpy=True, batch_size=16)
    err = np.abs(got - want).max()
    print("max |sattn - sentence-transformers| = %.3g over %d texts" % (err, len(texts)))
    assert err <= 1e-5


def test_batching_and_threads(tmp_path):
    texts = random_strings(40, seed=9) + FIXED
    a = embed(texts, tmp_path, ["--batch", "64"], "a.npy")
    b = embed(texts, tmp_path, ["--batch", "1"], "b.npy")
    c = embed(texts, tmp_path, ["--batch", "7", "--threads", "1"], "c.npy")
    d = embed(texts, tmp_path, ["--batch", "7", "--threads", "2"], "d.npy")
    assert np.abs(a - b).max() <= 1e-6, np.abs(a - b).max()
    assert np.array_equal(c, d)


def test_stdin_file_lines(tmp_path):
    data = "first line\n\nthird, after an empty one\nno newline at the end".encode()
    src = tmp_path / "in.txt"
    src.write_bytes(data)
    r1 = run(["--input", str(src), "-o", str(tmp_path / "f.npy"), "-q"])
    r2 = run(["--input", "-", "-o", str(tmp_path / "s.npy"), "-q"], input=data)
    assert r1.returncode == 0 and r2.returncode == 0, (r1.stderr, r2.stderr)
    f, s = np.load(tmp_path / "f.npy"), np.load(tmp_path / "s.npy")
    assert f.shape == (4, 384) and np.array_equal(f, s)
    # the final newline starts no line; the empty line is the empty text's embedding
    src.write_bytes(data + b"\n")
    run(["--input", str(src), "-o", str(tmp_path / "g.npy"), "-q"])
    g = np.load(tmp_path / "g.npy")
    e = embed([""], tmp_path, name="empty.npy")
    assert g.shape == (4, 384) and np.array_equal(g, f)
    assert np.abs(f[1] - e[0]).max() <= 1e-6


def test_truncated_model_gives_a_clear_error_and_no_output(tmp_path):
    bad = tmp_path / "model"
    bad.mkdir()
    for name in os.listdir(MODEL):
        src = os.path.join(MODEL, name)
        if os.path.isfile(src) and name != "model.safetensors":
            (bad / name).write_bytes(open(src, "rb").read())
    raw = open(os.path.join(MODEL, "model.safetensors"), "rb").read()
    (bad / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    out = tmp_path / "out.npy"
    r = subprocess.run([CLI, "embed", "--model", str(bad), "--input", str(src), "-o", str(out)], capture_output=True)
    msg = r.stderr.decode()
    assert r.returncode == 3 and "model.safetensors" in msg and "truncated" in msg, (r.returncode, msg)
    assert not [p for p in os.listdir(tmp_path) if p.startswith("out")]  # nor a temporary file
    # an existing output file is left as it was
    out.write_bytes(b"keep")
    r = subprocess.run([CLI, "embed", "--model", str(bad), "--input", str(src), "-o", str(out)], capture_output=True)
    assert r.returncode == 3 and out.read_bytes() == b"keep"
