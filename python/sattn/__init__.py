"""sattn: fused scaled-dot-product self-attention on the CPU, for NumPy.

PyTorch-shaped:
  scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                               is_causal=False, scale=None, enable_gqa=False)
  scaled_dot_product_attention_backward(grad_output, query, key, value, ...)
  MultiheadAttention(embed_dim, num_heads, ...)   load_state_dict, __call__, backward
The whole C contract:
  attention(q, k, v, *, layout, causal, window, seqlens_*, cu_seqlens_*, bias, mask,
            alibi_slopes, softcap, scale, dropout_p, seed, return_lse)
  attention_backward(dout, q, k, v, out, lse, ...), attention_weights(q, k, lse, ...)
  KVCache(batch, heads_kv, head_dim, ...)         append, attend, step
Errors raise sattn.Error, a ValueError carrying the C library's message.
"""
from ._arrays import bfloat16, copies_made
from ._arrays import storage as _storage
from ._lib import Error, OutOfMemoryError, library_path
from ._lib import lib as _clib
from .functional import (attention, attention_backward, attention_weights, last_seed,
                         manual_seed, scaled_dot_product_attention,
                         scaled_dot_product_attention_backward)
from .functional import _PRODUCTS
from .kvcache import KVCache
from .layer import MultiheadAttention

__all__ = ["attention", "attention_backward", "attention_weights", "scaled_dot_product_attention",
           "scaled_dot_product_attention_backward", "MultiheadAttention", "KVCache", "Error",
           "OutOfMemoryError", "bfloat16", "copies_made", "set_num_threads", "get_num_threads",
           "manual_seed", "last_seed",
           "version", "isa", "products_run", "gemm_backend", "library_path"]

__version__ = _clib.sattn_version().decode()


def set_num_threads(n):
    """The most threads later calls use; 0 (or negative) = OpenMP's default (OMP_NUM_THREADS,
    else every core). Small calls, and calls on a machine whose cores other processes hold,
    use one. Results do not depend on it."""
    n = int(n)
    if not -2**31 <= n < 2**31:
        raise Error(f"n must fit a C int, [-2**31, 2**31) (got {n})")
    _clib.sattn_set_num_threads(n)


def get_num_threads():
    """The thread count the next call will use."""
    return _clib.sattn_get_num_threads()


def version():
    """The C library's version, "MAJOR.MINOR.PATCH"."""
    return _clib.sattn_version().decode()


def isa():
    """The kernel set in use: "generic", "avx2", "avx512" or "avx512bf16"."""
    return _clib.sattn_isa().decode()


def products_run(products, dtype="bfloat16"):
    """True if attention(..., products=products) with this storage dtype (any name
    attention's dtype= takes) runs those products on this CPU, False if it computes in
    float32 instead (sattn_products_run)."""
    if products not in _PRODUCTS:
        raise ValueError(f"products must be one of {sorted(_PRODUCTS)} (got {products!r})")
    code, _ = _storage([], dtype)
    return bool(_clib.sattn_products_run(code, _PRODUCTS[products]))


def gemm_backend():
    """The GEMM of the layer's projections ("openblas (CORE)" or "builtin (ISA)")."""
    return _clib.sattn_gemm_backend().decode()
