"""sattn.scaled_dot_product_attention and its backward against
torch.nn.functional.scaled_dot_product_attention and autograd.

Expected values are PyTorch's, computed in float64 on the very values sattn reads (the
float32 / float16 / bfloat16 inputs widened exactly), so the tolerance measures sattn's
error alone; PyTorch's own float32 result is compared too and its distance recorded.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sattn
from refimpl import BF16, F16, F32, TOL, close, to_f64

SIZES = [1, 7, 63, 65]


def t64(a):
    return torch.from_numpy(to_f64(a))


def torch_sdpa(q, k, v, dout=None, attn_mask=None, dtype=torch.float64, **kw):
    """PyTorch's output (float64 numpy) and, with dout, its input gradients."""
    tq, tk, tv = (t64(x).to(dtype).requires_grad_(dout is not None) for x in (q, k, v))
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        attn_mask = torch.from_numpy(m.copy()) if m.dtype == np.bool_ else t64(m).to(dtype)
    o = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=attn_mask, **kw)
    if dout is None:
        return o.detach().double().numpy()
    o.backward(t64(dout).to(dtype))
    return tuple(x.detach().double().numpy() for x in (o, tq.grad, tk.grad, tv.grad))


def check_against_torch(record, label, q, k, v, code=F32, mask=None, **kw):
    """Forward and backward of sattn against PyTorch in float64 (asserted) and float32
    (recorded)."""
    rng = np.random.default_rng(1)
    out = sattn.scaled_dot_product_attention(q, k, v, attn_mask=mask, **kw)
    assert out.dtype == q.dtype
    dout = rng.standard_normal(out.shape).astype(q.dtype)
    grads = sattn.scaled_dot_product_attention_backward(dout, q, k, v, attn_mask=mask, **kw)
    want = torch_sdpa(q, k, v, dout, attn_mask=mask, **kw)
    tol = TOL[code]
    close(record, f"sdpa out vs torch f64 ({label})", out, want[0], tol["out"], tol["out_r"])
    for name, g, w, x in zip(("dq", "dk", "dv"), grads, want[1:], (q, k, v)):
        assert g.shape == x.shape and g.dtype == x.dtype, (name, g.shape, x.shape)
        close(record, f"sdpa {name} vs torch f64 ({label})", g, w, tol["grad"], tol["grad_r"])
    if code == F32:  # PyTorch's own float32 computation: the distance users will see
        want32 = torch_sdpa(q, k, v, dout, attn_mask=mask, dtype=torch.float32, **kw)
        for name, got, w in zip(("out", "dq", "dk", "dv"), (out,) + grads, want32):
            close(record, f"sdpa {name} vs torch f32", got, w, 2 * tol["grad"])
    return out, grads


def random_mask(rng, shape, kind):
    """A bool (True = attend) or float mask with no fully masked row."""
    keep = rng.random(shape) < 0.75
    keep[..., rng.integers(shape[-1])] = True
    if kind == "bool":
        return keep
    return np.where(keep, rng.standard_normal(shape), -np.inf).astype(np.float32)


@pytest.mark.parametrize("seed", range(24))
def test_random_shapes(record, seed):
    """Random leading dims, heads, lengths (1, 7, 63, 65), head dims (v's may differ),
    masks with broadcasting, is_causal and scale: forward and gradients."""
    rng = np.random.default_rng(seed)
    lead = [(), (2,), (3,), (2, 2)][rng.integers(4)]
    H, L, S = int(rng.integers(1, 4)), int(rng.choice(SIZES)), int(rng.choice(SIZES))
    E = int(rng.choice([1, 8, 16, 64]))
    Ev = E if rng.random() < 0.6 else int(rng.choice([1, 8, 32]))
    q = rng.standard_normal(lead + (H, L, E), dtype=np.float32)
    k = rng.standard_normal(lead + (H, S, E), dtype=np.float32)
    v = rng.standard_normal(lead + (H, S, Ev), dtype=np.float32)
    kw = {}
    kind = ["none", "bool", "float", "causal"][seed % 4]
    if kind in ("bool", "float"):
        # a mask of a random broadcastable shape: every axis of (lead, H, L, S) kept or 1
        full = lead + (H, L, S)
        shape = tuple(n if rng.random() < 0.5 else 1 for n in full[:-1]) + (S,)
        shape = shape[int(rng.integers(0, len(shape) - 1)):]  # drop some leading axes
        kw["mask"] = random_mask(rng, shape, kind)
    elif kind == "causal":
        kw["is_causal"] = True
    if rng.random() < 0.3:
        kw["scale"] = float(rng.uniform(0.05, 1.0))
    check_against_torch(record, "f32", q, k, v, **kw)


@pytest.mark.parametrize("seed", range(8))
def test_gqa(record, seed):
    """enable_gqa: query head h reads kv head h // (Hq / Hkv), as PyTorch's
    repeat_interleave; dk and dv sum over the heads of a group."""
    rng = np.random.default_rng(100 + seed)
    hkv, groups = int(rng.integers(1, 3)), int(rng.integers(2, 4))
    N, L, S, E = int(rng.integers(1, 3)), int(rng.choice(SIZES)), int(rng.choice(SIZES)), 16
    q = rng.standard_normal((N, hkv * groups, L, E), dtype=np.float32)
    k = rng.standard_normal((N, hkv, S, E), dtype=np.float32)
    v = rng.standard_normal((N, hkv, S, E), dtype=np.float32)
    kw = {"enable_gqa": True}
    if seed % 2:
        kw["is_causal"] = True
    else:
        kw["mask"] = random_mask(rng, (1, 1, L, S), "bool")
    check_against_torch(record, "gqa", q, k, v, **kw)


@pytest.mark.parametrize("shape,kind", [
    ("L S", "bool"), ("1 1 L S", "bool"), ("N 1 1 S", "bool"), ("H L S", "bool"),
    ("N H L S", "bool"), ("N 1 L 1", "bool"),
    ("L S", "float"), ("N 1 1 S", "float"), ("1 H 1 S", "float"), ("N H L S", "float")])
def test_mask_broadcasting(record, shape, kind):
    rng = np.random.default_rng(7)
    dims = {"N": 2, "H": 3, "L": 7, "S": 63, "1": 1}
    q = rng.standard_normal((2, 3, 7, 16), dtype=np.float32)
    k = rng.standard_normal((2, 3, 63, 16), dtype=np.float32)
    v = rng.standard_normal((2, 3, 63, 8), dtype=np.float32)
    ms = tuple(dims[c] for c in shape.split())
    if ms[-1] == 1:  # a per-row mask: keep every row alive
        m = np.ones(ms, bool)
        m[0, 0, 3] = False
        m = m | (np.arange(7)[:, None] % 2 == 0)
    else:
        m = random_mask(rng, ms, kind)
    check_against_torch(record, "f32", q, k, v, mask=m)


def test_causal_top_left(record):
    """is_causal is PyTorch's top-left alignment, also with L != S."""
    rng = np.random.default_rng(3)
    for L, S in ((7, 63), (65, 7), (63, 63)):
        q = rng.standard_normal((2, L, 16), dtype=np.float32)
        k = rng.standard_normal((2, S, 16), dtype=np.float32)
        v = rng.standard_normal((2, S, 16), dtype=np.float32)
        check_against_torch(record, "f32", q, k, v, is_causal=True)


def test_scale(record):
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal((2, 7, 16), dtype=np.float32) for _ in range(3))
    for scale in (0.0, 1e-3, 0.25, 3.0):
        check_against_torch(record, "f32", q, k, v, scale=scale)


def test_fully_masked_rows_are_zero(record):
    """A row with every key masked: zeros in sattn, with zero gradient. PyTorch gives NaN
    there in versions before 2.5 (and in nn.MultiheadAttention with need_weights); the
    other rows must match PyTorch run on them alone."""
    rng = np.random.default_rng(5)
    q = rng.standard_normal((2, 3, 7, 16), dtype=np.float32)
    k = rng.standard_normal((2, 3, 9, 16), dtype=np.float32)
    v = rng.standard_normal((2, 3, 9, 16), dtype=np.float32)
    dead = np.array([1, 4])
    for kind in ("bool", "float"):
        keep = np.ones((7, 9), bool)
        keep[dead] = False
        m = keep if kind == "bool" else np.where(keep, 0.0, -np.inf).astype(np.float32)
        out = sattn.scaled_dot_product_attention(q, k, v, attn_mask=m)
        dout = rng.standard_normal(out.shape).astype(np.float32)
        dq, dk, dv = sattn.scaled_dot_product_attention_backward(dout, q, k, v, attn_mask=m)
        assert np.all(out[:, :, dead] == 0) and np.all(dq[:, :, dead] == 0)
        tout = torch_sdpa(q, k, v, attn_mask=m)
        assert np.all(np.isnan(tout[:, :, dead]) | (tout[:, :, dead] == 0))
        live = np.setdiff1d(np.arange(7), dead)
        want = torch_sdpa(q[:, :, live], k, v, dout[:, :, live], attn_mask=m[live])
        close(record, "sdpa out vs torch f64 (f32)", out[:, :, live], want[0], 1e-5)
        close(record, "sdpa dq vs torch f64 (f32)", dq[:, :, live], want[1], 5e-5)
        close(record, "sdpa dk vs torch f64 (f32)", dk, want[2], 5e-5)
        close(record, "sdpa dv vs torch f64 (f32)", dv, want[3], 5e-5)


@pytest.mark.parametrize("dt", ["float16", "bfloat16"])
def test_half_precision(record, dt):
    """float16 and ml_dtypes.bfloat16 in, the same dtype out; math in float32."""
    rng = np.random.default_rng(6)
    npdt = np.float16 if dt == "float16" else sattn.bfloat16
    code = F16 if dt == "float16" else BF16
    for L, S, E in ((7, 65, 16), (63, 1, 8), (65, 63, 64)):
        q = rng.standard_normal((2, 2, L, E)).astype(npdt)
        k = rng.standard_normal((2, 2, S, E)).astype(npdt)
        v = rng.standard_normal((2, 2, S, E)).astype(npdt)
        check_against_torch(record, dt, q, k, v, code=code, is_causal=L == 65)


def test_strided_inputs_zero_copy(record):
    """Transposed, sliced and broadcast views are read in place (copies_made() does not
    move) and give PyTorch's results."""
    rng = np.random.default_rng(8)
    base = rng.standard_normal((2, 65, 3, 6, 16), dtype=np.float32)  # (N, L, 3, H, E): fused qkv
    q, k, v = (base[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # (N, H, L, E) with gaps
    assert not q.flags.c_contiguous
    before = sattn.copies_made()
    out = sattn.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert sattn.copies_made() == before
    close(record, "sdpa out vs torch f64 (f32)", out, torch_sdpa(q, k, v, is_causal=True), 1e-5)
    # every other head, and a key/value batch broadcast over the query batch
    kb = np.broadcast_to(k[:1, ::2], (2, 3, 65, 16))
    vb = np.broadcast_to(v[:1, ::2], (2, 3, 65, 16))
    before = sattn.copies_made()
    out = sattn.scaled_dot_product_attention(q[:, ::2], kb, vb)
    assert sattn.copies_made() == before
    close(record, "sdpa out vs torch f64 (f32)", out, torch_sdpa(q[:, ::2], kb, vb), 1e-5)
    # an (L, S) bool mask broadcast over batch and heads is one 2-D array in place
    m = random_mask(rng, (65, 65), "bool")
    before = sattn.copies_made()
    sattn.scaled_dot_product_attention(q, k, v, attn_mask=m)
    assert sattn.copies_made() == before
    # gradients of views: dense permutations are written in place, gapped views copied
    check_against_torch(record, "f32", q, k, v, mask=m)
    qt = np.ascontiguousarray(base[:, :, 0]).transpose(0, 2, 1, 3)  # dense, permuted
    before = sattn.copies_made()
    dq, _, _ = sattn.scaled_dot_product_attention_backward(np.ones((2, 6, 65, 16), np.float32),
                                                           qt, qt, qt)
    assert sattn.copies_made() == before and dq.strides == qt.strides


def test_broadcast_gradients(record):
    """Leading dims broadcast as in PyTorch; gradients sum over them."""
    rng = np.random.default_rng(9)
    q = rng.standard_normal((2, 3, 2, 7, 8), dtype=np.float32)
    k = rng.standard_normal((3, 1, 9, 8), dtype=np.float32)
    v = rng.standard_normal((1, 1, 2, 9, 8), dtype=np.float32)
    check_against_torch(record, "f32", q, k, v)
    q2 = rng.standard_normal((7, 8), dtype=np.float32)  # 2-D: (L, E)
    check_against_torch(record, "f32", q2, q2[:5], q2[:5], is_causal=True)


def test_dropout_follows_philox_rule(record, ref):
    """dropout_p: PyTorch draws its mask from its own generator, so it cannot be compared
    with PyTorch; sattn's mask is the Philox rule of sattn.h, which the reference
    implements independently: compare with it, forward and backward."""
    rng = np.random.default_rng(10)
    q = rng.standard_normal((2, 3, 65, 16), dtype=np.float32)
    k = rng.standard_normal((2, 3, 63, 16), dtype=np.float32)
    v = rng.standard_normal((2, 3, 63, 16), dtype=np.float32)
    for p, seed in ((0.1, 1), (0.5, 2**40 + 3)):
        out = sattn.scaled_dot_product_attention(q, k, v, dropout_p=p, seed=seed, is_causal=True)
        dout = rng.standard_normal(out.shape).astype(np.float32)
        grads = sattn.scaled_dot_product_attention_backward(dout, q, k, v, dropout_p=p, seed=seed,
                                                            is_causal=True)
        want = ref(q, k, v, layout="bhsd", causal="top_left", dropout_p=p, seed=seed, dout=dout)
        close(record, "dropout out vs reference", out, want["out"], 1e-5)
        for name, g in zip(("dq", "dk", "dv"), grads):
            close(record, f"dropout {name} vs reference", g, want[name], 5e-5,
                  scale=np.maximum(want["mag_" + name], 0.0), abs_=1e-30)
        other = sattn.scaled_dot_product_attention(q, k, v, dropout_p=p, seed=seed + 1, is_causal=True)
        assert not np.array_equal(out, other)
