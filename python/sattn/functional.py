"""Attention over NumPy arrays: the full C contract (attention, attention_backward,
attention_weights) and PyTorch's scaled_dot_product_attention on top of it."""
import ctypes
import math
import threading

import numpy as np

from . import _arrays as A
from . import _lib as L

__all__ = ["attention", "attention_backward", "attention_weights",
           "scaled_dot_product_attention", "scaled_dot_product_attention_backward",
           "manual_seed", "last_seed"]

# ---- dropout seeds ----
# A forward with dropout and no seed= draws a fresh one, as torch's generator would: the
# same call twice gives two masks. manual_seed makes the draws repeatable; last_seed
# gives the one the backward needs.
_seed_lock = threading.Lock()
_seed_rng = np.random.default_rng()
_last = threading.local()


def manual_seed(seed):
    """Seeds the generator that draws dropout seeds (for forwards given no seed=)."""
    global _seed_rng
    with _seed_lock:
        _seed_rng = np.random.default_rng(int(seed))


def last_seed():
    """The dropout seed of this thread's last forward with dropout_p > 0 (drawn or given),
    to pass as seed= to its backward; None before any."""
    return getattr(_last, "seed", None)


def _fresh_seed():
    with _seed_lock:
        return int(_seed_rng.integers(0, 2**64, dtype=np.uint64))


def _forward_seed(seed, dropout_p):
    """The seed a forward uses: seed, or a fresh draw when it is None and dropout is on."""
    if seed is None:
        if not dropout_p:
            return 0
        seed = _fresh_seed()
    if dropout_p:
        _last.seed = int(seed)
    return seed


def _backward_seed(seed, dropout_p):
    if seed is None:
        if dropout_p:
            raise ValueError("dropout in the backward needs the forward's seed: pass seed= "
                             "(sattn.last_seed() gives the one the last forward drew)")
        return 0
    return seed

# An explicit scale of 0 (uniform weights) cannot be passed as 0, which the contract
# reads as "default"; the smallest positive float makes every score 0 to within 1e-38.
_ZERO_SCALE = float(np.finfo(np.float32).smallest_subnormal)

_PRODUCTS = {"f32": L.PRODUCTS_F32, "bf16": L.PRODUCTS_BF16}
_CAUSAL = {None: L.CAUSAL_NONE, False: L.CAUSAL_NONE, "none": L.CAUSAL_NONE,
           "top_left": L.CAUSAL_TOP_LEFT, "bottom_right": L.CAUSAL_BOTTOM_RIGHT}

# (batch, seq, head, dim) axes of q/k/v/out per layout, with and without a batch axis
_AXES = {("bshd", True): (0, 1, 2, 3), ("bshd", False): (None, 0, 1, 2),
         ("bhsd", True): (0, 2, 1, 3), ("bhsd", False): (None, 1, 0, 2)}
_SHAPES = {("bshd", True): "(batch, seq, heads, dim)", ("bshd", False): "(total, heads, dim)",
           ("bhsd", True): "(batch, heads, seq, dim)", ("bhsd", False): "(heads, total, dim)"}


def _scale(scale):
    if scale is None:
        return 0.0
    scale = float(scale)
    return _ZERO_SCALE if scale == 0.0 else scale


def _window_side(w, side):
    if w is None or (isinstance(w, (int, np.integer)) and w < 0):
        return 0
    if not isinstance(w, (int, np.integer)) or w == 0:
        raise ValueError(f"window {side} must be None (unbounded), a negative int (unbounded) or "
                         f"an int >= 1 (got {w!r}); a right bound of 0 is causal=\"bottom_right\"")
    return int(w)


class _Call:
    """One call's sattn_params and the arrays its pointers point into."""

    def __init__(self):
        self.p = L.Params()
        self.keep = []

    def pin(self, a):
        """Keeps a alive as long as the params may be used; returns its address."""
        if a is None:
            return None
        self.keep.append(a)
        return a.ctypes.data


def _shape_of(a, axes):
    return tuple(1 if ax is None else a.shape[ax] for ax in axes)


def _prepare(q, k, v, *, layout="bshd", causal=None, window=None, seqlens_q=None,
             seqlens_kv=None, cu_seqlens_q=None, cu_seqlens_kv=None, bias=None, mask=None,
             alibi_slopes=None, softcap=0.0, scale=None, dropout_p=0.0, seed=0, dtype=None,
             dense=False, products="f32"):
    """Checks the arrays' shapes against each other (the C side trusts them), maps them to
    element strides (copying only what cannot be described) and fills a sattn_params.
    dense: q, k, v must be dense, since the backward writes dq, dk, dv with their strides."""
    if layout not in ("bshd", "bhsd"):
        raise ValueError(f"layout must be \"bshd\" or \"bhsd\" (got {layout!r})")
    if causal not in _CAUSAL:
        raise ValueError(f"causal must be None, \"top_left\" or \"bottom_right\" (got {causal!r})")
    if products not in _PRODUCTS:
        raise ValueError(f"products must be \"f32\" or \"bf16\" (got {products!r})")
    q, k = np.asarray(q), np.asarray(k)
    v = None if v is None else np.asarray(v)
    code, npdt = A.storage([q, k, v], dtype)
    c = _Call()
    c.code, c.npdt, c.layout = code, npdt, layout
    q, k = A.as_storage(q, npdt, code), A.as_storage(k, npdt, code)
    v = None if v is None else A.as_storage(v, npdt, code)
    if dense:
        q, k, v = A.densified(q), A.densified(k), A.densified(v) if v is not None else None

    packed_q, packed_kv = cu_seqlens_q is not None, cu_seqlens_kv is not None
    aq, akv = _AXES[layout, not packed_q], _AXES[layout, not packed_kv]
    for name, x, packed in (("q", q, packed_q), ("k", k, packed_kv), ("v", v, packed_kv)):
        if x is not None and x.ndim != (3 if packed else 4):
            raise ValueError(f"{name} must be {_SHAPES[layout, not packed]} for layout={layout!r}"
                             f"{' with cu_seqlens' if packed else ''} (got shape {x.shape})")
    bq, tq, hq, d = _shape_of(q, aq)
    bk, tk, hkv, dk = _shape_of(k, akv)
    if v is not None:
        bv, tv, hv, dv = _shape_of(v, akv)
        if (bv, tv, hv) != (bk, tk, hkv):
            raise ValueError(f"k and v must agree in batch, seq and heads (k {k.shape}, v {v.shape})")
    else:
        dv = d
    if dk != d:
        raise ValueError(f"q and k must have the same head dim (q {q.shape}, k {k.shape})")

    # batch and the sequence extents
    if not packed_q:
        B = bq
    elif not packed_kv:
        B = bk
    else:
        B = int(np.size(cu_seqlens_q)) - 1
    if B < 0:
        raise ValueError("cu_seqlens_q must hold batch + 1 offsets")
    if not packed_kv and bk != B:
        raise ValueError(f"q has batch {B} but k and v have {bk}")
    cu_q = A.int32_vector(cu_seqlens_q, B + 1, "cu_seqlens_q")
    cu_kv = A.int32_vector(cu_seqlens_kv, B + 1, "cu_seqlens_kv")

    def extent(cu, t, name, tensors):
        if cu is None:
            return t
        if B > 0 and int(cu.max()) > t:  # rows the C side would read past the array's end
            raise ValueError(f"{name}: offset {int(cu.max())} is past the {t} rows of {tensors}")
        return max(0, int(np.diff(cu).max())) if B > 0 else 0

    Lq = extent(cu_q, tq, "cu_seqlens_q", "q")
    Lkv = extent(cu_kv, tk, "cu_seqlens_kv", "k and v")

    p = c.p
    p.batch, p.seq_q, p.seq_kv = B, Lq, Lkv
    p.heads_q, p.heads_kv, p.head_dim, p.head_dim_v = hq, hkv, d, dv
    p.dtype = code
    q, st = A.tensor(q, aq[:3], aq[3])
    p.q_stride[:] = st
    k, st = A.tensor(k, akv[:3], akv[3])
    p.k_stride[:] = st
    if v is not None:
        v, st = A.tensor(v, akv[:3], akv[3])
        p.v_stride[:] = st
    c.q, c.k, c.v = q, k, v
    c.aq, c.akv = aq, akv
    c.B, c.Lq, c.Lkv, c.Hq, c.Hkv, c.D, c.Dv = B, Lq, Lkv, hq, hkv, d, dv
    c.out_shape = tuple(dv if i == aq[3] else n for i, n in enumerate(q.shape))
    c.lse_shape = (hq, int(cu_q[-1]) if B > 0 else 0) if packed_q else (B, hq, Lq)
    c.packed_q, c.packed_kv = packed_q, packed_kv

    # options
    p.scale = _scale(scale)
    p.causal = _CAUSAL[causal]
    if window is not None:
        if not isinstance(window, (tuple, list)) or len(window) != 2:
            raise ValueError(f"window must be a (left, right) pair (got {window!r})")
        p.window_left = _window_side(window[0], "left")
        p.window_right = _window_side(window[1], "right")
    p.seqlens_q = c.pin(A.int32_vector(seqlens_q, B, "seqlens_q"))
    p.seqlens_kv = c.pin(A.int32_vector(seqlens_kv, B, "seqlens_kv"))
    p.cu_seqlens_q = c.pin(cu_q)
    p.cu_seqlens_kv = c.pin(cu_kv)
    full = (B, hq, Lq, Lkv)
    if bias is not None:
        b = A.as_storage(bias, np.dtype(np.float32), L.F32)
        b, st = A.strides4(_broadcast(b, full, "bias"))
        p.bias = c.pin(b)
        p.bias_stride[:] = st
    if mask is not None:
        m = _keep_mask(mask)
        m, st = A.strides4(_broadcast(m, full, "mask"))
        p.mask = c.pin(m)
        p.mask_stride[:] = st
    if alibi_slopes is not None:
        s = np.ascontiguousarray(alibi_slopes, dtype=np.float32)
        if s.shape != (hq,):
            raise ValueError(f"alibi_slopes must have shape ({hq},) (got {s.shape})")
        p.alibi_slopes = c.pin(s)
    p.softcap = float(softcap)
    p.dropout_p = float(dropout_p)
    p.seed = int(seed)  # a field out of range raises Error with its bound
    p.products = _PRODUCTS[products]
    return c


def _broadcast(a, shape, name):
    try:
        return np.broadcast_to(a, shape)
    except ValueError:
        raise ValueError(f"{name} of shape {np.shape(a)} does not broadcast to "
                         f"(batch, heads_q, seq_q, seq_kv) = {shape}") from None


def _keep_mask(mask):
    """A mask as uint8, nonzero = may attend: a bool array is viewed, not copied."""
    m = np.asarray(mask)
    if m.dtype == np.bool_:
        return m.view(np.uint8)
    if m.dtype == np.uint8:
        return m
    return A._counted_copy(m != 0, np.uint8)


def _out_array(c, out):
    """The output array: new (zeros where rows may be left unwritten), or the caller's."""
    if out is None:
        make = np.zeros if c.packed_q else np.empty
        return make(c.out_shape, c.npdt)
    if not isinstance(out, np.ndarray):
        raise ValueError("out must be a NumPy array")
    o = out if out.dtype == c.npdt or out.dtype != np.uint16 else out.view(c.npdt)
    if o.dtype != c.npdt or o.shape != c.out_shape:
        raise ValueError(f"out must be a {c.npdt} array of shape {c.out_shape} "
                         f"(got {out.dtype} {out.shape})")
    if not o.flags.writeable:
        raise ValueError("out is read-only")
    return o


def _o_strides(c, o, name="out"):
    st = A.strides(o, c.aq[:3], c.aq[3])
    if st is None:
        raise ValueError(f"{name} cannot be written in place: its dim axis must be contiguous and "
                         "its other strides non-negative whole elements")
    if o.size and not any(st) and any(n > 1 for n in _shape_of(o, c.aq)[:3]):
        raise ValueError(f"{name} has only zero strides: it would overlap itself")
    return st


def _forward(c, out=None, want_lse=True):
    o = _out_array(c, out)
    c.p.o_stride[:] = _o_strides(c, o)
    lse = None
    if want_lse:
        lse = np.full(c.lse_shape, -np.inf, np.float32) if c.packed_q else np.empty(c.lse_shape, np.float32)
    if c.B > 0:  # an empty batch (which the contract rejects) has nothing to compute
        L.check(L.lib.sattn_forward(ctypes.byref(c.p), A.ptr(c.q), A.ptr(c.k), A.ptr(c.v), A.ptr(o),
                                    A.ptr(lse)))
    return o, lse


_DOC_OPTIONS = """
    Options (every one off by default; all that are given apply at once):
      layout        "bshd": q (batch, seq_q, heads_q, head_dim), k (batch, seq_kv, heads_kv,
                    head_dim), v (batch, seq_kv, heads_kv, head_dim_v), out like q with
                    head_dim_v. "bhsd": the seq and heads axes swapped. With cu_seqlens_*
                    that tensor has no batch axis: (total, heads, dim) or (heads, total, dim).
      causal        None, "top_left" (query i sees keys j <= i, PyTorch's is_causal) or
                    "bottom_right" (keys j <= i + len_kv - len_q, FlashAttention's).
      window        (left, right): keys j with d - left <= j <= d + right around the
                    bottom-right diagonal d = i + len_kv - len_q; None or a negative side
                    is unbounded.
      seqlens_q     (batch,) int: valid query rows per sequence; rows past it give zeros.
      seqlens_kv    (batch,) int: valid keys per sequence (key padding).
      cu_seqlens_q  (batch + 1,) int: packed variable-length batch, sequence b in rows
      cu_seqlens_kv cu[b] .. cu[b+1]-1 of the total axis.
      bias          float, broadcastable to (batch, heads_q, seq_q, seq_kv), added to the
                    scores; -inf masks. Copied only if not float32 or not describable.
      mask          bool (or uint8), broadcastable to the same shape: True = may attend.
      alibi_slopes  (heads_q,) float: score -= slope * |i + len_kv - len_q - j|.
      softcap       > 0: score = softcap * tanh(score / softcap) before bias and ALiBi.
      scale         None: 1/sqrt(head_dim).
      dropout_p     probability of dropping each attention weight (kept ones scaled by
      seed          1/(1 - dropout_p)); the mask is Philox4x32-10 of (seed, b, h, i, j), the
                    rule in sattn.h, so the backward with the same seed reproduces it.
                    None: a fresh seed per forward (sattn.last_seed() returns it; the
                    backward with dropout must be given it).
      dtype         None: the arrays' dtype (float32, float16, or ml_dtypes.bfloat16; any
                    other is converted to float32). "float16" / "bfloat16" with uint16
                    arrays: raw bits.
      products      "f32" (default): every product in float32. "bf16" (attention only):
                    with bfloat16 storage on a CPU with bf16 dot products
                    (sattn.products_run("bf16")), q·kᵀ multiplies the stored values
                    (exact products, float32 sums) and the weights are rounded to
                    bfloat16 before P·V: out moves by at most 2^-8 of sum_j P |v_j|
                    (sattn.h, sattn_products). Elsewhere float32 products run.

    Arrays are read in place whatever their strides, as long as the head-dim axis is
    contiguous, every stride is a non-negative whole number of elements (0 broadcasts)
    and the dtype is the storage type; anything else is copied first (copies_made()).
    A row with every key masked gives zeros (and lse = -inf), never NaN.
    Errors (from these checks or from the C library, with its message) raise ValueError.
"""


def attention(q, k, v, *, layout="bshd", causal=None, window=None, seqlens_q=None,
              seqlens_kv=None, cu_seqlens_q=None, cu_seqlens_kv=None, bias=None, mask=None,
              alibi_slopes=None, softcap=0.0, scale=None, dropout_p=0.0, seed=None,
              return_lse=False, out=None, dtype=None, products="f32"):
    """out = softmax(scale * q kᵀ + masks) v per head: the whole C contract (sattn_forward).

    Returns out, or (out, lse) with return_lse, where lse (float32) is the natural
    log-sum-exp of each row's scores, (batch, heads_q, seq_q), or (heads_q, total_q) with
    cu_seqlens_q. out= takes an array to write into (any layout with a contiguous
    head-dim axis), which is then returned.
    """
    c = _prepare(q, k, v, layout=layout, causal=causal, window=window, seqlens_q=seqlens_q,
                 seqlens_kv=seqlens_kv, cu_seqlens_q=cu_seqlens_q, cu_seqlens_kv=cu_seqlens_kv,
                 bias=bias, mask=mask, alibi_slopes=alibi_slopes, softcap=softcap, scale=scale,
                 dropout_p=dropout_p, seed=_forward_seed(seed, dropout_p), dtype=dtype,
                 products=products)
    o, lse = _forward(c, out, want_lse=return_lse)
    return (o, lse) if return_lse else o


attention.__doc__ += _DOC_OPTIONS


def attention_backward(dout, q, k, v, out=None, lse=None, **options):
    """(dq, dk, dv): gradients of sum(out * dout) with respect to q, k and v
    (sattn_backward), with the options of the forward (the same keywords, the same seed).

    dout has out's shape. out and lse are the forward's (attention(..., return_lse=True));
    without them the forward is run again first. dq, dk and dv have the shapes, dtype and
    (for dense inputs) the strides of q, k and v, since the contract writes each gradient
    with its input's strides: an input with gaps or broadcast axes is copied first.
    With GQA, dk and dv sum over the query heads that share a kv head.
    """
    options["seed"] = _backward_seed(options.get("seed"), options.get("dropout_p", 0.0))
    return _backward(_prepare(q, k, v, dense=True, **options), dout, out, lse)


def _backward(c, dout, out=None, lse=None):
    dout = A.as_storage(dout, c.npdt, c.code)
    if dout.shape != c.out_shape:
        raise ValueError(f"dout must have out's shape {c.out_shape} (got {dout.shape})")
    if (out is None) != (lse is None):
        raise ValueError("give both out and lse from the forward, or neither")
    if out is None:
        # the forward writes out with dout's layout: the contract lays both out by o_stride
        if A.strides(dout, c.aq[:3], c.aq[3]) is None or not A.dense(dout):
            dout = A._counted_copy(dout)
        out, lse = _forward(c, A.like(dout, 0 if c.packed_q else None))
    else:
        out = A.as_storage(out, c.npdt, c.code)
        if out.shape != c.out_shape:
            raise ValueError(f"out must have shape {c.out_shape} (got {out.shape})")
        lse = np.asarray(lse)
        if lse.shape != c.lse_shape:
            raise ValueError(f"lse must have shape {c.lse_shape} (got {lse.shape})")
        if lse.dtype != np.float32 or not lse.flags.c_contiguous:
            lse = A._counted_copy(lse, np.float32)
        if A.strides(out, c.aq[:3], c.aq[3]) is None:
            out = A._counted_copy(out)
        if not A.same_layout(out, dout):
            if not A.dense(out):
                out = A._counted_copy(out)
            dout = A.copy_into(A.like(out), dout)
    c.p.o_stride[:] = A.strides(out, c.aq[:3], c.aq[3])
    grads = [A.like(x, 0) for x in (c.q, c.k, c.v)]
    if c.B == 0:
        return tuple(grads)
    L.check(L.lib.sattn_backward(ctypes.byref(c.p), A.ptr(c.q), A.ptr(c.k), A.ptr(c.v), A.ptr(out),
                                 A.ptr(lse), A.ptr(dout), *(A.ptr(g) for g in grads)))
    return tuple(grads)


def attention_weights(q, k, lse, *, row0=0, rows=None, average=False, **options):
    """The softmax weights P (before dropout) of attention(q, k, v, **options), recomputed
    exactly from q, k and the forward's lse (sattn_attention_weights), for query rows
    row0 .. row0 + rows - 1 of every sequence (rows None: to seq_q).

    Returns float32 (batch, heads_q, rows, seq_kv), or (batch, rows, seq_kv) averaged over
    the query heads. Masked keys and rows past a sequence's length get 0.
    """
    c = _prepare(q, k, None, **options)
    lse = np.asarray(lse)
    if lse.shape != c.lse_shape:
        raise ValueError(f"lse must have shape {c.lse_shape} (got {lse.shape})")
    if lse.dtype != np.float32 or not lse.flags.c_contiguous:
        lse = A._counted_copy(lse, np.float32)
    if rows is None:
        rows = c.Lq - int(row0)
    shape = (c.B, rows, c.Lkv) if average else (c.B, c.Hq, rows, c.Lkv)
    w = np.zeros([max(0, n) for n in shape], np.float32)
    L.check(L.lib.sattn_attention_weights(ctypes.byref(c.p), A.ptr(c.q), A.ptr(c.k), A.ptr(lse),
                                          int(row0), int(rows), int(bool(average)), A.ptr(w)))
    return w


# ---- PyTorch's scaled_dot_product_attention ----

def _merge_batch(x, nlead):
    """x (*lead, a, b, c) as a (batch, a, b, c) view with one batch stride, or a copy
    when the leading axes cannot be walked with one stride."""
    lead = [(n, s) for n, s in zip(x.shape[:nlead], x.strides[:nlead]) if n != 1]
    b = math.prod(x.shape[:nlead])
    ok = all(s0 == s1 * n1 for (_, s0), (n1, s1) in zip(lead, lead[1:]))
    if not ok:
        x = A._counted_copy(x)
        lead = [(n, s) for n, s in zip(x.shape[:nlead], x.strides[:nlead]) if n != 1]
    sb = lead[-1][1] if lead else 0
    return np.lib.stride_tricks.as_strided(x, (b,) + x.shape[nlead:], (sb,) + x.strides[nlead:],
                                           writeable=False)


def _sum_to(g, shape):
    """g summed over the axes that broadcasting added to an array of this shape."""
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape)
                                       if n == 1 and g.shape[extra + i] != 1)
    if axes:  # summed in float32 (at least), stored back in g's dtype
        acc = np.promote_types(g.dtype, np.float32) if g.dtype.kind == "f" else np.float32
        g = g.sum(axis=axes, dtype=acc, keepdims=True).astype(g.dtype)
    return g.reshape(shape)


class _Sdpa:
    """query (..., Hq, L, E), key (..., Hk, S, E), value (..., Hk, S, Ev) as one bhsd call."""

    def __init__(self, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                 seed, dtype, dense):
        q, k, v = (np.asarray(x) for x in (query, key, value))
        for name, x in (("query", q), ("key", k), ("value", v)):
            if x.ndim < 2:
                raise ValueError(f"{name} must have shape (..., L, E) (got {x.shape})")
        if k.shape[-2] != v.shape[-2]:
            raise ValueError(f"key and value must have the same length S (got {k.shape}, {v.shape})")
        self.shapes = [x.shape for x in (q, k, v)]
        lead = np.broadcast_shapes(*(x.shape[:-3] for x in (q, k, v)))
        heads = [x.shape[-3] if x.ndim >= 3 else 1 for x in (q, k, v)]
        if enable_gqa:
            if heads[1] != heads[2]:
                raise ValueError(f"key and value must have the same heads (got {heads[1]}, {heads[2]})")
            hq, hkv = heads[0], heads[1]
        else:
            try:
                hq = hkv = np.broadcast_shapes((heads[0],), (heads[1],), (heads[2],))[0]
            except ValueError:
                raise ValueError(f"query, key and value heads {tuple(heads)} do not broadcast "
                                 "(enable_gqa=True for grouped-query attention)") from None
        n = len(lead)
        views = []
        for x, h in zip((q, k, v), (hq, hkv, hkv)):
            full = lead + (h,) + x.shape[-2:]
            x4 = x.reshape((1,) * (len(full) - x.ndim) + x.shape) if x.ndim < len(full) else x
            views.append(_merge_batch(np.broadcast_to(x4, full), n))
        self.lead, self.hq, self.n = lead, hq, n
        self.ndim_out = max(x.ndim for x in (q, k, v))
        Lq, S = q.shape[-2], k.shape[-2]
        bias = mask = None
        if attn_mask is not None:
            m = np.asarray(attn_mask)
            try:
                m = np.broadcast_to(m, lead + (hq, Lq, S))
            except ValueError:
                raise ValueError(f"attn_mask of shape {m.shape} does not broadcast to "
                                 f"{lead + (hq, Lq, S)}") from None
            m4 = _merge_batch(m, n)
            if m.dtype == np.bool_:
                mask = m4
            else:
                bias = m4
        self.c = _prepare(views[0], views[1], views[2], layout="bhsd",
                          causal="top_left" if is_causal else None, bias=bias, mask=mask,
                          scale=scale, dropout_p=dropout_p, seed=seed, dtype=dtype, dense=dense)

    def torch_shape(self, shape4):
        """(B, H, L, X) -> PyTorch's output shape (*lead, H, L, X), or (L, X) for 2-D inputs."""
        return tuple(shape4[2:]) if self.ndim_out == 2 else self.lead + tuple(shape4[1:])

    def shape_out(self, a4):
        return a4.reshape(self.torch_shape(a4.shape))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False, *, seed=None,
                                 dtype=None):
    """torch.nn.functional.scaled_dot_product_attention over NumPy arrays.

      query     (..., Hq, L, E)   or (..., L, E)
      key       (..., Hk, S, E)   Hk = Hq, broadcastable, or a divisor of Hq with enable_gqa
      value     (..., Hk, S, Ev)
      attn_mask broadcastable to (..., Hq, L, S): bool True = take part in attention,
                float = added to the scores (-inf masks)
      returns   (..., Hq, L, Ev), the dtype of the inputs (float32, float16 or
                ml_dtypes.bfloat16; others are computed in float32)

    The leading dims broadcast as in PyTorch. is_causal is top-left causal (query i sees
    keys j <= i). scale None is 1/sqrt(E). Differences from PyTorch: a row with every key
    masked gives zeros (never NaN); dropout is the deterministic Philox rule of sattn.h
    under seed (keyword): None draws a fresh one per call (sattn.manual_seed makes the
    draws repeatable), and the backward needs the same one (sattn.last_seed()); is_causal
    and attn_mask may be given together (both apply).
    Strided inputs are read in place (see sattn.attention); leading dims that one stride
    cannot walk are copied.
    """
    s = _Sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
              _forward_seed(seed, dropout_p), dtype, dense=False)
    o, _ = _forward(s.c, want_lse=False)
    return s.shape_out(o)


def scaled_dot_product_attention_backward(grad_output, query, key, value, attn_mask=None,
                                          dropout_p=0.0, is_causal=False, scale=None,
                                          enable_gqa=False, *, seed=None, dtype=None):
    """(grad_query, grad_key, grad_value) of scaled_dot_product_attention: the gradients of
    sum(output * grad_output), as torch.autograd gives them, each of its input's shape
    (summed over broadcast dims; with enable_gqa, over the query heads of a kv head).

      grad_output (..., Hq, L, Ev), the output's shape
    Takes the forward's arguments (the same seed with dropout) and runs the forward again
    for its log-sum-exp. No gradient for a float attn_mask.
    """
    s = _Sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
              _backward_seed(seed, dropout_p), dtype, dense=True)
    c = s.c
    g = A.as_storage(grad_output, c.npdt, c.code)
    want = s.torch_shape(c.out_shape)
    if g.shape != want:
        raise ValueError(f"grad_output must have the output's shape {want} (got {g.shape})")
    g4 = g.reshape(c.out_shape) if g.ndim < 4 else _merge_batch(g, s.n)
    grads = _backward(c, g4)
    out = []
    for grad, shape, h in zip(grads, s.shapes, (c.Hq, c.Hkv, c.Hkv)):
        full = s.lead + (h,) + grad.shape[2:]
        out.append(_sum_to(grad.reshape(full), shape))
    return tuple(out)
