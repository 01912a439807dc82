"""The in-tree double-precision reference (tests/ref/sattn_ref.c) through ctypes, and
the comparison helpers of the suite.

The reference is called with its own sattn_params, built here from packed copies of the
inputs (BSHD, or THD with cu_seqlens) and fully materialised masks: it shares none of
the package's stride, broadcast or option mapping, which is what the tests check.
"""
import ctypes
from ctypes import POINTER, c_double, c_float, c_int, c_int64, c_uint64, c_void_p

import numpy as np

from sattn import _lib
from sattn._arrays import bfloat16

F32, F16, BF16 = _lib.F32, _lib.F16, _lib.BF16
CAUSAL = {None: 0, "top_left": 1, "bottom_right": 2}


def storage_code(a, dtype=None):
    if dtype is not None:
        return {"float32": F32, "float16": F16, "bfloat16": BF16}[dtype]
    if a.dtype == np.float16:
        return F16
    if bfloat16 is not None and a.dtype == bfloat16:
        return BF16
    assert a.dtype == np.float32, a.dtype
    return F32


def to_f64(a, code=None):
    """Values of an f32/f16/bf16 array (or raw uint16 bits of one) as float64."""
    a = np.asarray(a)
    if a.dtype == np.uint16:
        a = a.view(np.float16 if code == F16 else bfloat16)
    return a.astype(np.float64)


class Ref:
    def __init__(self, path):
        lib = ctypes.CDLL(path)
        P = POINTER(_lib.Params)
        d = POINTER(c_double)
        lib.sattn_ref_forward.argtypes = [P, c_void_p, c_void_p, c_void_p, d, d]
        lib.sattn_ref_backward.argtypes = [P, c_void_p, c_void_p, c_void_p, c_void_p, d, d, d]
        lib.sattn_ref_backward_mag.argtypes = [P, c_void_p, c_void_p, c_void_p, c_void_p, c_double,
                                               d, d, d]
        lib.sattn_ref_dropout_keep.argtypes = [c_uint64, c_float, c_int64, c_int64, c_int64, c_int64]
        for f in ("sattn_ref_forward", "sattn_ref_backward", "sattn_ref_backward_mag",
                  "sattn_ref_dropout_keep"):
            getattr(lib, f).restype = c_int
        self.lib = lib

    def dropout_keep(self, seed, p, b, h, i, j):
        return self.lib.sattn_ref_dropout_keep(seed, p, b, h, i, j)

    def __call__(self, q, k, v, *, layout="bshd", dtype=None, causal=None, window=None,
                 seqlens_q=None, seqlens_kv=None, cu_seqlens_q=None, cu_seqlens_kv=None,
                 bias=None, mask=None, alibi_slopes=None, softcap=0.0, scale=None,
                 dropout_p=0.0, seed=0, dout=None, d_floor=0.0):
        """Reference out and lse (float64; out in q's layout with head_dim_v, lse as the
        library lays it out), and with dout also dq, dk, dv (in q, k, v's layouts) and
        their error magnitudes (sattn_ref_backward_mag) as a dict."""
        code = storage_code(np.asarray(q), dtype)
        raw = {F32: np.float32, F16: np.float16, BF16: np.uint16}[code]

        def packed(x):  # -> contiguous BSHD / THD in the storage type
            x = np.asarray(x)
            if code == BF16 and x.dtype != np.uint16:
                x = x.view(np.uint16)
            assert x.dtype == raw, (x.dtype, raw)
            if layout == "bhsd":
                x = np.swapaxes(x, -3, -2)
            return np.ascontiguousarray(x)

        def unpacked(x):  # packed float64 -> the caller's layout
            return np.swapaxes(x, -3, -2) if layout == "bhsd" else x

        qp, kp, vp = packed(q), packed(k), packed(v)
        p = _lib.Params()
        keep = []

        def ptr(a):
            keep.append(a)
            return a.ctypes.data

        cu_q = None if cu_seqlens_q is None else np.ascontiguousarray(cu_seqlens_q, np.int32)
        cu_kv = None if cu_seqlens_kv is None else np.ascontiguousarray(cu_seqlens_kv, np.int32)
        if cu_q is not None:
            B = len(cu_q) - 1
        elif cu_kv is not None:
            B = qp.shape[0]
        else:
            B = qp.shape[0]
        Lq = int(np.diff(cu_q).max()) if cu_q is not None else qp.shape[1]
        Lkv = int(np.diff(cu_kv).max()) if cu_kv is not None else kp.shape[1]
        Hq, D, Hkv, Dv = qp.shape[-2], qp.shape[-1], kp.shape[-2], vp.shape[-1]
        p.batch, p.seq_q, p.seq_kv = B, Lq, Lkv
        p.heads_q, p.heads_kv, p.head_dim, p.head_dim_v = Hq, Hkv, D, Dv
        p.dtype = code
        # packed strides, written out: (batch, seq, head)
        for name, x in (("q_stride", qp), ("k_stride", kp), ("v_stride", vp)):
            h, d = x.shape[-2], x.shape[-1]
            s = x.shape[1] if x.ndim == 4 else 0
            getattr(p, name)[:] = [s * h * d, h * d, d]
        s = Lq if cu_q is None else 0
        p.o_stride[:] = [s * Hq * Dv, Hq * Dv, Dv]
        p.scale = 0.0 if scale is None else float(scale)
        p.causal = CAUSAL[causal]
        if window is not None:
            p.window_left, p.window_right = (0 if w is None or w < 0 else w for w in window)
        if seqlens_q is not None:
            p.seqlens_q = ptr(np.ascontiguousarray(seqlens_q, np.int32))
        if seqlens_kv is not None:
            p.seqlens_kv = ptr(np.ascontiguousarray(seqlens_kv, np.int32))
        if cu_q is not None:
            p.cu_seqlens_q = ptr(cu_q)
        if cu_kv is not None:
            p.cu_seqlens_kv = ptr(cu_kv)
        full = (B, Hq, Lq, Lkv)
        dense4 = [Hq * Lq * Lkv, Lq * Lkv, Lkv, 1]
        if bias is not None:
            p.bias = ptr(np.ascontiguousarray(np.broadcast_to(np.asarray(bias, np.float32), full)))
            p.bias_stride[:] = dense4
        if mask is not None:
            m = np.ascontiguousarray(np.broadcast_to(np.asarray(mask) != 0, full), np.uint8)
            p.mask = ptr(m)
            p.mask_stride[:] = dense4
        if alibi_slopes is not None:
            p.alibi_slopes = ptr(np.ascontiguousarray(alibi_slopes, np.float32))
        p.softcap = softcap
        p.dropout_p = dropout_p
        p.seed = seed

        out = np.zeros(qp.shape[:-1] + (Dv,))
        lse = np.full((Hq, int(cu_q[-1])) if cu_q is not None else (B, Hq, Lq), -np.inf)
        dp = POINTER(c_double)
        rc = self.lib.sattn_ref_forward(ctypes.byref(p), qp.ctypes.data, kp.ctypes.data,
                                        vp.ctypes.data, out.ctypes.data_as(dp), lse.ctypes.data_as(dp))
        assert rc == 0, "the reference rejected the case"
        res = {"out": unpacked(out), "lse": lse}
        if dout is not None:
            dop = packed(dout)
            g = [np.zeros(x.shape) for x in (qp, kp, vp)]
            m = [np.zeros(x.shape) for x in (qp, kp, vp)]
            rc = self.lib.sattn_ref_backward(ctypes.byref(p), qp.ctypes.data, kp.ctypes.data,
                                             vp.ctypes.data, dop.ctypes.data,
                                             *(x.ctypes.data_as(dp) for x in g))
            assert rc == 0
            rc = self.lib.sattn_ref_backward_mag(ctypes.byref(p), qp.ctypes.data, kp.ctypes.data,
                                                 vp.ctypes.data, dop.ctypes.data, d_floor,
                                                 *(x.ctypes.data_as(dp) for x in m))
            assert rc == 0
            for name, x, mx in zip(("dq", "dk", "dv"), g, m):
                res[name], res["mag_" + name] = unpacked(x), unpacked(mx)
        return res


# ---- comparisons ----

def close(record, what, got, want, atol, rtol=0.0, floor=1.0, scale=None, abs_=0.0):
    """Asserts |got - want| <= atol * S + rtol * |want| + abs_ elementwise, with S =
    max(floor, max|want|), or the per-element error magnitude `scale`; records the
    largest error with the tolerance at that element."""
    got = np.asarray(got)
    got = to_f64(got) if got.dtype != np.float64 else got
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    if got.size == 0:
        return
    finite = np.isfinite(want)
    assert np.array_equal(np.isfinite(got), finite), f"{what}: non-finite values differ"
    assert np.all(got[~finite] == want[~finite]), f"{what}: infinities differ"
    if scale is None:
        scale = max(floor, float(np.abs(want[finite]).max(initial=0.0)))
    err = np.abs(np.where(finite, got, 0.0) - np.where(finite, want, 0.0))
    allowed = np.broadcast_to(atol * scale + rtol * np.abs(np.where(finite, want, 0.0)) + abs_,
                              err.shape)
    i = np.unravel_index(np.argmax(err), err.shape)
    record(what, float(err[i]), float(allowed[i]))
    bad = err > allowed
    if bad.any():
        i = np.unravel_index(np.argmax(err - allowed), err.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {err.size} elements off; worst at {i}: "
                             f"got {got[i]!r}, want {want[i]!r}, |err| {err[i]:.3g} > allowed "
                             f"{allowed[i]:.3g}")


# Tolerances, the C suite's (tests/testutil.c, tu_tolerance), against float64 expectations:
#   out  1e-5 of max(1, max|out|): each output is a convex combination of v rows; f32 dot
#        products over head_dim and softmax sums over seq_kv stay near 1e-6 of that scale,
#        about 170 f32 ulps of room. float16 / bfloat16 storage adds half an ulp of the
#        stored value (2^-11, 2^-8 relative, +5%).
#   lse  1e-5 of max(1, |lse|).
#   grad 5e-5 of the gradient's scale (its error magnitude from the reference, or
#        max(1, max|grad|) against PyTorch); 1e-3 / 8e-3 with float16 / bfloat16 storage,
#        where the backward reads the rounded out to form D = rowsum(dout * out).
TOL = {F32: dict(out=1e-5, out_r=0.0, grad=5e-5, grad_r=0.0),
       F16: dict(out=1e-5, out_r=2**-11 * 1.05, grad=1e-3, grad_r=2**-11 * 1.05),
       BF16: dict(out=1e-5, out_r=2**-8 * 1.05, grad=8e-3, grad_r=2**-8 * 1.05)}
