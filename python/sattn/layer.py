"""torch.nn.MultiheadAttention (self-attention) over the C layer sattn_mha."""
import ctypes
import weakref

import numpy as np

from . import _arrays as A
from . import _lib as L
from .functional import _fresh_seed, _scale
from .kvcache import KVCache

__all__ = ["MultiheadAttention"]


def _param_view(fn, handle, name, owner):
    """A writable float32 view of the C layer's named array, keeping the layer alive."""
    n = ctypes.c_int64()
    addr = fn(handle, None if name is None else name.encode(), ctypes.byref(n))
    if not addr:
        L.check(L.ERR_INVALID)
    buf = (ctypes.c_float * n.value).from_address(addr)
    buf._owner = owner  # the view's base chain ends here, so the layer outlives the view
    return np.frombuffer(buf, dtype=np.float32)


class MultiheadAttention:
    """torch.nn.MultiheadAttention for self-attention, with grouped-query heads.

      MultiheadAttention(embed_dim, num_heads, *, bias=True, batch_first=True,
                         num_kv_heads=None, dropout=0.0, head_dim=None, dtype=np.float32,
                         seed=None)

    y = out_proj(attention(q_proj(x), k_proj(x), v_proj(x))) with num_heads query heads
    and num_kv_heads key/value heads (None: num_heads; 1: multi-query), each of head_dim
    (None: embed_dim // num_heads). Parameters are float32 and named as PyTorch names
    them: "in_proj_weight" (H*D + 2*Hkv*D, E), or "q_proj_weight" (H*D, E),
    "k_proj_weight" and "v_proj_weight" (Hkv*D, E); "in_proj_bias" (H*D + 2*Hkv*D,),
    "out_proj.weight" (E, H*D), "out_proj.bias" (E,). They start as PyTorch's do (Xavier
    uniform projections, zero biases); load_state_dict loads a torch layer's.

    dtype is the storage of inputs and outputs (float32, float16, ml_dtypes.bfloat16);
    the parameters and the math are float32. dropout applies in training mode (the
    default, as in PyTorch: see train() and eval()), drawn with the Philox rule of
    sattn.h from the attribute seed, which advances by one each training forward (the
    backward reuses the forward's); seed=None starts it at a fresh draw (repeatable
    after sattn.manual_seed).
    """

    def __init__(self, embed_dim, num_heads, *, bias=True, batch_first=True, num_kv_heads=None,
                 dropout=0.0, head_dim=None, dtype=np.float32, seed=None):
        code, npdt = A.storage([], dtype)
        cfg = L.MhaConfig(embed_dim=int(embed_dim), num_heads=int(num_heads),
                          num_kv_heads=int(num_kv_heads or 0), head_dim=int(head_dim or 0),
                          bias=int(bool(bias)), dtype=code)
        h = ctypes.c_void_p()
        L.check(L.lib.sattn_mha_create(ctypes.byref(h), ctypes.byref(cfg)))
        self._h = h
        self._free = weakref.finalize(self, L.lib.sattn_mha_free, h)
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.num_kv_heads = int(num_kv_heads or num_heads)
        self.head_dim = int(head_dim or embed_dim // num_heads)
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.code, self.dtype = code, npdt
        self.training = True
        # None: a fresh start from sattn's seed generator, so two layers drop differently
        self.seed = _fresh_seed() if seed is None else int(seed)
        self._saved = None
        self._reset_parameters()

    # ---- parameters ----

    def _names(self):
        if self.num_kv_heads == self.num_heads:
            w = ["in_proj_weight"]
        else:
            w = ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
        names = w + (["in_proj_bias"] if self.bias else []) + ["out_proj.weight"]
        return names + (["out_proj.bias"] if self.bias else [])

    def _shape(self, name):
        E, HD, KD = self.embed_dim, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        return {"in_proj_weight": (HD + 2 * KD, E), "q_proj_weight": (HD, E),
                "k_proj_weight": (KD, E), "v_proj_weight": (KD, E),
                "in_proj_bias": (HD + 2 * KD,), "out_proj.weight": (E, HD),
                "out_proj.bias": (E,)}[name]

    def parameters(self):
        """{name: writable float32 view of the parameter}, PyTorch's names and shapes."""
        return {n: _param_view(L.lib.sattn_mha_param, self._h, n, self).reshape(self._shape(n))
                for n in self._names()}

    def gradients(self):
        """{name: float32 view of the gradient the last backward wrote}."""
        return {n: _param_view(L.lib.sattn_mha_grad, self._h, n, self).reshape(self._shape(n))
                for n in self._names()}

    def state_dict(self):
        """{name: float32 copy of the parameter}: the keys load_state_dict takes."""
        return {n: a.copy() for n, a in self.parameters().items()}

    def load_state_dict(self, state, strict=True):
        """Loads parameters by PyTorch's names and shapes (NumPy arrays, or anything
        np.asarray takes): the state_dict() of a torch.nn.MultiheadAttention of the same
        embed_dim and num_heads (with "in_proj_weight" or the three "*_proj_weight").
        strict: every parameter must be given and no other name."""
        state = dict(state)
        known = {"in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
                 "out_proj.weight"} | ({"in_proj_bias", "out_proj.bias"} if self.bias else set())
        unknown = sorted(set(state) - known)
        if unknown and strict:
            raise ValueError(f"unexpected parameters {unknown}; this layer has {sorted(known)}"
                             + ("" if self.bias else " (created with bias=False)"))
        given = {n for n, a in state.items() if a is not None}
        split = {"q_proj_weight", "k_proj_weight", "v_proj_weight"}
        if "in_proj_weight" in given and split & given:
            raise ValueError("give in_proj_weight or q/k/v_proj_weight, not both")
        if strict:
            missing = [] if "in_proj_weight" in given or split <= given else \
                ["in_proj_weight (or q_proj_weight, k_proj_weight and v_proj_weight)"]
            names = ["out_proj.weight"] + (["in_proj_bias", "out_proj.bias"] if self.bias else [])
            missing += [n for n in names if n not in given]
            if missing:
                raise ValueError(f"missing parameters: {', '.join(missing)}")
        for name in sorted(set(state) & known):
            value = state[name]
            if value is None:  # torch registers in_proj_weight as None beside the q/k/v ones
                continue
            a = np.asarray(value, dtype=np.float32)
            if a.shape != self._shape(name):
                raise ValueError(f"{name} must have shape {self._shape(name)} (got {a.shape})")
            a = np.ascontiguousarray(a)
            L.check(L.lib.sattn_mha_set(self._h, name.encode(), A.ptr(a), a.size))

    def _reset_parameters(self, rng=None):
        """PyTorch's initialisation: Xavier-uniform in_proj_weight, out_proj.weight uniform in
        ±1/sqrt(H*D), zero biases."""
        rng = np.random.default_rng(rng)
        params = self.parameters()
        w = _param_view(L.lib.sattn_mha_param, self._h, "in_proj_weight", self)
        w = w.reshape(self._shape("in_proj_weight"))
        bound = np.sqrt(6.0 / (w.shape[0] + w.shape[1]))
        w[...] = rng.uniform(-bound, bound, w.shape)
        wo = params["out_proj.weight"]
        wo[...] = rng.uniform(-1, 1, wo.shape) / np.sqrt(wo.shape[1])
        for n in ("in_proj_bias", "out_proj.bias"):
            if n in params:
                params[n][...] = 0.0

    def train(self, mode=True):
        """Training mode: dropout applies (the default)."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Inference mode: no dropout."""
        return self.train(False)

    # ---- forward and backward ----

    def _tokens(self, x, name):
        """x as the C layer's packed (batch, seq, embed_dim) array in the storage dtype."""
        x = np.asarray(x)
        if x.ndim == 2:
            x = x[None]
        elif x.ndim == 3:
            if not self.batch_first:
                x = x.transpose(1, 0, 2)
        else:
            raise ValueError(f"{name} must be (batch, seq, embed_dim) "
                             f"{'' if self.batch_first else '(seq, batch, embed_dim) '}or "
                             f"(seq, embed_dim) (got {x.shape})")
        if x.shape[2] != self.embed_dim:
            raise ValueError(f"{name} must have embed_dim = {self.embed_dim} features (got {x.shape})")
        x = A.as_storage(x, self.dtype, self.code)
        if not x.flags.c_contiguous:
            x = A._counted_copy(x)
        return x

    def _untokens(self, y, batched):
        if not batched:
            return y[0]
        return y if self.batch_first else y.transpose(1, 0, 2)

    def _options(self, N, Lx, key_padding_mask, attn_mask, is_causal, batched):
        """sattn_params of the masking options, and the arrays they point into."""
        H = self.num_heads
        p, keep = L.Params(), []
        keeps, adds = [], []
        if key_padding_mask is not None:
            kpm = np.asarray(key_padding_mask)
            if not batched:
                kpm = kpm[None]
            if kpm.shape != (N, Lx):
                raise ValueError(f"key_padding_mask must be (batch, seq) = {(N, Lx)} (got {kpm.shape})")
            if kpm.dtype == np.bool_:
                # True = ignore. Padding at the end of each sequence is a key length, which
                # lets the kernel skip those keys' blocks; any other pattern is a mask.
                if Lx == 0 or np.all(np.diff(kpm.view(np.int8), axis=1) >= 0):
                    lens = np.ascontiguousarray(Lx - kpm.sum(axis=1), dtype=np.int32)
                    keep.append(lens)
                    p.seqlens_kv = lens.ctypes.data
                else:
                    keeps.append(~kpm[:, None, None, :])
            else:
                adds.append(kpm[:, None, None, :])
        if attn_mask is not None:
            am = np.asarray(attn_mask)
            if am.ndim == 3 and am.shape[0] == N * H:
                am = am.reshape(N, H, *am.shape[1:])
            elif am.ndim == 2:
                am = am[None, None]
            if am.ndim != 4 or am.shape[2:] != (Lx, Lx):
                raise ValueError(f"attn_mask must be (L, S) = {(Lx, Lx)} or (batch * num_heads, L, "
                                 f"S) = {(N * H, Lx, Lx)} (got {np.shape(attn_mask)})")
            if am.dtype == np.bool_:
                keeps.append(~am)  # nn.MultiheadAttention: True = not allowed to attend
            else:
                adds.append(am)
        if keeps:
            m = keeps[0] if len(keeps) == 1 else np.logical_and(*keeps)
            m, st = A.strides4(np.broadcast_to(m.view(np.uint8), (N, H, Lx, Lx)))
            keep.append(m)
            p.mask, p.mask_stride[:] = m.ctypes.data, st
        if adds:
            b = adds[0] if len(adds) == 1 else adds[0] + adds[1]
            b = A.as_storage(b, np.dtype(np.float32), L.F32)
            b, st = A.strides4(np.broadcast_to(b, (N, H, Lx, Lx)))
            keep.append(b)
            p.bias, p.bias_stride[:] = b.ctypes.data, st
        if is_causal:
            p.causal = L.CAUSAL_TOP_LEFT
        if self.training and self.dropout > 0:
            p.dropout_p = self.dropout
            p.seed = self.seed % 2**64
            self.seed += 1
        return p, keep

    def __call__(self, query, key=None, value=None, key_padding_mask=None, need_weights=True,
                 attn_mask=None, average_attn_weights=True, is_causal=False):
        """(output, weights) of self-attention over query, as torch.nn.MultiheadAttention.

          query            (N, L, E) with batch_first, (L, N, E) without, or (L, E)
          key, value       omitted, or query itself (self-attention only)
          key_padding_mask (N, L): bool True = this key is padding (ignored), or float added
          attn_mask        (L, L) or (N * num_heads, L, L): bool True = NOT allowed to
                           attend (PyTorch's convention for this layer), or float added
          is_causal        query i attends keys j <= i (with or without attn_mask)
          output           query's shape, the layer's dtype
          weights          float32 (N, L, L) averaged over heads, (N, num_heads, L, L) with
                           average_attn_weights=False, or None without need_weights;
                           they are the weights before dropout

        A query row with every key masked gives attention output 0 (so output =
        out_proj.bias there) and weights 0, never NaN. The activations are kept for
        backward().
        """
        q = np.asarray(query)
        for name, other in (("key", key), ("value", value)):
            if other is None or other is query:
                continue
            o = np.asarray(other)
            if (o.shape, o.strides, o.dtype, o.__array_interface__["data"][0]) != \
               (q.shape, q.strides, q.dtype, q.__array_interface__["data"][0]):
                raise ValueError(f"sattn.MultiheadAttention is self-attention: {name} must be "
                                 "omitted or be query itself")
        batched = q.ndim == 3
        x = self._tokens(q, "query")
        N, Lx, _ = x.shape
        p, keep = self._options(N, Lx, key_padding_mask, attn_mask, is_causal, batched)
        y = np.empty_like(x)
        self._saved = None
        L.check(L.lib.sattn_mha_forward(self._h, ctypes.byref(p), N, Lx, A.ptr(x), A.ptr(y)))
        self._saved = (x, p, keep, batched)
        w = None
        if need_weights:
            shape = (N, Lx, Lx) if average_attn_weights else (N, self.num_heads, Lx, Lx)
            w = np.zeros(shape, np.float32)
            if Lx > 0:
                L.check(L.lib.sattn_mha_attention_weights(self._h, 0, Lx, int(bool(average_attn_weights)),
                                                          A.ptr(w)))
            if not batched:
                w = w[0]
        return self._untokens(y, batched), w

    forward = __call__

    def backward(self, grad_output):
        """(grad_query, {name: gradient}) of sum(output * grad_output) for the last call.

        grad_output has the output's shape. grad_query is the gradient with respect to the
        input (query, key and value together, being one array), in the layer's dtype; the
        parameter gradients are float32 arrays under the names of state_dict(), for this
        backward alone (they do not accumulate across calls).
        """
        if self._saved is None:
            raise ValueError("backward() needs a forward first (the last one failed or was a decode)")
        x, p, keep, batched = self._saved
        dy = self._tokens(grad_output, "grad_output")
        if dy.shape != x.shape:
            raise ValueError(f"grad_output must have the output's shape (got {np.shape(grad_output)})")
        N, Lx, _ = x.shape
        dx = np.empty_like(x)
        L.lib.sattn_mha_zero_grad(self._h)
        L.check(L.lib.sattn_mha_backward(self._h, ctypes.byref(p), N, Lx, A.ptr(x), A.ptr(dy), A.ptr(dx)))
        grads = {n: g.copy() for n, g in self.gradients().items()}
        return self._untokens(dx, batched), grads

    # ---- generation ----

    def new_cache(self, batch, *, dtype=None, capacity=0, max_tokens=0, window=0):
        """A KVCache for this layer's kv heads and head dim (dtype None: the layer's)."""
        return KVCache(batch, self.num_kv_heads, self.head_dim,
                       dtype=self.dtype if dtype is None else dtype, capacity=capacity,
                       max_tokens=max_tokens, window=window)

    def decode(self, x, cache, *, scale=None, softcap=0.0):
        """One generation step (sattn_mha_decode): x (batch, n, E) (or (n, batch, E) without
        batch_first) are the next n tokens; their keys and values go into cache and their
        queries attend to every cached token. Returns y of x's shape. Decoding a sequence
        token by token gives the output of one causal forward."""
        xt = self._tokens(x, "x")
        if np.ndim(x) != 3:
            raise ValueError("x must be batched")
        N, n, _ = xt.shape
        p = L.Params(scale=_scale(scale), softcap=float(softcap))
        y = np.empty_like(xt)
        self._saved = None
        L.check(L.lib.sattn_mha_decode(self._h, cache._h, ctypes.byref(p), N, n, A.ptr(xt), A.ptr(y)))
        return self._untokens(y, True)
