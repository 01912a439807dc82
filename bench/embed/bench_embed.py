#!/usr/bin/env python3
"""Sentence-embedding throughput: `sattn embed` (libsattn_bert) against
sentence-transformers on PyTorch's CPU build, in one run, on the same 1000 texts of
mixed lengths (5 to 256 tokens, texts.py), 2 threads each.

    python3 bench/embed/bench_embed.py BUILD_DIR [--reps 5] [--texts 1000] [--threads 2]

Prints, per engine, the median over the repetitions of texts/s and tokens/s, GFLOP/s
and its percentage of this machine's FMA peak (measured by BUILD_DIR/bench/bench
--only peak), and the ratio to sentence-transformers. The sattn time is what
`sattn embed` reports: tokenizing and embedding, without loading the model or reading
the file. sentence-transformers runs model.encode (its own tokenizer, batches of 32
sorted by length, padding within a batch). FLOPs count the work without padding:
per text of n tokens and per layer, 2n(4E^2 + 2EI) for the projections and the
feed-forward, and 4n^2 E for the attention.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "bert"))
from machine import cpu_name, fma_peak  # noqa: E402
import model_files  # noqa: E402
from texts import make_texts  # noqa: E402


def flops(lengths, E=384, I=1536, L=6):
    return sum(L * (2 * n * (4 * E * E + 2 * E * I) + 4 * n * n * E) for n in lengths)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    model = model_files.model_dir()
    cli = os.path.join(a.build, "tools", "sattn")
    texts = make_texts(os.path.join(model, "vocab.txt"), n=a.texts)
    path = os.path.join(a.build, "bench-embed-texts.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")

    from tokenizers import Tokenizer
    tk = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    tk.no_padding()
    tk.enable_truncation(256)
    lengths = [len(e.ids) for e in tk.encode_batch(texts)]
    tokens, work = sum(lengths), flops(lengths)

    bench = os.path.join(a.build, "bench", "bench")
    peak = fma_peak(bench)

    version = subprocess.run([cli, "--version"], capture_output=True, text=True).stdout.strip()
    rows = []

    def sattn_times(env):
        t = []
        for _ in range(a.reps):
            r = subprocess.run([cli, "embed", "--model", model, "--input", path, "-o", "/dev/null",
                                "--threads", str(a.threads), "--batch", str(a.batch)],
                               capture_output=True, text=True, env=env)
            m = re.search(r"in ([\d.]+) s", r.stderr)
            if r.returncode != 0 or not m:
                sys.exit("sattn embed failed: " + r.stderr)
            t.append(float(m.group(1)))
        return t

    def label(v):  # "sattn embed: GEMMs on builtin (avx512), avx512bf16 kernels"
        gemm = v.split("projection GEMMs on ")[1].split("), ")[0] + ")"
        return "sattn embed: %s kernels, GEMMs on %s" % (v.split("(", 1)[1].split(" kernels")[0], gemm)

    env = dict(os.environ)
    rows.append((label(version), sattn_times(env)))
    if env.get("OPENBLAS_CORETYPE"):
        # a core type set in the environment holds for sattn's OpenBLAS too: also without it
        env2 = {k: v for k, v in env.items() if k != "OPENBLAS_CORETYPE"}
        v2 = subprocess.run([cli, "--version"], capture_output=True, text=True, env=env2).stdout.strip()
        rows.append((label(v2) + ", OPENBLAS_CORETYPE unset", sattn_times(env2)))

    import torch
    torch.set_num_threads(a.threads)
    from sentence_transformers import SentenceTransformer
    import sentence_transformers
    st = SentenceTransformer(model, device="cpu")
    st.encode(texts[:64])  # warm-up
    t = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        st.encode(texts, batch_size=32)
        t.append(time.perf_counter() - t0)
    st_row = ("sentence-transformers %s, torch %s" % (sentence_transformers.__version__, torch.__version__), t)
    rows.append(st_row)

    base = statistics.median(st_row[1])
    print("CPU: %s" % cpu_name())
    print("%d texts, %d tokens (%d to %d per text), %.1f GFLOP without padding; %d threads; medians of %d runs"
          % (len(texts), tokens, min(lengths), max(lengths), work * 1e-9, a.threads, a.reps))
    if peak:
        print("FMA peak measured now: %.1f GFLOP/s (%s --only peak)" % (peak, bench))
    print()
    print("%-72s %7s %8s %9s %8s %7s %7s" % ("engine", "s", "texts/s", "tokens/s", "GFLOP/s", "%peak", "ratio"))
    for name, ts in rows:
        s = statistics.median(ts)
        rate = work / s * 1e-9
        print("%-72s %7.2f %8.1f %9.0f %8.1f %6s%% %6.2fx" % (name[:72], s, len(texts) / s, tokens / s, rate,
                                                              "%.1f" % (100 * rate / peak) if peak else "?",
                                                              base / s))


if __name__ == "__main__":
    main()
