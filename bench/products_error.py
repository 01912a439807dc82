"""The error of the forward's two product modes (sattn.h, sattn_products) against a
float64 reference, on bf16 inputs drawn from N(0, 1), B = 1, H = 8, default scale:

    SATTN_LIBRARY=build/libsattn.so PYTHONPATH=python python3 bench/products_error.py

Prints, per shape and mode, the largest and the rms |out - exact|, and the largest error
over the documented bound of the bf16 products, 2^-8 sum_j P|v_j| + 2^-8 |out| (the
weights' rounding plus half an ulp of the stored out). Needs numpy and ml_dtypes.
"""
import os
import sys

import numpy as np

import sattn
from sattn._arrays import bfloat16

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name  # noqa: E402


def main():
    if bfloat16 is None:
        sys.exit("products_error.py needs ml_dtypes (bfloat16 arrays)")
    print(f"CPU: {cpu_name()}; sattn {sattn.version()}, {sattn.isa()} kernels; "
          f"bf16 products {'run' if sattn.products_run('bf16') else 'do not run here (f32 instead)'}")
    print(f"{'shape':<20} {'products':<9} {'max|err|':>9} {'rms err':>9} {'max err/bound':>14}")
    rng = np.random.default_rng(1)
    for n, d, causal in ((1024, 64, None), (1024, 128, None), (4096, 64, None), (1024, 64, "top_left")):
        q, k, v = (rng.standard_normal((1, n, 8, d)).astype(bfloat16) for _ in range(3))
        qd, kd, vd = (x.astype(np.float64).transpose(0, 2, 1, 3) for x in (q, k, v))
        s = qd @ kd.transpose(0, 1, 3, 2) / np.sqrt(d)
        if causal:
            s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        want = (p @ vd).transpose(0, 2, 1, 3)
        bound = 2.0**-8 * (p @ np.abs(vd)).transpose(0, 2, 1, 3) + 2.0**-8 * np.abs(want)
        for prod in ("f32", "bf16"):
            got = sattn.attention(q, k, v, causal=causal, products=prod).astype(np.float64)
            e = np.abs(got - want)
            shape = f"N={n} d={d}{' causal' if causal else ''}"
            print(f"{shape:<20} {prod:<9} {e.max():9.2e} {np.sqrt((e ** 2).mean()):9.2e} {np.max(e / bound):14.3f}")


if __name__ == "__main__":
    main()
