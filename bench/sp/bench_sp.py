#!/usr/bin/env python3
"""Sequence-parallel efficiency: P ranks with one thread each against one process with P
threads, on the same problem, side by side (rounds alternate the two; medians).

    python3 bench/sp/bench_sp.py BUILD [--ranks P] [--rounds R] [--n N] [--heads H]
                                       [--dim D] [--method ring|ulysses]
                                       [--shard zigzag|contiguous] [--backward]
    python3 bench/sp/bench_sp.py BUILD --model     the cluster model (BENCHMARKS.md)

BUILD is the CMake build directory (bench/bench_sp, bench/bench). Prints the CPU, the
FMA peak measured by bench --only peak, and a table: time, GFLOP/s, % of peak,
efficiency = T(1 process, P threads) / T(P ranks), and the communication: time with
transfers, without, transfers alone, the share hidden = 1 - (with - without) / alone.
"""
import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from machine import cpu_name, fma_peak  # noqa: E402


def run(cmd, env=None):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(cmd, capture_output=True, text=True, env=e)
    if r.returncode != 0:
        sys.exit(f"bench_sp.py: {' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    line = [l for l in r.stdout.splitlines() if "=" in l][-1]
    return {k: v for k, v in (kv.split("=", 1) for kv in line.split())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--method", default="ring")
    ap.add_argument("--shard", default="zigzag")
    ap.add_argument("--backward", action="store_true")
    ap.add_argument("--model", action="store_true")
    a = ap.parse_args()
    exe = os.path.join(a.build, "bench", "bench_sp")
    if a.model:
        return model(a, exe)
    prob = ["--n", str(a.n), "--heads", str(a.heads), "--dim", str(a.dim)] + (["--backward"] if a.backward else [])
    pk = fma_peak(os.path.join(a.build, "bench", "bench"))
    single, sp = [], []
    for r in range(a.rounds):
        single.append(run([exe, "--single", str(a.ranks), "--reps", "3"] + prob,
                          {"OMP_NUM_THREADS": str(a.ranks)}))
        sp.append(run(["mpiexec", "-n", str(a.ranks), exe, "--reps", "3", "--method", a.method, "--shard", a.shard]
                      + prob, {"OMP_NUM_THREADS": "1"}))
    med = lambda rows, k: statistics.median(float(x[k]) for x in rows)
    ts, tp = med(single, "time_s"), med(sp, "time_s")
    tn, tc = med(sp, "nocomm_s"), med(sp, "commonly_s")
    flops = float(single[0]["gflops"]) * float(single[0]["time_s"])  # GFLOP of the problem
    print(f"CPU: {cpu_name()}; FMA peak {pk:.1f} GFLOP/s (bench --only peak)" if pk else
          f"CPU: {cpu_name()}; peak not measured (bench not built)")
    what = "backward" if a.backward else "forward"
    print(f"causal {what}, N={a.n}, H={a.heads}, d={a.dim}, f32; {a.method} {a.shard}; medians of {a.rounds} rounds "
          f"(each the median of 3 calls), the two runs alternating\n")
    print(f"{'run':<34} {'ms':>8} {'GFLOP/s':>8} {'%peak':>6}")
    for name, t in ((f"1 process, {a.ranks} threads", ts), (f"{a.ranks} ranks x 1 thread", tp),
                    (f"{a.ranks} ranks, transfers skipped", tn)):
        g = flops / t
        print(f"{name:<34} {t * 1e3:8.1f} {g:8.1f} {100 * g / pk if pk else float('nan'):5.1f}%")
    exposed = max(0.0, tp - tn)
    hidden = 1.0 - exposed / tc if tc > 0 else float("nan")
    print(f"\nefficiency (1 process / {a.ranks} ranks): {100 * ts / tp:.1f}%")
    print(f"transfers alone {tc * 1e3:.1f} ms; exposed (with - without) {exposed * 1e3:.1f} ms; "
          f"hidden {100 * max(0.0, hidden):.0f}%")
    s = sp[0]
    print(f"per rank per call: {int(s['bytes_sent']) / 2**20:.1f} MiB sent in {s['messages']} messages; "
          f"parts computed {s['parts_computed']}, skipped {s['parts_skipped']}; "
          f"buffers {int(s['peak_bytes']) / 2**20:.1f} MiB beside the caller's shards "
          f"({int(s['shard_bytes']) / 2**20:.1f} MiB)")


def model(a, exe):
    """Per-block compute time measured here (one thread), then per rank and step for
    the ring over zigzag shards of a causal forward: every step computes two full
    (c x c) blocks, c = N / 2P (step 0: one full and two diagonal halves)."""
    H, D = a.heads, a.dim
    blocks = {}
    for c in (512, 1024, 2048, 4096):
        r = run([exe, "--part", str(c), "--heads", str(H), "--dim", str(D), "--reps", "5"], {"OMP_NUM_THREADS": "1"})
        blocks[c] = float(r["full_gflops"])
    rate = statistics.median(blocks.values()) * 1e9  # flop/s of one core on full blocks
    print(f"CPU: {cpu_name()}; one core on full ring blocks (H={H}, d={D}, f32): " +
          ", ".join(f"c={c}: {g:.1f} GFLOP/s" for c, g in blocks.items()) + f"; model rate {rate / 1e9:.1f} GFLOP/s\n")
    print("| ranks P | tokens N | shard n=N/P | memory per rank | sent per step | step compute | bandwidth to hide |")
    print("|---|---|---|---|---|---|---|")
    for P in (8, 64):
        for N in (131072, 262144, 524288, 1048576):
            n = N // P
            c = N // (2 * P)
            shard = 4 * n * H * D * 4                    # q, k, v, out of the caller, f32
            lib = 4 * (n * H * D * 3 + 2 * n * H * 2 * D + n * H * 2) # Q, O, Op; two K/V blocks; L, Lp
            send = 4 * n * H * 2 * D                     # one K/V block
            t_step = 2 * 4.0 * c * c * D * H / rate      # two full blocks
            print(f"| {P} | {N // 1024}K | {n} | {(shard + lib) / 2**30:.2f} GiB | {send / 2**20:.0f} MiB | "
                  f"{t_step * 1e3:.0f} ms | {send / t_step / 1e9:.2f} GB/s |")


if __name__ == "__main__":
    main()
