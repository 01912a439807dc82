"""sattn.attention / attention_backward / attention_weights: the whole C contract,
against the in-tree double-precision reference (tests/ref/sattn_ref.c), for what PyTorch
lacks: bottom-right causal, sliding windows, per-sequence lengths, packed variable-length
batches, ALiBi, softcapping, the Philox dropout rule, head_dim_v, the log-sum-exp, both
layouts, and any strides.

Tolerances are the C suite's (refimpl.TOL): outputs 1e-5 of max(1, max|out|), lse 1e-5
of max(1, |lse|), gradients 5e-5 of each element's error magnitude as the reference
computes it (float16 / bfloat16 storage: plus half an ulp, and 1e-3 / 8e-3 of it).
"""
import numpy as np
import pytest

import sattn
from refimpl import BF16, F16, F32, TOL, close, to_f64

SIZES = [1, 7, 63, 65]


def strided(rng, a):
    """a's values in a view with a random axis order (the last axis stays contiguous) and
    random gaps after each axis: what the contract describes without a copy."""
    nd = a.ndim
    order = list(rng.permutation(nd - 1)) + [nd - 1]
    pad = [int(rng.integers(0, 3)) for _ in range(nd)]
    buf = np.empty([a.shape[ax] + pad[ax] for ax in order], a.dtype)
    view = buf[tuple(slice(0, a.shape[ax]) for ax in order)].transpose(np.argsort(order))
    view[...] = a
    return view


def random_case(seed):
    rng = np.random.default_rng(seed)
    code = [F32, F32, F32, F16, BF16][seed % 5]
    npdt = {F32: np.float32, F16: np.float16, BF16: sattn.bfloat16}[code]
    layout = "bshd" if rng.random() < 0.5 else "bhsd"
    B, hkv, groups = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    Hq = hkv * groups
    D = int(rng.choice([1, 8, 16, 64]))
    Dv = D if rng.random() < 0.7 else int(rng.choice([4, 32]))
    varlen = rng.random() < 0.3
    kw = {"layout": layout}
    if varlen:
        lq = rng.integers(0, 66, B)
        lkv = lq if rng.random() < 0.5 else rng.integers(0, 66, B)
        cu_q = np.concatenate([[0], np.cumsum(lq)]) + int(rng.integers(0, 3))
        cu_kv = np.concatenate([[0], np.cumsum(lkv)])
        kw.update(cu_seqlens_q=cu_q, cu_seqlens_kv=cu_kv)
        Tq, Tkv = int(cu_q[-1]) + int(rng.integers(0, 3)), int(cu_kv[-1])
        Lq, Lkv = int(max(lq.max(), 0)), int(max(lkv.max(), 0))
        qs, ks = (Tq, Hq, D), (Tkv, hkv, D)
        vs = (Tkv, hkv, Dv)
        if layout == "bhsd":
            qs, ks, vs = ((s[1], s[0], s[2]) for s in (qs, ks, vs))
    else:
        Lq, Lkv = int(rng.choice(SIZES)), int(rng.choice(SIZES))
        qs, ks, vs = (B, Lq, Hq, D), (B, Lkv, hkv, D), (B, Lkv, hkv, Dv)
        if layout == "bhsd":
            qs, ks, vs = ((s[0], s[2], s[1], s[3]) for s in (qs, ks, vs))
        if rng.random() < 0.3:
            kw["seqlens_q"] = rng.integers(0, Lq + 1, B)
        if rng.random() < 0.4:
            kw["seqlens_kv"] = rng.integers(0, Lkv + 1, B)
    q = (rng.standard_normal(qs) * 1.5).astype(npdt)
    k = (rng.standard_normal(ks) * 1.5).astype(npdt)
    v = rng.standard_normal(vs).astype(npdt)
    kw["causal"] = [None, "top_left", "bottom_right"][int(rng.integers(3))]
    if rng.random() < 0.3:
        kw["window"] = (int(rng.integers(1, 20)) if rng.random() < 0.7 else None,
                        int(rng.integers(1, 20)) if rng.random() < 0.5 else None)
    full = (B, Hq, Lq, Lkv)
    if rng.random() < 0.3:  # a bias of a broadcastable shape, with some -inf
        shape = tuple(n if rng.random() < 0.5 else 1 for n in full)
        b = rng.standard_normal(shape).astype(np.float32)
        b[rng.random(shape) < 0.1] = -np.inf
        kw["bias"] = b
    if rng.random() < 0.3:
        shape = tuple(n if rng.random() < 0.5 else 1 for n in full)
        kw["mask"] = rng.random(shape) < 0.8
    if rng.random() < 0.3:
        kw["alibi_slopes"] = rng.uniform(0.01, 0.5, Hq).astype(np.float32)
    if rng.random() < 0.3:
        kw["softcap"] = float(rng.uniform(1.0, 10.0))
    if rng.random() < 0.3:
        kw["scale"] = float(rng.uniform(0.05, 0.5))
    if rng.random() < 0.3:
        kw["dropout_p"], kw["seed"] = float(rng.uniform(0.05, 0.5)), int(rng.integers(0, 2**63))
    if rng.random() < 0.5:
        q, k, v = strided(rng, q), strided(rng, k), strided(rng, v)
    return code, q, k, v, kw


@pytest.mark.parametrize("seed", range(40))
def test_random_features(record, ref, seed):
    code, q, k, v, kw = random_case(seed)
    tol = TOL[code]
    name = {F32: "f32", F16: "float16", BF16: "bfloat16"}[code]
    before = sattn.copies_made()
    out, lse = sattn.attention(q, k, v, return_lse=True, **kw)
    assert sattn.copies_made() == before  # every input above is describable in place
    assert out.dtype == q.dtype
    rng = np.random.default_rng(seed + 1000)
    dout = rng.standard_normal(out.shape).astype(q.dtype)
    d_floor = 2 * 2**-25 / tol["grad"] if code == F16 else 0.0
    want = ref(q, k, v, dout=dout, d_floor=d_floor, **kw)
    close(record, f"contract out vs reference ({name})", out, want["out"], tol["out"], tol["out_r"])
    close(record, "contract lse vs reference", lse, want["lse"], 1e-5,
          scale=np.maximum(1.0, np.abs(np.where(np.isfinite(want["lse"]), want["lse"], 0))))
    grads = sattn.attention_backward(dout, q, k, v, out, lse, **kw)
    for g, x, n in zip(grads, (q, k, v), ("dq", "dk", "dv")):
        assert g.shape == x.shape and g.dtype == x.dtype
        close(record, f"contract {n} vs reference ({name})", g, want[n], tol["grad"], tol["grad_r"],
              scale=want["mag_" + n], abs_=1e-30 if code == F32 else 2**-25 * 1.05)
    # without out and lse the backward runs the forward itself: the same bits
    again = sattn.attention_backward(dout, q, k, v, **kw)
    for g, h in zip(grads, again):
        assert np.array_equal(g.view(np.uint8), h.view(np.uint8))


@pytest.mark.parametrize("seed", range(12))
def test_attention_weights(record, seed):
    """The recomputed weights (before dropout) times v give the output without dropout,
    and their head average is the mean of the per-head weights."""
    s = 1000 + 10 * seed
    while True:  # the next drawn case that is float32 and not packed
        code, q, k, v, kw = random_case(s)
        if code == F32 and "cu_seqlens_q" not in kw:
            break
        s += 1
    kw.pop("dropout_p", None), kw.pop("seed", None)
    out, lse = sattn.attention(q, k, v, return_lse=True, **kw)
    w = sattn.attention_weights(q, k, lse, **kw)
    bshd = kw["layout"] == "bshd"
    vv = to_f64(v) if bshd else np.swapaxes(to_f64(v), 1, 2)  # (B, S, Hkv, Dv)
    hq, hkv = w.shape[1], vv.shape[2]
    vh = np.repeat(vv.transpose(0, 2, 1, 3), hq // hkv, axis=1)  # (B, Hq, S, Dv)
    o = np.einsum("bhij,bhjd->bihd", w.astype(np.float64), vh)
    close(record, "weights @ v vs out", o if bshd else np.swapaxes(o, 1, 2), to_f64(out), 1e-5)
    avg = sattn.attention_weights(q, k, lse, average=True, **kw)
    close(record, "averaged weights vs mean", avg, w.astype(np.float64).mean(axis=1), 1e-6)
    if w.shape[2] > 2:
        part = sattn.attention_weights(q, k, lse, row0=1, rows=2, **kw)
        assert np.array_equal(part, w[:, :, 1:3])


def test_bottom_right_is_flash_attention_alignment(ref, record):
    """Bottom-right causal with len_q < len_kv: query i sees keys j <= i + len_kv - len_q;
    with len_q > len_kv the first rows see nothing and are zero."""
    rng = np.random.default_rng(50)
    q = rng.standard_normal((2, 7, 3, 16), dtype=np.float32)
    k = rng.standard_normal((2, 63, 3, 16), dtype=np.float32)
    out = sattn.attention(q, k, k, causal="bottom_right")
    close(record, "contract out vs reference (f32)", out, ref(q, k, k, causal="bottom_right")["out"], 1e-5)
    out = sattn.attention(k, q, q, causal="bottom_right")
    assert np.all(out[:, :63 - 7] == 0)
    close(record, "contract out vs reference (f32)", out, ref(k, q, q, causal="bottom_right")["out"], 1e-5)


def test_dropout_mask_is_philox_rule(ref):
    """With v = identity rows, out[i, h, j] = keep(b, h, i, j) * P[i, j] / (1 - p): the
    kept positions are exactly those of the rule in sattn.h (reference's Philox)."""
    S, p, seed = 8, 0.3, 12345
    q = np.zeros((2, 5, 2, 4), np.float32)  # uniform weights 1/S
    k = np.zeros((2, S, 2, 4), np.float32)
    v = np.broadcast_to(np.eye(S, dtype=np.float32)[None, :, None, :], (2, S, 2, S))
    out = sattn.attention(q, k, v, dropout_p=p, seed=seed)
    for b in range(2):
        for h in range(2):
            for i in range(5):
                for j in range(S):
                    kept = ref.dropout_keep(seed, p, b, h, i, j)
                    assert out[b, i, h, j] == pytest.approx(kept / S / (1 - p), rel=1e-6)
