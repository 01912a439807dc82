"""The package itself: the ctypes mirror of the C structs, errors, strides and copies,
storage types, threads."""
import ctypes
import os
import re
import subprocess

import numpy as np
import pytest

import sattn
from sattn import _lib
from refimpl import close

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(os.path.dirname(os.path.dirname(HERE)), "include", "sattn.h")

# ---- the structs ----

I64, I32, F, PTR, ENUM = (8, 8), (4, 4), (4, 4), (8, 8), (4, 4)  # (size, alignment), LP64
C_FIELDS = {
    "sattn_params": (_lib.Params, [
        ("batch", I64), ("seq_q", I64), ("seq_kv", I64), ("heads_q", I64), ("heads_kv", I64),
        ("head_dim", I64), ("head_dim_v", I64), ("dtype", ENUM),
        ("q_stride", (24, 8)), ("k_stride", (24, 8)), ("v_stride", (24, 8)), ("o_stride", (24, 8)),
        ("scale", F), ("causal", ENUM), ("window_left", I64), ("window_right", I64),
        ("seqlens_q", PTR), ("seqlens_kv", PTR), ("cu_seqlens_q", PTR), ("cu_seqlens_kv", PTR),
        ("bias", PTR), ("bias_stride", (32, 8)), ("mask", PTR), ("mask_stride", (32, 8)),
        ("alibi_slopes", PTR), ("softcap", F), ("dropout_p", F), ("seed", I64),
        ("products", ENUM)]),
    "sattn_mha_config": (_lib.MhaConfig, [
        ("embed_dim", I64), ("num_heads", I64), ("num_kv_heads", I64), ("head_dim", I64),
        ("bias", I32), ("dtype", ENUM)]),
    "sattn_kvcache_config": (_lib.KVCacheConfig, [
        ("batch", I64), ("heads_kv", I64), ("head_dim", I64), ("head_dim_v", I64),
        ("dtype", ENUM), ("capacity", I64), ("max_tokens", I64), ("window", I64)]),
}


def c_layout(fields):
    """Offsets and size as a C compiler lays the fields out on an LP64 target: each field
    at the next multiple of its alignment, the struct padded to its largest alignment."""
    off, offsets, align = 0, {}, 1
    for name, (size, al) in fields:
        off = (off + al - 1) // al * al
        offsets[name] = (off, size)
        off += size
        align = max(align, al)
    return offsets, (off + align - 1) // align * align


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="the table is for LP64")
@pytest.mark.parametrize("struct", sorted(C_FIELDS))
def test_struct_matches_c_layout_rules(struct):
    cls, fields = C_FIELDS[struct]
    assert [f[0] for f in cls._fields_] == [f[0] for f in fields]
    offsets, size = c_layout(fields)
    assert ctypes.sizeof(cls) == size
    for name, (off, sz) in offsets.items():
        assert (getattr(cls, name).offset, getattr(cls, name).size) == (off, sz), name


def test_struct_matches_compiled_probe():
    """The C compiler's own offsets (python/tests/layout_probe.c, built by CMake)."""
    probe = os.environ.get("SATTN_LAYOUT_PROBE")
    if not probe:
        pytest.skip("SATTN_LAYOUT_PROBE is not set (ctest sets it to the built sattn_layout_probe)")
    lines = subprocess.run([probe], check=True, capture_output=True, text=True).stdout.split("\n")
    seen = set()
    for line in filter(None, lines):
        struct, field, a, b = line.split()
        cls = C_FIELDS[struct][0]
        if field == "sizeof":
            assert ctypes.sizeof(cls) == int(a) and ctypes.alignment(cls) == int(b), struct
        else:
            f = getattr(cls, field)
            assert (f.offset, f.size) == (int(a), int(b)), (struct, field)
            seen.add((struct, field))
    assert seen == {(s, f[0]) for s, (_, fs) in C_FIELDS.items() for f in fs}


def test_version_matches_header():
    text = open(HEADER).read()
    want = ".".join(re.search(rf"SATTN_VERSION_{p}\s+(\d+)", text).group(1)
                    for p in ("MAJOR", "MINOR", "PATCH"))
    assert sattn.version() == sattn.__version__ == want
    assert sattn.isa() in ("generic", "avx2", "avx512", "avx512bf16")
    assert sattn.gemm_backend()


# ---- errors ----

def qkv(shape=(2, 7, 2, 8), kv_heads=None, dtype=np.float32):
    rng = np.random.default_rng(0)
    q = rng.standard_normal(shape).astype(dtype)
    kvs = shape[:2] + (kv_heads or shape[2],) + shape[3:]
    return q, rng.standard_normal(kvs).astype(dtype), rng.standard_normal(kvs).astype(dtype)


@pytest.mark.parametrize("kwargs,heads,pattern", [
    (dict(dropout_p=1.0), None, "dropout_p"),
    (dict(softcap=-1.0), None, "softcap"),
    (dict(scale=float("inf")), None, "scale"),
    (dict(seqlens_kv=[3, 9]), None, "seqlens_kv"),
    (dict(alibi_slopes=[0.1, float("nan")]), None, "alibi_slopes"),
    ({}, 3, "heads"),
])
def test_library_errors_are_value_errors_with_its_message(kwargs, heads, pattern):
    q, k, v = qkv((2, 7, 4, 8) if heads else (2, 7, 2, 8), kv_heads=heads)
    with pytest.raises(ValueError, match=pattern) as e:
        sattn.attention(q, k, v, **kwargs)
    assert isinstance(e.value, sattn.Error) and e.value.status == -1
    assert str(e.value) == _lib.last_error()  # the C library's own sentence


def test_layer_and_shape_errors():
    with pytest.raises(ValueError, match="embed_dim = 10 is not a multiple of num_heads = 3"):
        sattn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="num_kv_heads must divide"):
        sattn.MultiheadAttention(12, 4, num_kv_heads=3)
    q, k, v = qkv()
    with pytest.raises(ValueError, match="same head dim"):
        sattn.attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="k and v must agree"):
        sattn.attention(q, k, v[:, :3])
    with pytest.raises(ValueError, match="past the"):  # would read beyond q's rows
        sattn.attention(q[0], k[0], v[0], cu_seqlens_q=[0, 5, 9], cu_seqlens_kv=[0, 3, 7])
    with pytest.raises(ValueError, match="does not broadcast"):
        sattn.attention(q, k, v, mask=np.ones((3, 7), bool))
    with pytest.raises(ValueError, match="causal"):
        sattn.attention(q, k, v, causal=True)
    with pytest.raises(ValueError, match="window"):
        sattn.attention(q, k, v, window=(0, 3))
    with pytest.raises(ValueError, match="uint16"):
        sattn.attention(q.view(np.uint16), k.view(np.uint16), v.view(np.uint16))


# ---- strides and copies ----

def test_views_are_read_in_place_and_out_is_written_in_place():
    q, k, v = qkv((2, 9, 3, 16))
    want = sattn.attention(q, k, v)
    big = np.full((3, 10, 4, 20), 7.0, np.float32)  # out as a view with gaps
    out = big[1:, :9, 1:, 2:18]
    before = sattn.copies_made()
    got = sattn.attention(q, k, v, out=out)
    assert got is out and sattn.copies_made() == before
    close(lambda *a: None, "out= view", out, want.astype(np.float64), 1e-6)
    mask = np.ones_like(big, bool)
    mask[1:, :9, 1:, 2:18] = False
    assert np.all(big[mask] == 7.0)  # nothing outside the view was written
    # bhsd views of bshd data, and a broadcast batch, in place
    before = sattn.copies_made()
    bh = sattn.attention(*(x.transpose(0, 2, 1, 3) for x in (q, k, v)), layout="bhsd")
    kb, vb = (np.broadcast_to(x[:1], x.shape) for x in (k, v))
    sattn.attention(q, kb, vb)
    assert sattn.copies_made() == before
    close(lambda *a: None, "bhsd", bh.transpose(0, 2, 1, 3), want.astype(np.float64), 1e-6)


def misaligned(x):
    """x's values in a float32 array that starts 2 bytes past an aligned address."""
    buf = np.zeros(x.nbytes + 8, np.uint8)
    start = (-buf.ctypes.data) % 8 + 2
    buf[start:start + x.nbytes] = np.ascontiguousarray(x).view(np.uint8).ravel()
    y = buf[start:start + x.nbytes].view(np.float32).reshape(x.shape)
    assert not y.flags.aligned
    return y


@pytest.mark.parametrize("make", [
    misaligned,
    lambda x: np.asfortranarray(x),                    # dim axis not contiguous
    lambda x: x[:, ::-1],                              # negative stride
    lambda x: x.astype(np.float64),                    # not a storage type
])
def test_undescribable_inputs_are_copied(make):
    q, k, v = qkv((2, 9, 3, 16))
    q2 = make(q)
    want = sattn.attention(np.ascontiguousarray(q2, np.float32), k, v)
    before = sattn.copies_made()
    got = sattn.attention(q2, k, v)
    copied = sattn.copies_made() - before
    assert copied == 1
    assert np.array_equal(got, want)


def test_raw_uint16_bits():
    """float16 / bfloat16 as uint16 views with dtype=: the same bits as the typed arrays."""
    for npdt, name in ((np.float16, "float16"), (sattn.bfloat16, "bfloat16")):
        q, k, v = qkv((2, 9, 3, 16), dtype=npdt)
        typed = sattn.attention(q, k, v, causal="top_left")
        raw = sattn.attention(q.view(np.uint16), k.view(np.uint16), v.view(np.uint16),
                              causal="top_left", dtype=name)
        assert raw.dtype == typed.dtype and np.array_equal(raw.view(np.uint16), typed.view(np.uint16))


def test_results_do_not_depend_on_threads():
    q, k, v = qkv((2, 65, 4, 32))
    dout = np.ones_like(q)
    n = sattn.get_num_threads()
    try:
        res = []
        for t in (1, 2, 3):
            sattn.set_num_threads(t)
            assert sattn.get_num_threads() in (t, 1)  # 1 in a build without OpenMP
            res.append((sattn.attention(q, k, v, causal="top_left"),)
                       + sattn.attention_backward(dout, q, k, v, causal="top_left"))
    finally:
        sattn.set_num_threads(n)
    for other in res[1:]:
        for a, b in zip(res[0], other):
            assert np.array_equal(a, b)


def test_layer_parameter_views_share_memory():
    layer = sattn.MultiheadAttention(8, 2)
    w = layer.parameters()["out_proj.weight"]
    w[...] = 0.5
    assert np.all(layer.state_dict()["out_proj.weight"] == 0.5)
    del layer  # the view keeps the layer's memory alive
    assert np.all(w == 0.5)


# ---- values the C fields cannot hold are refused, never truncated ----

@pytest.mark.parametrize("kwargs, pattern", [
    ({"window": (2**64 + 3, None)}, r"window_left must be in \[.*9223372036854775807\]"),
    ({"window": (None, 2**63)}, r"window_right must be in"),
    ({"scale": 1e-46}, r"scale = 1e-46 would round to 0 in float32"),
    ({"scale": -7e-46}, r"scale = -7e-46 would round to 0"),
    ({"scale": 1e39}, r"scale = 1e\+39 is beyond float32"),
    ({"softcap": 1e-50}, r"softcap = 1e-50 would round to 0"),
    ({"seed": 2**64, "dropout_p": 0.1}, r"seed must be in \[0, 18446744073709551615\]"),
    ({"seed": -1, "dropout_p": 0.1}, r"seed must be in"),
])
def test_out_of_range_values_raise_with_the_bound(kwargs, pattern):
    q = np.ones((1, 4, 1, 8), np.float32)
    with pytest.raises(sattn.Error, match=pattern):
        sattn.attention(q, q, q, **kwargs)


def test_values_at_the_edge_of_float32_are_kept():
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((1, 6, 2, 8)).astype(np.float32) for _ in range(3))
    # a window of 2**63 - 1 is unbounded: the same as no window
    a = sattn.attention(q, k, v, window=(2**63 - 1, 2**63 - 1))
    assert np.array_equal(a, sattn.attention(q, k, v))
    # the smallest scale float32 holds (2**-149) is taken as given: all weights equal
    o = sattn.attention(q, k, v, scale=2.0**-149)
    assert np.allclose(o, np.broadcast_to(v.mean(axis=1, keepdims=True), o.shape), atol=1e-6)
    with pytest.raises(sattn.Error, match="fit a C int"):
        sattn.set_num_threads(2**40)


def test_kvcache_and_layer_configs_refuse_truncation():
    with pytest.raises(sattn.Error, match="max_tokens must be in"):
        sattn.KVCache(1, 1, 8, max_tokens=2**64 + 5)
    with pytest.raises(sattn.Error, match="window must be in"):
        sattn.KVCache(1, 1, 8, window=2**64 + 2)
    with pytest.raises(sattn.Error, match="num_heads must be in"):
        sattn.MultiheadAttention(8, 2**64 + 2)


# ---- dropout without a seed: a fresh mask per call, and the seed for the backward ----

def test_dropout_without_seed_draws_a_fresh_mask_each_call():
    rng = np.random.default_rng(6)
    q, k, v = (rng.standard_normal((1, 2, 16, 8)).astype(np.float32) for _ in range(3))
    outs, seeds = [], []
    for _ in range(3):
        outs.append(sattn.scaled_dot_product_attention(q, k, v, dropout_p=0.5))
        seeds.append(sattn.last_seed())
    assert len(set(seeds)) == 3, seeds
    assert not np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[1], outs[2])
    # the seed drawn is the one used: given back, it gives the same output
    again = sattn.scaled_dot_product_attention(q, k, v, dropout_p=0.5, seed=seeds[2])
    assert np.array_equal(again, outs[2])
    # the backward needs it, and says so
    g = np.ones_like(outs[2])
    with pytest.raises(ValueError, match="last_seed"):
        sattn.scaled_dot_product_attention_backward(g, q, k, v, dropout_p=0.5)
    dq, dk, dv = sattn.scaled_dot_product_attention_backward(g, q, k, v, dropout_p=0.5, seed=seeds[2])
    dq2, _, _ = sattn.scaled_dot_product_attention_backward(g, q, k, v, dropout_p=0.5, seed=seeds[1])
    assert not np.array_equal(dq, dq2)
    # manual_seed makes the draws repeatable; without dropout nothing is drawn
    sattn.manual_seed(7)
    a = sattn.attention(q, k, v, dropout_p=0.3)
    sa = sattn.last_seed()
    sattn.attention(q, k, v)
    assert sattn.last_seed() == sa
    sattn.manual_seed(7)
    assert np.array_equal(sattn.attention(q, k, v, dropout_p=0.3), a) and sattn.last_seed() == sa
    # two layers made without a seed drop differently
    l1, l2 = sattn.MultiheadAttention(16, 2, dropout=0.5), sattn.MultiheadAttention(16, 2, dropout=0.5)
    assert l1.seed != l2.seed


def test_bf16_products_stay_within_their_bound():
    """products="bf16" (sattn.h, sattn_products): |out - exact| <= 2^-8 sum_j P|v_j| (the
    weights rounded to bf16) + half a bf16 ulp of out, against float64 numpy here; and
    bit-identical to products="f32" where the CPU has no bf16 dot products."""
    from sattn._arrays import bfloat16
    if bfloat16 is None:
        pytest.skip("ml_dtypes is not installed: no bfloat16 arrays")
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((2, 257, 3, 64)).astype(bfloat16) for _ in range(3))
    got = sattn.attention(q, k, v, products="bf16").astype(np.float64)
    f32 = sattn.attention(q, k, v).astype(np.float64)
    qd, kd, vd = (x.astype(np.float64).transpose(0, 2, 1, 3) for x in (q, k, v))
    s = qd @ kd.transpose(0, 1, 3, 2) / 8.0
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    want, mag = (p @ vd).transpose(0, 2, 1, 3), (p @ np.abs(vd)).transpose(0, 2, 1, 3)
    allowed = (2.0**-8 + 1e-5) * 1.05 * mag + 2.0**-8 * 1.05 * np.abs(want)
    assert np.all(np.abs(got - want) <= allowed), np.max(np.abs(got - want) / allowed)
    if sattn.products_run("bf16"):
        assert np.any(got != f32)
    else:
        assert np.array_equal(got, f32)
    assert not sattn.products_run("bf16", "float16") and sattn.products_run("f32", "float32")
    with pytest.raises(ValueError, match="products"):
        sattn.attention(q, k, v, products="bf17")
