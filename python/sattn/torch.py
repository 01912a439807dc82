"""sattn for PyTorch: scaled_dot_product_attention as a real operator, and an attention
implementation for transformers.

    import sattn.torch
    out = sattn.torch.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0,
                                                   is_causal=False, scale=None, enable_gqa=False)
    name = sattn.torch.register_transformers()      # "sattn"
    model = AutoModel.from_pretrained(path, attn_implementation=name)

CPU tensors of float32, float16 or bfloat16; the math is float32 whatever the storage.
The operators are `torch.ops.sattn.attention` and `torch.ops.sattn.attention_backward`
(torch.library custom ops with a fake implementation and an autograd formula), so
torch.compile(fullgraph=True) traces through them. The backward is sattn_backward from
the forward's saved log-sum-exp. Strided tensors (a model's transposed projections) are
read in place; a copy only where the layout cannot be described (sattn.copies_made()).

Differences from torch.nn.functional.scaled_dot_product_attention, by design:
  - a row whose keys are all masked gives zeros and zero gradients, never NaN;
  - dropout is sattn's Philox rule, with a fresh seed drawn from torch's generator per
    call (so torch.manual_seed makes it repeatable) and reused by the backward;
  - is_causal and attn_mask may be given together (both apply);
  - no gradient flows into a float attn_mask (it is treated as a constant);
  - float64 is refused (sattn computes in float32) rather than silently rounded.
Errors: a bad shape, dtype or option raises RuntimeError (a ValueError subclass carries
sattn's own checks: sattn.Error); a CUDA tensor raises RuntimeError "CPU only".
"""
import ctypes
import math
from typing import Optional

import numpy as np
import torch

from . import _arrays as A
from . import _lib as L
from . import functional as F

__all__ = ["scaled_dot_product_attention", "attention", "attention_varlen", "register_transformers"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_LAYOUT = {0: "bshd", 1: "bhsd"}
_CAUSAL = {0: None, 1: "top_left", 2: "bottom_right"}


# ---- tensors <-> NumPy views (no copies) ----

def _np(t):
    if t is None:
        return None
    t = t.detach()
    if t.dtype == torch.bfloat16:
        if A.bfloat16 is None:
            raise RuntimeError("sattn.torch: bfloat16 needs the ml_dtypes package")
        return t.view(torch.int16).numpy().view(A.bfloat16)
    return t.numpy()


def _torch(a, dtype):
    if dtype == torch.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _check_tensors(name_tensors):
    for name, t in name_tensors:
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"sattn.torch: {name} must be a torch.Tensor (got {type(t).__name__})")
        if t.device.type != "cpu":
            raise RuntimeError(f"sattn.torch: CPU only: {name} is on {t.device} (sattn runs on the CPU; "
                               "use PyTorch's own kernels on a GPU)")


def _options(mask, bias, seqlens_kv, alibi, cu_q, cu_kv, layout, causal, window_left, window_right, scale,
             softcap, dropout_p, seed):
    return dict(layout=_LAYOUT[layout], causal=_CAUSAL[causal],
                window=(window_left if window_left > 0 else None, window_right if window_right > 0 else None),
                seqlens_kv=_np(seqlens_kv), cu_seqlens_q=_np(cu_q), cu_seqlens_kv=_np(cu_kv),
                bias=_np(bias), mask=_np(mask), alibi_slopes=_np(alibi), softcap=softcap,
                scale=scale, dropout_p=dropout_p, seed=seed & (2**64 - 1))


def _out_shape(q, v):
    return q.shape[:-1] + (v.shape[-1],)


def _lse_shape(q, layout, packed):
    if packed:  # (total, H, D) or (H, total, D) -> (H, total)
        return (q.shape[1], q.shape[0]) if layout == 0 else (q.shape[0], q.shape[1])
    return (q.shape[0], q.shape[2], q.shape[1]) if layout == 0 else (q.shape[0], q.shape[1], q.shape[2])


def _new_out(q, v, layout):
    """The output: for the bhsd layout a (B, H, L, Dv) view of (B, L, H, Dv) memory, what a
    model's output projection reads next without a copy; else like q."""
    shape = _out_shape(q, v)
    if layout == 1 and q.dim() == 4:
        b, h, l, d = shape
        return torch.empty((b, l, h, d), dtype=q.dtype).transpose(1, 2)
    return torch.empty(shape, dtype=q.dtype)


# ---- the direct path: tensors' strides and pointers straight into sattn_params ----
# The NumPy layer checks and converts in Python, which costs ~0.3 ms a call: as much as a
# whole decode step's attention. Unpacked calls build the params here instead (the C
# library checks every field and size itself) and call sattn_forward / sattn_backward.

class _Raw(ctypes.Structure):
    """sattn_params without the NumPy layer's per-field Python checks: every value set
    here comes from a tensor's shape or strides, or was checked by the entry point."""
    _fields_ = L.Params._fields_


_CODE = {torch.float32: L.F32, torch.float16: L.F16, torch.bfloat16: L.BF16}

# the same functions with untyped pointers (the package's prototypes want its Params)
_direct_lib = ctypes.CDLL(L.library_path)
_c_forward, _c_backward = _direct_lib.sattn_forward, _direct_lib.sattn_backward
_c_forward.restype = _c_backward.restype = ctypes.c_int
_c_forward.argtypes = [ctypes.c_void_p] * 6
_c_backward.argtypes = [ctypes.c_void_p] * 10


def _bsh(t, layout):
    """Element strides of the (batch, seq, head) axes of a 4-D tensor."""
    s = t.stride()
    return (s[0], s[2], s[1]) if layout == 1 else (s[0], s[1], s[2])


def _dim_ok(t):
    return t.shape[-1] == 1 or t.stride(-1) == 1


def _direct_ok(q, k, v, cu_q):
    return cu_q is None and q.dim() == 4 and all(_dim_ok(t) for t in (q, k, v))


def _params(q, k, v, mask, bias, seqlens_kv, alibi, layout, causal, wl, wr, scale, softcap, dropout_p, seed):
    """The params of a call, after the checks the C side cannot make (it trusts the shapes
    it is given: every tensor must hold what they say)."""
    p = _Raw()
    hd = 1 if layout == 1 else 2
    sd = 2 if layout == 1 else 1
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in _CODE:
        raise RuntimeError(f"sattn.torch: q, k, v must share one of float32, float16, bfloat16 "
                           f"(got {q.dtype}, {k.dtype}, {v.dtype})")
    if (k.shape[0] != q.shape[0] or v.shape[0] != q.shape[0] or v.shape[sd] != k.shape[sd]
            or v.shape[hd] != k.shape[hd] or k.shape[3] != q.shape[3]):
        raise RuntimeError(f"sattn.torch: q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} do not "
                           f"fit together in layout {_LAYOUT[layout]}")
    if seqlens_kv is not None and seqlens_kv.numel() != q.shape[0]:
        raise RuntimeError(f"sattn.torch: seqlens_kv has {seqlens_kv.numel()} lengths for a batch of {q.shape[0]}")
    if alibi is not None and alibi.numel() != q.shape[hd]:
        raise RuntimeError(f"sattn.torch: alibi_slopes has {alibi.numel()} slopes for {q.shape[hd]} query heads")
    p.batch, p.seq_q, p.seq_kv = q.shape[0], q.shape[sd], k.shape[sd]
    p.heads_q, p.heads_kv, p.head_dim, p.head_dim_v = q.shape[hd], k.shape[hd], q.shape[3], v.shape[3]
    p.dtype = _CODE[q.dtype]
    p.q_stride[:], p.k_stride[:], p.v_stride[:] = _bsh(q, layout), _bsh(k, layout), _bsh(v, layout)
    p.scale = scale if scale != 0.0 else F._ZERO_SCALE
    p.causal, p.window_left, p.window_right = causal, wl, wr
    if seqlens_kv is not None:
        p.seqlens_kv = seqlens_kv.data_ptr()
    if mask is not None:
        p.mask, p.mask_stride[:] = mask.data_ptr(), mask.stride()
    if bias is not None:
        p.bias, p.bias_stride[:] = bias.data_ptr(), bias.stride()
    if alibi is not None:
        p.alibi_slopes = alibi.data_ptr()
    p.softcap, p.dropout_p, p.seed = softcap, dropout_p, seed & (2**64 - 1)
    return p


def _side(t, dtype):
    """A mask / bias / lengths / slopes tensor as the C side reads it (a view when it is)."""
    if t is None:
        return None
    if dtype in (torch.int32, torch.float32) and t.dim() == 1:
        return t.to(dtype).contiguous()
    return t if t.dtype == dtype else t.to(dtype)


def _full(t, q, k, layout):
    """A mask or bias broadcast (a view) to (B, Hq, Lq, S); an error if it does not."""
    if t is None:
        return None
    sd, hd = (2, 1) if layout == 1 else (1, 2)
    shape = (q.shape[0], q.shape[hd], q.shape[sd], k.shape[sd])
    try:
        return t.expand(shape)
    except RuntimeError:
        raise RuntimeError(f"sattn.torch: a mask of shape {tuple(t.shape)} does not broadcast to {shape}") from None


def _direct_forward(q, k, v, mask, bias, seqlens_kv, alibi, layout, causal, wl, wr, scale, softcap, dropout_p,
                    seed):
    mask, bias = _full(_side(mask, torch.bool), q, k, layout), _full(_side(bias, torch.float32), q, k, layout)
    seqlens_kv, alibi = _side(seqlens_kv, torch.int32), _side(alibi, torch.float32)
    p = _params(q, k, v, mask, bias, seqlens_kv, alibi, layout, causal, wl, wr, scale, softcap, dropout_p, seed)
    out = _new_out(q, v, layout)
    p.o_stride[:] = _bsh(out, layout)
    lse = torch.empty(_lse_shape(q, layout, False), dtype=torch.float32)
    if q.numel() and k.shape[0]:
        L.check(_c_forward(ctypes.addressof(p), q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                                    lse.data_ptr()))
    elif out.numel():
        out.zero_()
    return out, lse


def _dense(t):
    """t itself when its elements are packed without gaps or overlaps (the backward writes
    its gradient with t's strides), else a contiguous copy."""
    expect = 1  # the axes by stride, each exactly as long as the ones inside it
    for stride, size in sorted((st, n) for st, n in zip(t.stride(), t.shape) if n != 1):
        if stride != expect:
            break
        expect *= size
    else:
        return t
    A._count_copy()
    return t.contiguous()


def _direct_backward(dout, q, k, v, out, lse, mask, bias, seqlens_kv, alibi, layout, causal, wl, wr, scale,
                     softcap, dropout_p, seed):
    q, k, v = _dense(q), _dense(k), _dense(v)
    mask, bias = _full(_side(mask, torch.bool), q, k, layout), _full(_side(bias, torch.float32), q, k, layout)
    seqlens_kv, alibi = _side(seqlens_kv, torch.int32), _side(alibi, torch.float32)
    p = _params(q, k, v, mask, bias, seqlens_kv, alibi, layout, causal, wl, wr, scale, softcap, dropout_p, seed)
    if not _dim_ok(out):
        out = out.contiguous()
    if dout.stride() != out.stride():  # out and dout share o_stride
        dout = torch.empty_like(out).copy_(dout) if _dense(out) is out else dout.contiguous()
        if dout.stride() != out.stride():
            out = out.contiguous()
            dout = dout.contiguous()
    p.o_stride[:] = _bsh(out, layout)
    lse = lse.contiguous()
    dq, dk, dv = (torch.empty_like(t) for t in (q, k, v))
    if q.numel() and k.shape[0]:
        L.check(_c_backward(ctypes.addressof(p), q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                                     lse.data_ptr(), dout.data_ptr(), dq.data_ptr(), dk.data_ptr(), dv.data_ptr()))
    else:
        dq.zero_(), dk.zero_(), dv.zero_()
    return dq, dk, dv


# ---- the operators ----

@torch.library.custom_op("sattn::attention", mutates_args=())
def _attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
                  bias: Optional[torch.Tensor], seqlens_kv: Optional[torch.Tensor],
                  alibi_slopes: Optional[torch.Tensor], cu_seqlens_q: Optional[torch.Tensor],
                  cu_seqlens_kv: Optional[torch.Tensor], layout: int, causal: int, window_left: int,
                  window_right: int, scale: float, softcap: float, dropout_p: float,
                  seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if _direct_ok(q, k, v, cu_seqlens_q):
        return _direct_forward(q, k, v, mask, bias, seqlens_kv, alibi_slopes, layout, causal, window_left,
                               window_right, scale, softcap, dropout_p, seed)
    packed = cu_seqlens_q is not None
    out = _new_out(q, v, layout)
    if packed:
        out.zero_()
    o, lse = F.attention(_np(q), _np(k), _np(v), return_lse=True, out=_np(out),
                         **_options(mask, bias, seqlens_kv, alibi_slopes, cu_seqlens_q, cu_seqlens_kv, layout,
                                    causal, window_left, window_right, scale, softcap, dropout_p, seed))
    return out, torch.from_numpy(lse)


@_attention_op.register_fake
def _(q, k, v, mask, bias, seqlens_kv, alibi_slopes, cu_seqlens_q, cu_seqlens_kv, layout, causal, window_left,
      window_right, scale, softcap, dropout_p, seed):
    # the real outputs' shapes and strides (under fake mode the factory functions make fakes)
    lse = torch.empty(_lse_shape(q, layout, cu_seqlens_q is not None), dtype=torch.float32)
    return _new_out(q, v, layout), lse


@torch.library.custom_op("sattn::attention_backward", mutates_args=())
def _attention_backward_op(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           out: torch.Tensor, lse: torch.Tensor, mask: Optional[torch.Tensor],
                           bias: Optional[torch.Tensor], seqlens_kv: Optional[torch.Tensor],
                           alibi_slopes: Optional[torch.Tensor], cu_seqlens_q: Optional[torch.Tensor],
                           cu_seqlens_kv: Optional[torch.Tensor], layout: int, causal: int, window_left: int,
                           window_right: int, scale: float, softcap: float, dropout_p: float,
                           seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if _direct_ok(q, k, v, cu_seqlens_q) and _dim_ok(dout):
        return _direct_backward(dout, q, k, v, out, lse, mask, bias, seqlens_kv, alibi_slopes, layout, causal,
                                window_left, window_right, scale, softcap, dropout_p, seed)
    dq, dk, dv = F.attention_backward(
        _np(dout), _np(q), _np(k), _np(v), out=_np(out), lse=_np(lse),
        **_options(mask, bias, seqlens_kv, alibi_slopes, cu_seqlens_q, cu_seqlens_kv, layout, causal, window_left,
                   window_right, scale, softcap, dropout_p, seed))
    # each gradient has its input's strides where the input is dense, else C order
    return tuple(_torch(g, x.dtype) for g, x in zip((dq, dk, dv), (q, k, v)))


@_attention_backward_op.register_fake
def _(dout, q, k, v, out, lse, mask, bias, seqlens_kv, alibi_slopes, cu_seqlens_q, cu_seqlens_kv, layout, causal,
      window_left, window_right, scale, softcap, dropout_p, seed):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


_SAVED_ARGS = ("mask", "bias", "seqlens_kv", "alibi_slopes", "cu_seqlens_q", "cu_seqlens_kv")
_SCALAR_ARGS = ("layout", "causal", "window_left", "window_right", "scale", "softcap", "dropout_p", "seed")


def _setup_context(ctx, inputs, output):
    q, k, v, mask, bias, seqlens_kv, alibi, cu_q, cu_kv = inputs[:9]
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, mask, bias, seqlens_kv, alibi, cu_q, cu_kv)
    ctx.scalars = inputs[9:]


def _backward(ctx, dout, dlse):
    q, k, v, out, lse, mask, bias, seqlens_kv, alibi, cu_q, cu_kv = ctx.saved_tensors
    dq, dk, dv = torch.ops.sattn.attention_backward(dout.contiguous() if dout.stride(-1) != 1 else dout,
                                                    q, k, v, out, lse, mask, bias, seqlens_kv, alibi, cu_q,
                                                    cu_kv, *ctx.scalars)
    return (dq, dk, dv) + (None,) * 14


torch.library.register_autograd("sattn::attention", _backward, setup_context=_setup_context)


# ---- the Python entry points ----

def _check_dtypes(q, k, v):
    for name, t in (("query", q), ("key", k), ("value", v)):
        if t.dtype not in _DTYPES:
            raise RuntimeError(f"sattn.torch: {name} is {t.dtype}; sattn takes float32, float16 or bfloat16 "
                               "(it computes in float32: convert float64 explicitly)")
    if not (q.dtype == k.dtype == v.dtype):
        raise RuntimeError(f"sattn.torch: query, key and value must have the same dtype "
                           f"(got {q.dtype}, {k.dtype}, {v.dtype})")


def _window(window):
    if window is None:
        return 0, 0
    left, right = window
    side = lambda w: 0 if w is None or w < 0 else int(w)  # noqa: E731
    if (left is not None and left == 0) or (right is not None and right == 0):
        raise ValueError("window sides must be None (unbounded), negative (unbounded) or >= 1")
    return side(left), side(right)


def _seed(dropout_p):
    if not dropout_p:
        return 0
    # a fresh seed from torch's default generator: torch.manual_seed repeats it
    return int(torch.randint(-2**63, 2**63 - 1, (), dtype=torch.int64).item())


def attention(q, k, v, *, layout="bhsd", causal=None, window=None, seqlens_kv=None, attn_mask=None,
              alibi_slopes=None, softcap=0.0, scale=None, dropout_p=0.0, return_lse=False):
    """The C contract on 4-D tensors: q (B, Hq, L, D), k (B, Hkv, S, D), v (B, Hkv, S, Dv) in
    layout "bhsd" (or (B, L, H, D) with "bshd"); causal None, "top_left" or "bottom_right";
    window (left, right); seqlens_kv (B,) int key lengths; attn_mask bool (True = attend) or
    float (added; -inf masks) broadcastable to (B, Hq, L, S); alibi_slopes (Hq,); softcap.
    Returns out (the layout of q, head dim Dv), and the lse (B, Hq, L) with return_lse.
    Differentiable in q, k and v."""
    _check_tensors((("q", q), ("k", k), ("v", v), ("attn_mask", attn_mask), ("seqlens_kv", seqlens_kv),
                    ("alibi_slopes", alibi_slopes)))
    _check_dtypes(q, k, v)
    if layout not in ("bhsd", "bshd"):
        raise ValueError(f"layout must be \"bhsd\" or \"bshd\" (got {layout!r})")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise RuntimeError(f"sattn.torch.attention: q, k, v must be 4-D (got {tuple(q.shape)}, "
                           f"{tuple(k.shape)}, {tuple(v.shape)})")
    code = {None: 0, "none": 0, "top_left": 1, "bottom_right": 2}.get(causal)
    if code is None:
        raise ValueError(f"causal must be None, \"top_left\" or \"bottom_right\" (got {causal!r})")
    lay = 1 if layout == "bhsd" else 0
    b, hq = q.shape[0], q.shape[1 if lay else 2]
    lq, s = q.shape[2 if lay else 1], k.shape[2 if lay else 1]
    mask, bias = _mask_bias(attn_mask, (b, hq, lq, s))
    if seqlens_kv is not None:
        seqlens_kv = seqlens_kv.to(torch.int32)
    if alibi_slopes is not None:
        alibi_slopes = alibi_slopes.to(torch.float32)
    wl, wr = _window(window)
    sc = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    out, lse = torch.ops.sattn.attention(q, k, v, mask, bias, seqlens_kv, alibi_slopes, None, None, lay, code,
                                         wl, wr, sc, float(softcap), float(dropout_p), _seed(dropout_p))
    return (out, lse) if return_lse else out


def attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_kv, *, causal=None, window=None, alibi_slopes=None,
                     softcap=0.0, scale=None, dropout_p=0.0, return_lse=False):
    """Packed variable-length attention, as flash-attn's flash_attn_varlen_func: q (total_q, Hq, D),
    k (total_kv, Hkv, D), v (total_kv, Hkv, Dv); sequence b is rows cu_seqlens[b] .. cu_seqlens[b+1]-1.
    causal "bottom_right" is flash-attn's causal=True. Returns out (total_q, Hq, Dv), and the lse
    (Hq, total_q) with return_lse. Differentiable in q, k and v."""
    _check_tensors((("q", q), ("k", k), ("v", v), ("cu_seqlens_q", cu_seqlens_q),
                    ("cu_seqlens_kv", cu_seqlens_kv), ("alibi_slopes", alibi_slopes)))
    _check_dtypes(q, k, v)
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise RuntimeError("sattn.torch.attention_varlen: q, k, v must be (total, heads, dim)")
    code = {None: 0, False: 0, True: 2, "top_left": 1, "bottom_right": 2}.get(causal)
    if code is None:
        raise ValueError(f"causal must be None, \"top_left\" or \"bottom_right\" (got {causal!r})")
    wl, wr = _window(window)
    sc = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if alibi_slopes is not None:
        alibi_slopes = alibi_slopes.to(torch.float32)
    out, lse = torch.ops.sattn.attention(q, k, v, None, None, None, alibi_slopes, cu_seqlens_q.to(torch.int32),
                                         cu_seqlens_kv.to(torch.int32), 0, code, wl, wr, sc, float(softcap),
                                         float(dropout_p), _seed(dropout_p))
    return (out, lse) if return_lse else out


def _mask_bias(attn_mask, shape):
    """attn_mask broadcast (a view) to (B, H, L, S): bool -> mask, float -> float32 bias."""
    if attn_mask is None:
        return None, None
    try:
        m = attn_mask.expand(shape) if attn_mask.dim() <= 4 else None
    except RuntimeError:
        m = None
    if m is None:
        raise RuntimeError(f"sattn.torch: attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to "
                           f"{tuple(shape)}")
    if m.dtype == torch.bool:
        return m, None
    if not m.is_floating_point():
        raise RuntimeError(f"sattn.torch: attn_mask must be bool or floating point (got {m.dtype})")
    return None, (m if m.dtype == torch.float32 else m.to(torch.float32))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, *, window=None, alibi_slopes=None, softcap=0.0, seqlens_kv=None,
                                 return_lse=False):
    """torch.nn.functional.scaled_dot_product_attention on sattn: query (..., Hq, L, E),
    key (..., Hk, S, E), value (..., Hk, S, Ev); leading dims broadcast; attn_mask bool
    (True = take part) or float (added), broadcastable to (..., Hq, L, S); is_causal is
    top-left; enable_gqa lets Hk divide Hq. Extra keywords (sattn's): window (left, right)
    around the bottom-right diagonal, alibi_slopes (Hq,), softcap, seqlens_kv (B,) key
    lengths, return_lse (then (out, lse (..., Hq, L)))."""
    _check_tensors((("query", query), ("key", key), ("value", value), ("attn_mask", attn_mask)))
    _check_dtypes(query, key, value)
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.dim() < 2:
            raise RuntimeError(f"sattn.torch: {name} must have shape (..., L, E) (got {tuple(t.shape)})")
    if key.shape[-1] != query.shape[-1]:
        raise RuntimeError(f"sattn.torch: query and key must have the same embedding size E "
                           f"(got {query.shape[-1]} and {key.shape[-1]})")
    if key.shape[-2] != value.shape[-2]:
        raise RuntimeError(f"sattn.torch: key and value must have the same length S "
                           f"(got {key.shape[-2]} and {value.shape[-2]})")
    nd = max(query.dim(), key.dim(), value.dim(), 3)
    q, k, v = (t.reshape((1,) * (nd - t.dim()) + tuple(t.shape)) for t in (query, key, value))
    lead = torch.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
    hq, hk = q.shape[-3], k.shape[-3]
    if v.shape[-3] != hk:
        raise RuntimeError(f"sattn.torch: key and value must have the same heads (got {hk}, {v.shape[-3]})")
    if enable_gqa:
        if hq % hk:
            raise RuntimeError(f"sattn.torch: enable_gqa: key heads {hk} must divide query heads {hq}")
    elif hk != hq:
        if hk != 1 and hq != 1:
            raise RuntimeError(f"sattn.torch: query heads {hq} and key heads {hk} differ: pass enable_gqa=True "
                               "for grouped-query attention")
        hq = hk = max(hq, hk)
    q = q.expand(lead + (hq,) + tuple(q.shape[-2:]))
    k = k.expand(lead + (hk,) + tuple(k.shape[-2:]))
    v = v.expand(lead + (hk,) + tuple(v.shape[-2:]))
    B = math.prod(lead)
    q4, k4, v4 = (t.reshape((B,) + tuple(t.shape[-3:])) for t in (q, k, v))
    L, S = q4.shape[2], k4.shape[2]
    m4 = None
    if attn_mask is not None:
        try:
            m = attn_mask.expand(lead + (hq, L, S))
        except RuntimeError:
            raise RuntimeError(f"sattn.torch: attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to "
                               f"{tuple(lead) + (hq, L, S)}") from None
        m4 = m.reshape((B, hq, L, S))
    out, lse = attention(q4, k4, v4, causal="top_left" if is_causal else None, window=window,
                         seqlens_kv=seqlens_kv, attn_mask=m4, alibi_slopes=alibi_slopes, softcap=softcap,
                         scale=scale, dropout_p=dropout_p, return_lse=True)
    shape = tuple(query.shape[:-1]) + (value.shape[-1],)
    full = tuple(lead) + (hq, L, value.shape[-1])
    out = out.reshape(full)
    if len(full) > len(shape):
        out = out.reshape(shape)
    if return_lse:
        return out, lse.reshape(tuple(lead) + (hq, L))
    return out


# ---- transformers ----

def _pure_key_padding(mask):
    """For a bool mask (B, 1 or H, L, S) that only pads keys (each sequence's keys 0 .. n-1
    allowed for every query), the lengths n (B,) int32; else None."""
    if mask.dtype != torch.bool or mask.dim() != 4:
        return None
    keys = mask[:, :1, -1:, :]                     # the last query's row of each sequence
    if not torch.equal(mask, keys.expand_as(mask)):
        return None
    n = keys.reshape(mask.shape[0], -1).sum(-1)
    prefix = torch.arange(mask.shape[-1]).unsqueeze(0) < n.unsqueeze(1)
    if not torch.equal(keys.reshape(mask.shape[0], -1), prefix):
        return None
    return n.to(torch.int32)


def _transformers_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                            **kwargs):
    """transformers' attention interface: query (B, Hq, L, D), key/value (B, Hkv, S, D), the
    mask of sattn's mask interface (bool (B, 1, L, S), True = attend, or None); returns
    (out (B, L, Hq, D), None)."""
    if kwargs.get("output_attentions", False):
        raise RuntimeError("sattn does not return attention weights (output_attentions=True): "
                           "use attn_implementation=\"eager\" for them")
    if kwargs.get("position_bias") is not None:
        raise RuntimeError("sattn: a position_bias is not supported here (use \"sdpa\" or \"eager\")")
    q_len = query.shape[2]
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    # as "sdpa": causal when there is no mask and more than one query; the mask, when
    # given, already holds the causal rule and every window
    causal = "top_left" if (q_len > 1 and attention_mask is None and is_causal) else None
    seqlens_kv = None
    mask = attention_mask
    if mask is not None:
        if mask.dtype == torch.bool:
            seqlens_kv = _pure_key_padding(mask)
            if seqlens_kv is not None:
                mask = None                              # the fast path: key lengths
        elif not mask.is_floating_point():
            raise RuntimeError(f"sattn: attention_mask of dtype {mask.dtype}")
    softcap = kwargs.get("softcap") or 0.0
    out = attention(query, key, value, layout="bhsd", causal=causal, seqlens_kv=seqlens_kv, attn_mask=mask,
                    softcap=softcap, scale=scaling, dropout_p=dropout if module.training else 0.0)
    return out.transpose(1, 2), None


def register_transformers(name="sattn"):
    """Registers sattn with transformers' AttentionInterface (4.48 and later) under name and
    returns name, for attn_implementation=name. Where transformers has the attention-mask
    interface (masking_utils), sattn's masks are those of "sdpa" (bool, True = attend, None
    where the causal rule alone holds); before it, models build eager-style float masks
    (0 or the dtype's minimum), which sattn adds as a bias: the same weights."""
    try:
        from transformers import AttentionInterface
    except ImportError as e:
        raise RuntimeError("sattn: transformers' AttentionInterface needs transformers >= 4.48") from e
    AttentionInterface.register(name, _transformers_attention)
    try:
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    except ImportError:
        return name
    ALL_MASK_ATTENTION_FUNCTIONS.register(name, sdpa_mask)
    return name
