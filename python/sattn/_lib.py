"""The C library through ctypes: loading, the structs of sattn.h, the prototypes.

ctypes rather than a C extension or cffi: the package then needs no compiler beyond
the one that builds libsattn itself, no Python headers, and no build step per Python
version; every call into sattn is a large, GIL-free kernel, so the microseconds ctypes
spends per call do not matter.
"""
import ctypes
import glob
import math
import os
from ctypes import POINTER, c_char_p, c_float, c_int, c_int64, c_uint64, c_void_p

__all__ = ["lib", "Params", "MhaConfig", "KVCacheConfig", "Error", "OutOfMemoryError", "check",
           "last_error", "F32", "F16", "BF16", "CAUSAL_NONE", "CAUSAL_TOP_LEFT",
           "CAUSAL_BOTTOM_RIGHT", "library_path"]

# ---- enums (sattn_status, sattn_dtype, sattn_causal) ----
OK, ERR_INVALID, ERR_NOMEM, ERR_UNSUPPORTED = 0, -1, -2, -3
F32, F16, BF16 = 0, 1, 2
PRODUCTS_F32, PRODUCTS_BF16 = 0, 1
CAUSAL_NONE, CAUSAL_TOP_LEFT, CAUSAL_BOTTOM_RIGHT = 0, 1, 2

_enum = c_int  # a C enum whose values fit an int is an int (gcc, clang, MSVC)


# ---- errors ----

class Error(ValueError):
    """A call into libsattn failed; the message is sattn_last_error()'s.

    status is the sattn_status (-1 invalid argument, -2 out of memory, -3 unsupported).
    """

    def __init__(self, message, status=ERR_INVALID):
        super().__init__(message)
        self.status = status


class OutOfMemoryError(Error, MemoryError):
    """SATTN_ERR_NOMEM: scratch memory could not be allocated (nothing was written)."""


# ---- structs, field for field as in sattn.h ----

# ctypes stores an int or float field by truncating it silently (2**64 + 3 becomes 3,
# 1e-50 becomes 0.0, 1e39 becomes inf): every field is range-checked instead.
_INT_RANGE = {c_int64: (-2**63, 2**63 - 1), c_uint64: (0, 2**64 - 1), c_int: (-2**31, 2**31 - 1)}
_F32_MAX = 3.4028234663852886e38
_F32_TINY = 2.0 ** -150  # below this in magnitude a float rounds to 0 in float32


class _Checked(ctypes.Structure):
    """A ctypes.Structure whose int and float fields refuse values they cannot hold."""

    def __setattr__(self, name, value):
        t = self._types.get(name)
        if t in _INT_RANGE:
            lo, hi = _INT_RANGE[t]
            if not isinstance(value, int) or isinstance(value, bool):
                value = int(value)
            if not lo <= value <= hi:
                raise Error(f"{name} must be in [{lo}, {hi}], the range of the C field (got {value})")
        elif t is c_float:
            value = float(value)
            if math.isfinite(value) and abs(value) > _F32_MAX:
                raise Error(f"{name} = {value!r} is beyond float32 (|{name}| <= {_F32_MAX:.8g})")
            if value != 0 and abs(value) <= _F32_TINY:
                raise Error(f"{name} = {value!r} would round to 0 in float32, which means something "
                            f"else here: |{name}| must be 0 or above 2**-150 ({_F32_TINY:.3g})")
        super().__setattr__(name, value)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls._types = dict(cls._fields_)


class Params(_Checked):
    """sattn_params. Every zero means "off" or "default", as in C."""
    _fields_ = [
        # shape
        ("batch", c_int64), ("seq_q", c_int64), ("seq_kv", c_int64), ("heads_q", c_int64),
        ("heads_kv", c_int64), ("head_dim", c_int64), ("head_dim_v", c_int64),
        ("dtype", _enum),
        # layout: element strides of (batch, seq, head)
        ("q_stride", c_int64 * 3), ("k_stride", c_int64 * 3), ("v_stride", c_int64 * 3),
        ("o_stride", c_int64 * 3),
        ("scale", c_float),
        # masking
        ("causal", _enum),
        ("window_left", c_int64), ("window_right", c_int64),
        ("seqlens_q", c_void_p),       # const int32_t *  [batch]
        ("seqlens_kv", c_void_p),      # const int32_t *  [batch]
        ("cu_seqlens_q", c_void_p),    # const int32_t *  [batch + 1]
        ("cu_seqlens_kv", c_void_p),   # const int32_t *  [batch + 1]
        ("bias", c_void_p),            # const float *    (batch, head_q, q, kv) by bias_stride
        ("bias_stride", c_int64 * 4),
        ("mask", c_void_p),            # const uint8_t *  (batch, head_q, q, kv) by mask_stride
        ("mask_stride", c_int64 * 4),
        ("alibi_slopes", c_void_p),    # const float *    [heads_q]
        ("softcap", c_float),
        # dropout
        ("dropout_p", c_float),
        ("seed", c_uint64),
        # which products the forward may use (SATTN_PRODUCTS_F32 = 0, _BF16 = 1)
        ("products", _enum),
    ]


class MhaConfig(_Checked):
    """sattn_mha_config."""
    _fields_ = [("embed_dim", c_int64), ("num_heads", c_int64), ("num_kv_heads", c_int64),
                ("head_dim", c_int64), ("bias", c_int), ("dtype", _enum)]


class KVCacheConfig(_Checked):
    """sattn_kvcache_config."""
    _fields_ = [("batch", c_int64), ("heads_kv", c_int64), ("head_dim", c_int64),
                ("head_dim_v", c_int64), ("dtype", _enum), ("capacity", c_int64),
                ("max_tokens", c_int64), ("window", c_int64)]


# ---- loading ----

def _find_library():
    env = os.environ.get("SATTN_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise ImportError(f"SATTN_LIBRARY={env!r} is not a file")
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    for pattern in ("libsattn.so", "libsattn.so.*", "libsattn.dylib", "sattn.dll"):
        found = sorted(glob.glob(os.path.join(here, pattern)))
        if found:
            return found[0]
    raise ImportError(
        "sattn: the shared library libsattn was not found next to the package. Install the "
        "package with `pip install ./python` (which builds it), or set SATTN_LIBRARY to the "
        "path of a built libsattn.so")


library_path = _find_library()
lib = ctypes.CDLL(library_path)

_P = POINTER(Params)
_prototypes = {
    "sattn_forward": (c_int, [_P, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p]),
    "sattn_backward": (c_int, [_P, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p,
                               c_void_p, c_void_p, c_void_p]),
    "sattn_attention_weights": (c_int, [_P, c_void_p, c_void_p, c_void_p, c_int64, c_int64, c_int,
                                        c_void_p]),
    "sattn_mha_create": (c_int, [POINTER(c_void_p), POINTER(MhaConfig)]),
    "sattn_mha_free": (None, [c_void_p]),
    "sattn_mha_param": (c_void_p, [c_void_p, c_char_p, POINTER(c_int64)]),
    "sattn_mha_grad": (c_void_p, [c_void_p, c_char_p, POINTER(c_int64)]),
    "sattn_mha_set": (c_int, [c_void_p, c_char_p, c_void_p, c_int64]),
    "sattn_mha_zero_grad": (None, [c_void_p]),
    "sattn_mha_forward": (c_int, [c_void_p, _P, c_int64, c_int64, c_void_p, c_void_p]),
    "sattn_mha_backward": (c_int, [c_void_p, _P, c_int64, c_int64, c_void_p, c_void_p, c_void_p]),
    "sattn_mha_attention_weights": (c_int, [c_void_p, c_int64, c_int64, c_int, c_void_p]),
    "sattn_kvcache_create": (c_int, [POINTER(c_void_p), POINTER(KVCacheConfig)]),
    "sattn_kvcache_free": (None, [c_void_p]),
    "sattn_kvcache_reset": (None, [c_void_p]),
    "sattn_kvcache_get_config": (c_int, [c_void_p, POINTER(KVCacheConfig)]),
    "sattn_kvcache_length": (c_int64, [c_void_p]),
    "sattn_kvcache_append": (c_int, [c_void_p, c_int64, c_void_p, POINTER(c_int64), c_void_p,
                                     POINTER(c_int64)]),
    "sattn_kvcache_attend": (c_int, [c_void_p, _P, c_void_p, c_void_p, c_void_p]),
    "sattn_mha_decode": (c_int, [c_void_p, c_void_p, _P, c_int64, c_int64, c_void_p, c_void_p]),
    "sattn_gemm_backend": (c_char_p, []),
    "sattn_last_error": (c_char_p, []),
    "sattn_set_num_threads": (None, [c_int]),
    "sattn_get_num_threads": (c_int, []),
    "sattn_version": (c_char_p, []),
    "sattn_isa": (c_char_p, []),
    "sattn_products_run": (c_int, [_enum, _enum]),
}
for _name, (_res, _args) in _prototypes.items():
    _fn = getattr(lib, _name)
    _fn.restype, _fn.argtypes = _res, _args


def last_error():
    """This thread's last libsattn failure message ("" if none yet)."""
    return lib.sattn_last_error().decode("utf-8", "replace")


def check(status):
    """Raises Error (a ValueError) with the library's message unless status is SATTN_OK."""
    if status != OK:
        msg = last_error() or f"sattn call failed with status {status}"
        if status == ERR_NOMEM:
            raise OutOfMemoryError(msg, status)
        raise Error(msg, status)
