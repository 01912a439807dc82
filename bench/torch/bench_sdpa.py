#!/usr/bin/env python3
"""sattn against what a PyTorch user would pick instead, in one run: PyTorch's own CPU
flash kernel (scaled_dot_product_attention under SDPBackend.FLASH_ATTENTION) and an
unfused attention on OpenBLAS (NumPy's matmul: Q·Kᵀ, a softmax, P·V). f32, B = 1,
H = 8, d = 64 and 128, N = 512 .. 4096, non-causal and causal, forward and backward
(PyTorch's autograd from the saved forward; sattn's backward from its saved lse), 2
threads for all three. The OpenBLAS rounds run first (its threads spin after each call
and would take the others' cores); then each round runs sattn and PyTorch in turn,
three times each (the first, after the switch, discarded); the table gives medians of
--reps rounds (each block after a pause of 0.25 s, as if it ran alone), GFLOP/s, % of this machine's FMA peak (measured by
`bench --only peak` at the start and the end of the run, the higher taken) and sattn's
speedup over each.

    SATTN_LIBRARY=build/libsattn.so PYTHONPATH=python python3 bench/torch/bench_sdpa.py \
        --bench build/bench/bench --plot sdpa.png

FLOPs: forward 4·B·H·N²·d (causal: only the unmasked pairs, N(N+1)/2), backward 2.5x.

--dtype bf16: the inputs stored as bfloat16 for sattn and PyTorch (the OpenBLAS baseline
stays f32); sattn's forward with its opt-in bf16 products where the CPU runs them
(sattn.products_run("bf16")), its backward as always in f32 arithmetic. The percentages
stay those of the f32 FMA peak.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import sattn
import sattn.torch as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from machine import cpu_name, fma_peak  # noqa: E402


def measure_peak(bench):
    peak = fma_peak(bench)
    if peak is None:
        sys.exit(f"{bench} --only peak measured no FMA peak (is bench built?)")
    return peak


def numpy_forward(q, k, v, causal):
    """Unfused attention on OpenBLAS (NumPy's matmul): per head S = scale Q Kᵀ, softmax, P V."""
    d = q.shape[-1]
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * np.float32(1.0 / np.sqrt(d))
    if causal:
        n = s.shape[-1]
        s = np.where(np.tril(np.ones((n, n), dtype=bool)), s, np.float32(-np.inf))
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    s /= s.sum(axis=-1, keepdims=True)
    return np.matmul(s, v), s


def numpy_backward(q, k, v, p, dout, causal):
    d = q.shape[-1]
    scale = np.float32(1.0 / np.sqrt(d))
    dv = np.matmul(np.swapaxes(p, -1, -2), dout)
    dp = np.matmul(dout, np.swapaxes(v, -1, -2))
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = np.matmul(ds, k) * scale
    dk = np.matmul(np.swapaxes(ds, -1, -2), q) * scale
    return dq, dk, dv


def timed(fn, runs=3):
    """The best of the last runs - 1 of fn: the first run after another implementation
    pays for the switch (PyTorch's OpenMP threads and sattn's spin a while after their
    parallel regions, each in its own runtime, and would steal the other's cores)."""
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts[1:])


PAUSE = 0.25  # seconds before each block of one implementation's calls


def run_case(n, d, causal, reps, heads=8, bf16=False):
    g = torch.Generator().manual_seed(n * 131 + d)
    q, k, v, dout = (torch.randn(1, heads, n, d, generator=g) for _ in range(4))
    if bf16:  # the baseline and the reference see the same (rounded) values
        q, k, v, dout = (t.to(torch.bfloat16) for t in (q, k, v, dout))
    qn, kn, vn, dn = (t.float().numpy() for t in (q, k, v, dout))
    qr, kr, vr = (t.clone().requires_grad_(True) for t in (q, k, v))

    def torch_fwd():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(qr, kr, vr, is_causal=causal)

    if bf16:
        qb, kb, vb = (t.detach().view(torch.int16).numpy().view(sattn_bfloat16()) for t in (q, k, v))
        products = "bf16" if sattn.products_run("bf16") else "f32"

        def sattn_fwd():
            return sattn.attention(qb, kb, vb, layout="bhsd", causal="top_left" if causal else None,
                                   products=products)
    else:
        def sattn_fwd():
            return st.scaled_dot_product_attention(qr, kr, vr, is_causal=causal)

    def as_np(x):
        return x.detach().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)

    # correctness first: the three agree before anything is timed (bf16: within the
    # rounding of a stored bf16 out, and of the weights with bf16 products)
    ref, p = numpy_forward(qn, kn, vn, causal)
    for name, fn in (("torch", torch_fwd), ("sattn", sattn_fwd)):
        err = float(np.abs(as_np(fn()) - ref).max())
        if err > (2e-2 if bf16 else 1e-4):
            sys.exit(f"{name} forward differs from the unfused one by {err:.2e} (N={n}, d={d}, causal={causal})")
    sattn_out = st.scaled_dot_product_attention(qr, kr, vr, is_causal=causal)  # for sattn's backward

    out_t, out_s = torch_fwd(), sattn_out
    fwd = {"sattn": [], "pytorch": [], "openblas": []}
    bwd = {"sattn": [], "pytorch": [], "openblas": []}
    # NumPy's OpenBLAS keeps its threads spinning for a while after each call (its own
    # pthreads, not OpenMP): it runs first, alone, and has time to go idle before the rest
    for _ in range(reps):
        fwd["openblas"].append(timed(lambda: numpy_forward(qn, kn, vn, causal)))
        bwd["openblas"].append(timed(lambda: numpy_backward(qn, kn, vn, p, dn, causal)))
    # each block of sattn or PyTorch calls starts after a pause, as if it ran alone: a
    # pool's threads still busy from the other would otherwise take its cores, and sattn,
    # finding its threads kept from their cores, runs on one thread for 0.2 s and more
    # (its rule for a busy machine: BENCHMARKS.md, "On a shared machine")
    for _ in range(reps):
        for impl, fn in (("sattn", sattn_fwd), ("pytorch", torch_fwd)):
            time.sleep(PAUSE)
            fwd[impl].append(timed(fn))
        for impl, out in (("sattn", out_s), ("pytorch", out_t)):
            time.sleep(PAUSE)
            bwd[impl].append(timed(lambda: torch.autograd.grad(out, (qr, kr, vr), dout, retain_graph=True)))
    pairs = n * (n + 1) / 2 if causal else n * n
    flops = 4.0 * heads * pairs * d
    return ({k_: statistics.median(t) for k_, t in fwd.items()}, {k_: statistics.median(t) for k_, t in bwd.items()},
            flops)


def sattn_bfloat16():
    from sattn._arrays import bfloat16
    if bfloat16 is None:
        sys.exit("--dtype bf16 needs ml_dtypes")
    return bfloat16


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="build/bench/bench", help="the C benchmark, for the FMA peak")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--sizes", default="512,1024,2048,4096")
    ap.add_argument("--plot", help="write a PNG of GFLOP/s against N (needs matplotlib)")
    ap.add_argument("--dtype", choices=("f32", "bf16"), default="f32", help="storage of q, k, v (see above)")
    args = ap.parse_args()
    bf16 = args.dtype == "bf16"
    torch.set_num_threads(2)
    peak = measure_peak(args.bench)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows, series = [], {}
    for d in (64, 128):
        for causal in (False, True):
            for n in sizes:
                print(f"d={d} N={n} {'causal' if causal else 'full'}", file=sys.stderr, flush=True)
                fwd, bwd, flops = run_case(n, d, causal, args.reps, bf16=bf16)
                for what, t, f in (("fwd", fwd, flops), ("bwd", bwd, 2.5 * flops)):
                    rows.append((f"{what} d={d} N={n} {'causal' if causal else 'full'}", t, f))
                    for impl in t:
                        series.setdefault((what, d, causal, impl), []).append((n, f / t[impl] * 1e-9))
    # this guest drifts: the peak again at the end, and the higher of the two (as bench does)
    peak_end = measure_peak(args.bench)
    print(f"CPU: {cpu_name()}; sattn {sattn.version()} ({sattn.isa()} kernels), PyTorch {torch.__version__}, "
          f"NumPy {np.__version__}; {args.dtype} storage"
          f"{' (sattn forward: bf16 products)' if bf16 and sattn.products_run('bf16') else ''}; 2 threads; FMA peak "
          f"{peak:.1f} GFLOP/s at the start, {peak_end:.1f} at the end; medians of {args.reps} rounds\n")
    peak = max(peak, peak_end)
    print("| case | sattn ms | GFLOP/s | % peak | PyTorch flash ms | % peak | OpenBLAS unfused ms | vs PyTorch | "
          "vs OpenBLAS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, t, f in rows:
        gs, gt = f / t["sattn"] * 1e-9, f / t["pytorch"] * 1e-9
        print(f"| {name} | {t['sattn'] * 1e3:.2f} | {gs:.1f} | {100 * gs / peak:.1f}% | {t['pytorch'] * 1e3:.2f} | "
              f"{100 * gt / peak:.1f}% | {t['openblas'] * 1e3:.2f} | {t['pytorch'] / t['sattn']:.2f}x | "
              f"{t['openblas'] / t['sattn']:.2f}x |")
    if args.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("\nno plot: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
            return
        fig, axes = plt.subplots(2, 4, figsize=(18, 8), sharex=True)
        for col, (d, causal) in enumerate([(64, False), (64, True), (128, False), (128, True)]):
            for row, what in enumerate(("fwd", "bwd")):
                ax = axes[row][col]
                for impl, style in (("sattn", "o-"), ("pytorch", "s--"), ("openblas", "^:")):
                    pts = series[(what, d, causal, impl)]
                    ax.plot([x for x, _ in pts], [y for _, y in pts], style, label=impl)
                ax.axhline(peak, color="grey", lw=0.8)
                ax.set_xscale("log", base=2)
                ax.set_title(f"{what} d={d} {'causal' if causal else 'full'}")
                ax.set_xlabel("N")
                ax.set_ylabel("GFLOP/s")
                top = max(y for (w, _, _, _), pts in series.items() if w == what for _, y in pts)
                ax.set_ylim(0, max(peak, top) * 1.05)
        axes[0][0].legend()
        fig.suptitle(f"{cpu_name()}, 2 threads, {args.dtype} storage, B=1, H=8 "
                     f"(grey: measured f32 FMA peak {peak:.0f} GFLOP/s)")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=80)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
