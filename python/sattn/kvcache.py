"""The KV cache: keys and values of the tokens seen so far, for generation."""
import ctypes
import weakref

import numpy as np

from . import _arrays as A
from . import _lib as L
from .functional import _scale

__all__ = ["KVCache"]


class KVCache:
    """sattn_kvcache: the keys and values of every token so far, for decoding.

      KVCache(batch, heads_kv, head_dim, head_dim_v=None, dtype=np.float32, capacity=0,
              max_tokens=0, window=0)

    append(k, v) adds n tokens: k (batch, n, heads_kv, head_dim), v (batch, n, heads_kv,
    head_dim_v), read as float32 in place (any strides, head dim contiguous) and stored
    in the cache's dtype (float32, float16 or bfloat16). attend(q) attends q (batch, n,
    heads_q, head_dim) of the n newest tokens to every cached token with bottom-right
    causal alignment, so decoding one token at a time gives the outputs of one causal
    forward. capacity: tokens allocated at first (0: 256), doubling as needed; max_tokens
    > 0 caps the length; window > 0 keeps a sliding window (each query sees itself and
    the window - 1 tokens before it).
    """

    def __init__(self, batch, heads_kv, head_dim, head_dim_v=None, dtype=np.float32, *,
                 capacity=0, max_tokens=0, window=0):
        code, npdt = A.storage([], dtype)
        cfg = L.KVCacheConfig(batch=int(batch), heads_kv=int(heads_kv), head_dim=int(head_dim),
                              head_dim_v=int(head_dim_v or 0), dtype=code, capacity=int(capacity),
                              max_tokens=int(max_tokens), window=int(window))
        h = ctypes.c_void_p()
        L.check(L.lib.sattn_kvcache_create(ctypes.byref(h), ctypes.byref(cfg)))
        self._h = h
        self._free = weakref.finalize(self, L.lib.sattn_kvcache_free, h)
        self.code, self.dtype = code, npdt
        c = self.config
        self.batch, self.heads_kv, self.head_dim = c["batch"], c["heads_kv"], c["head_dim"]
        self.head_dim_v = c["head_dim_v"]

    @property
    def config(self):
        """The configuration as created (head_dim_v resolved, capacity the current one)."""
        cfg = L.KVCacheConfig()
        L.check(L.lib.sattn_kvcache_get_config(self._h, ctypes.byref(cfg)))
        return {name: getattr(cfg, name) for name, _ in cfg._fields_}

    def __len__(self):
        """Tokens appended since creation or reset (those a window dropped included)."""
        return int(L.lib.sattn_kvcache_length(self._h))

    def reset(self):
        """Forgets every token (keeps the memory)."""
        L.lib.sattn_kvcache_reset(self._h)

    def append(self, k, v):
        """Appends n tokens: k (batch, n, heads_kv, head_dim), v (batch, n, heads_kv,
        head_dim_v), float32 (others are converted). Nothing is appended on error."""
        arrays = []
        for name, x, d in (("k", k, self.head_dim), ("v", v, self.head_dim_v)):
            x = A.as_storage(x, np.dtype(np.float32), L.F32)
            if x.ndim != 4 or x.shape[0] != self.batch or x.shape[2] != self.heads_kv or x.shape[3] != d:
                raise ValueError(f"{name} must be (batch={self.batch}, n, heads_kv={self.heads_kv}, "
                                 f"{d}) (got {x.shape})")
            x, st = A.tensor(x, (0, 1, 2), 3)
            arrays.append((x, (ctypes.c_int64 * 3)(*st)))
        (k, ks), (v, vs) = arrays
        if k.shape[1] != v.shape[1]:
            raise ValueError(f"k and v must hold the same tokens (got {k.shape[1]} and {v.shape[1]})")
        L.check(L.lib.sattn_kvcache_append(self._h, k.shape[1], A.ptr(k), ks, A.ptr(v), vs))

    def attend(self, q, *, scale=None, softcap=0.0, alibi_slopes=None, return_lse=False,
               out=None):
        """out (batch, n, heads_q, head_dim_v) = attention of q (batch, n, heads_q, head_dim),
        the queries of the n newest tokens, to every cached token (bottom-right causal,
        and the cache's window), in the cache's dtype. With return_lse also the float32
        lse (batch, heads_q, n)."""
        q = A.as_storage(q, self.dtype, self.code)
        if q.ndim != 4 or q.shape[0] != self.batch or q.shape[3] != self.head_dim:
            raise ValueError(f"q must be (batch={self.batch}, n, heads_q, {self.head_dim}) "
                             f"(got {q.shape})")
        b, n, hq, _ = q.shape
        q, st = A.tensor(q, (0, 1, 2), 3)
        p = L.Params(seq_q=n, heads_q=hq, dtype=self.code, scale=_scale(scale),
                     softcap=float(softcap))
        p.q_stride[:] = st
        slopes = None
        if alibi_slopes is not None:
            slopes = np.ascontiguousarray(alibi_slopes, dtype=np.float32)
            if slopes.shape != (hq,):
                raise ValueError(f"alibi_slopes must have shape ({hq},) (got {slopes.shape})")
            p.alibi_slopes = slopes.ctypes.data
        shape = (b, n, hq, self.head_dim_v)
        if out is None:
            out = np.empty(shape, self.dtype)
        elif out.shape != shape or out.dtype != self.dtype or not out.flags.writeable:
            raise ValueError(f"out must be a writable {self.dtype} array of shape {shape}")
        st = A.strides(out, (0, 1, 2), 3)
        if st is None:
            raise ValueError("out cannot be written in place: its last axis must be contiguous")
        p.o_stride[:] = st
        lse = np.empty((b, hq, n), np.float32) if return_lse else None
        L.check(L.lib.sattn_kvcache_attend(self._h, ctypes.byref(p), A.ptr(q), A.ptr(out), A.ptr(lse)))
        return (out, lse) if return_lse else out

    def step(self, q, k, v, **options):
        """append(k, v), then attend(q, **options): one generation step."""
        self.append(k, v)
        return self.attend(q, **options)
