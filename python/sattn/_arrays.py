"""NumPy arrays as the C contract sees them: storage types and element strides.

The contract reads a tensor as a base pointer plus element strides of its (batch, seq,
head) axes, with the dim axis contiguous. Any NumPy array with that shape can be passed
as it is when its dtype is the storage type, its dim axis is contiguous (or of length
1), its other strides are non-negative whole elements and its data is aligned. Anything
else is copied into a C-ordered array first, and `copies_made()` counts it.
"""
import numpy as np

from . import _lib

try:
    import ml_dtypes
    bfloat16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # bf16 then only as raw uint16 views with dtype="bfloat16"
    ml_dtypes = None
    bfloat16 = None

__all__ = ["bfloat16", "copies_made", "storage", "as_storage", "strides", "tensor"]

_copies = 0


def copies_made():
    """How many tensor arguments (q, k, v, out, dout, x, mask, bias, ...) sattn has copied
    since import because the C contract could not describe them in place. A debugging aid:
    it stays unchanged across a call that was zero-copy."""
    return _copies


def _count_copy():
    """Counts a copy made elsewhere (sattn.torch's tensors)."""
    global _copies
    _copies += 1


def _counted_copy(a, dtype=None):
    global _copies
    _copies += 1
    return np.array(a, dtype=dtype, order="C", copy=True)


_NAMES = {"float32": _lib.F32, "f32": _lib.F32, "float16": _lib.F16, "f16": _lib.F16,
          "half": _lib.F16, "bfloat16": _lib.BF16, "bf16": _lib.BF16}


def storage(arrays, dtype=None):
    """The storage type of a call: (sattn_dtype code, NumPy dtype of the arrays, raw).

    dtype None: the arrays' own dtype when they share float32, float16 or bfloat16, else
    float32. dtype names one of those ("float32", "float16", "bfloat16", or the NumPy
    dtype); uint16 arrays are then taken as the raw bits of float16 / bfloat16 (raw)."""
    if dtype is not None:
        if isinstance(dtype, str):
            code = _NAMES.get(dtype.lower())
        else:
            dt = np.dtype(dtype)
            code = {np.dtype(np.float32): _lib.F32, np.dtype(np.float16): _lib.F16}.get(dt)
            if code is None and bfloat16 is not None and dt == bfloat16:
                code = _lib.BF16
        if code is None:
            raise ValueError(f"dtype must be float32, float16 or bfloat16 (got {dtype!r})")
    else:
        dts = {np.dtype(a.dtype) for a in arrays if a is not None}
        code = _lib.F32
        if len(dts) == 1:
            dt = dts.pop()
            if dt == np.float16:
                code = _lib.F16
            elif bfloat16 is not None and dt == bfloat16:
                code = _lib.BF16
            elif dt == np.uint16:
                raise ValueError("uint16 arrays are taken as raw float16 or bfloat16 bits: "
                                 "say which with dtype=\"float16\" or dtype=\"bfloat16\"")
    npdt = {_lib.F32: np.dtype(np.float32), _lib.F16: np.dtype(np.float16), _lib.BF16: bfloat16}[code]
    if npdt is None:  # bf16 without ml_dtypes
        npdt = np.dtype(np.uint16)
    return code, npdt


def as_storage(a, npdt, code):
    """a as an array of the storage type: itself when it already is (uint16 raw bits of a
    16-bit storage type are reinterpreted, not converted), else a converted copy."""
    a = np.asarray(a)
    if a.dtype == npdt:
        return a
    if code != _lib.F32 and a.dtype == np.uint16:
        return a.view(npdt)
    if a.dtype == np.uint16:
        raise ValueError("a uint16 array holds raw float16/bfloat16 bits: pass dtype=\"float16\" "
                         "or dtype=\"bfloat16\"")
    if npdt == np.uint16:
        raise ValueError("bfloat16 needs the ml_dtypes package (or raw uint16 bits with "
                         "dtype=\"bfloat16\")")
    return _counted_copy(a, npdt)


def strides(a, axes, dim_axis=None):
    """Element strides of a along axes (None: an absent axis, stride 0), or None when the
    contract cannot describe a in place: a dim axis that is not contiguous, a negative or
    fractional stride, or misaligned data. Axes of extent 1 get stride 0."""
    isz = a.itemsize
    if a.size == 0:  # nothing to read or write (NumPy gives empty arrays zero strides)
        return [0] * len(axes)
    if a.ctypes.data % isz:
        return None
    if dim_axis is not None and a.shape[dim_axis] > 1 and a.strides[dim_axis] != isz:
        return None
    out = []
    for ax in axes:
        if ax is None or a.shape[ax] <= 1:
            out.append(0)
            continue
        s = a.strides[ax]
        if s < 0 or s % isz:
            return None
        out.append(s // isz)
    return out


def tensor(a, axes, dim_axis):
    """(array, [batch, seq, head] element strides) for a q/k/v/out-like tensor, copying a
    only if it cannot be described in place. All three strides zero means "packed" in the
    contract, so a fully broadcast tensor keeps one nonzero stride on an axis of extent 1
    (never stepped along), or is copied when it has none."""
    st = strides(a, axes, dim_axis)
    if st is not None and not any(st) and a.size:
        ext = [1 if ax is None else a.shape[ax] for ax in axes]
        if any(e > 1 for e in ext):
            unit = [i for i, e in enumerate(ext) if e == 1]
            if unit:
                st[unit[0]] = 1
            else:
                st = None
    if st is None:
        a = _counted_copy(a)
        st = strides(a, axes, dim_axis)
        if not any(st):  # extents of 0 or 1 only
            st = [0, 0, 0]
    return a, st


def strides4(a):
    """(array, 4 element strides) for a mask or bias already broadcast to 4 axes."""
    st = strides(a, range(4))
    if st is None:
        a = _counted_copy(a)
        st = strides(a, range(4))
    return a, st


def dense(a):
    """True if a covers its memory exactly (some permutation of a C-ordered array, with
    no gap and no broadcast): then a gradient can be written with a's own strides."""
    if a.size == 0:
        return True
    dims = sorted((s, n) for n, s in zip(a.shape, a.strides) if n > 1)
    step = a.itemsize
    for s, n in dims:
        if s != step:
            return False
        step *= n
    return True


def same_layout(a, b):
    """a and b have the same shape and step the same way along every axis of extent > 1."""
    if a.shape != b.shape or a.itemsize != b.itemsize:
        return False
    return all(n <= 1 or sa == sb for n, sa, sb in zip(a.shape, a.strides, b.strides))


def like(a, fill=None):
    """A new array with a's shape, dtype and (when a is dense) its strides."""
    out = np.empty_like(a, order="K") if fill is None else np.full_like(a, fill, order="K")
    return out


def densified(a):
    """a when it is dense, else a dense copy (counted)."""
    if dense(a):
        return a
    return _counted_copy(a)


def ptr(a):
    """The data pointer of an array (None for None)."""
    return None if a is None else a.ctypes.data


def int32_vector(a, n, name):
    """An int32 C array of exactly n values (index arrays are tiny: always converted)."""
    if a is None:
        return None
    v = np.ascontiguousarray(np.asarray(a), dtype=np.int32)
    if v.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (got {tuple(np.shape(a))})")
    if not np.array_equal(v, np.asarray(a)):
        raise ValueError(f"{name} must hold integers that fit int32")
    return v


def copy_into(dst, src):
    """dst[...] = src, counted as a copy; returns dst."""
    global _copies
    _copies += 1
    dst[...] = src
    return dst
