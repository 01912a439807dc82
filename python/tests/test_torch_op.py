"""sattn.torch: the operator against torch.nn.functional.scaled_dot_product_attention and
autograd in float64, torch.compile, opcheck, and the errors.

Tolerances: float32 storage, the math in float32: outputs and gradients within 2e-5 of
float64 PyTorch (inputs of unit scale, rows of up to 129 keys); float16 2e-3 and
bfloat16 2e-2 (one rounding of the inputs and of the output: 2^-11 and 2^-8 relative).
"""
import math

import pytest
import torch
import torch.nn.functional as F

st = pytest.importorskip("sattn.torch")

TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def reference(q, k, v, g, **kw):
    """PyTorch in float64 on the very values sattn reads: output and input gradients."""
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    mask = kw.pop("attn_mask", None)
    if mask is not None and mask.is_floating_point():
        mask = mask.double()
    if mask is not None and kw.pop("is_causal", False):  # PyTorch takes one or the other
        L, S = q.shape[-2], k.shape[-2]
        causal = torch.ones(L, S, dtype=torch.bool).tril()
        mask = mask & causal if mask.dtype == torch.bool else mask.masked_fill(~causal, float("-inf"))
    o = F.scaled_dot_product_attention(q64, k64, v64, attn_mask=mask, **kw)
    return (o,) + torch.autograd.grad(o, (q64, k64, v64), g.double())


def ours(q, k, v, g, **kw):
    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    o = st.scaled_dot_product_attention(q, k, v, **kw)
    return (o,) + torch.autograd.grad(o, (q, k, v), g)


def err(a, b):
    return (a.double() - b).abs().max().item()


@pytest.mark.parametrize("seed", range(12))
def test_random_options_against_sdpa(seed):
    gen = torch.Generator().manual_seed(seed)
    r = lambda lo, hi: int(torch.randint(lo, hi + 1, (), generator=gen))  # noqa: E731
    B, hk = r(1, 2), r(1, 3)
    hq = hk * r(1, 3)
    L, S, E, Ev = (r(1, 3) * [1, 7, 63, 65, 129][r(0, 4)] // r(1, 3) or 1), r(1, 90), [8, 16, 64][r(0, 2)], [8, 16, 32][r(0, 2)]
    kw = {}
    if r(0, 1):
        kw["is_causal"] = True
        S = max(S, L)
    if r(0, 1):
        kw["scale"] = 0.3
    kind = r(0, 2)
    if kind == 1:
        kw["attn_mask"] = torch.rand(B, 1, L, S, generator=gen) > 0.3
        kw["attn_mask"][..., 0] = True  # no fully masked row here (PyTorch gives NaN there)
    elif kind == 2:
        kw["attn_mask"] = torch.randn(B, hq, L, S, generator=gen)
    q = torch.randn(B, hq, L, E, generator=gen)
    k = torch.randn(B, hk, S, E, generator=gen)
    v = torch.randn(B, hk, S, Ev, generator=gen)
    if r(0, 1):  # strided: (B, L, H, E) memory seen as (B, H, L, E)
        q = q.transpose(1, 2).contiguous().transpose(1, 2)
        k = k.transpose(1, 2).contiguous().transpose(1, 2)
    g = torch.randn(B, hq, L, Ev, generator=gen)
    want = reference(q, k, v, g, enable_gqa=hq != hk, **dict(kw))
    got = ours(q, k, v, g, enable_gqa=hq != hk, **kw)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want):
        assert a.shape == b.shape and err(a, b) <= TOL[torch.float32], (name, err(a, b), B, hq, hk, L, S, E, kw.keys())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_storage(dtype):
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 4, 65, 64, generator=gen).to(dtype) for _ in range(3))
    g = torch.randn(2, 4, 65, 64, generator=gen).to(dtype)
    want = reference(q, k, v, g, is_causal=True)
    got = ours(q, k, v, g, is_causal=True)
    assert got[0].dtype == dtype
    for a, b in zip(got, want):
        assert err(a, b) <= TOL[dtype] * max(1.0, b.abs().max().item())


def test_leading_dims_and_3d():
    gen = torch.Generator().manual_seed(4)
    q = torch.randn(2, 3, 2, 9, 8, generator=gen)
    k = torch.randn(1, 3, 2, 11, 8, generator=gen)
    v = torch.randn(2, 1, 2, 11, 8, generator=gen)
    o = st.scaled_dot_product_attention(q, k, v)
    assert err(o, F.scaled_dot_product_attention(q.double(), k.double(), v.double())) < 2e-5
    q3 = torch.randn(2, 9, 8, generator=gen)
    assert err(st.scaled_dot_product_attention(q3, q3, q3),
               F.scaled_dot_product_attention(q3.double(), q3.double(), q3.double())) < 2e-5


def test_fully_masked_rows_give_zeros_and_zero_gradients():
    q, k, v = (torch.randn(1, 2, 5, 8, requires_grad=True) for _ in range(3))
    mask = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    mask[..., 2, :] = False
    o = st.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    o.sum().backward()
    assert torch.equal(o[:, :, 2], torch.zeros_like(o[:, :, 2]))
    assert torch.equal(q.grad[:, :, 2], torch.zeros_like(q.grad[:, :, 2]))
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_extra_keywords_against_an_explicit_bias():
    """window, ALiBi, softcap and seqlens_kv against PyTorch with the same rule as a mask/bias."""
    gen = torch.Generator().manual_seed(5)
    B, H, L, S, E = 2, 4, 33, 40, 16
    q, k, v = (torch.randn(B, H, n, E, generator=gen) for n in (L, S, S))
    g = torch.randn(B, H, L, E, generator=gen)
    slopes = torch.rand(H, generator=gen)
    lens = torch.tensor([40, 23], dtype=torch.int32)
    i = torch.arange(L)[None, :, None]
    j = torch.arange(S)[None, None, :]
    d = i + lens[:, None, None] - L        # the bottom-right diagonal of each sequence (B, L, 1)
    allowed = (j >= d - 5) & (j <= d + 3) & (j < lens[:, None, None])   # (B, L, S)
    bias = -slopes[None, :, None, None] * (d[:, None] - j[:, None]).abs()  # (B, H, L, S)
    cap = 2.0
    # softcap: s = cap * tanh(s / cap) before the bias: an explicit float64 reference;
    # rows with no key left are zeros in sattn (PyTorch's softmax gives NaN there)
    q64, k64, v64 = (x.double().requires_grad_() for x in (q, k, v))
    s = cap * torch.tanh(q64 @ k64.transpose(-1, -2) / math.sqrt(E) / cap) + bias.double()
    s = s.masked_fill(~allowed[:, None], float("-inf"))
    o64 = torch.nan_to_num(torch.softmax(s, -1)) @ v64
    want = (o64,) + torch.autograd.grad(o64, (q64, k64, v64), g.double())
    qq, kk, vv = (x.clone().requires_grad_() for x in (q, k, v))
    o = st.scaled_dot_product_attention(qq, kk, vv, window=(5, 3), alibi_slopes=slopes, softcap=cap,
                                        seqlens_kv=lens)
    got = (o,) + torch.autograd.grad(o, (qq, kk, vv), g)
    for a, b in zip(got, want):
        assert err(a, b) < 2e-5


def test_varlen_equals_each_sequence_alone():
    gen = torch.Generator().manual_seed(6)
    lens = [5, 17, 1, 30]
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.int32)
    T, H, Hk, D = sum(lens), 4, 2, 16
    q = torch.randn(T, H, D, generator=gen, requires_grad=True)
    k = torch.randn(T, Hk, D, generator=gen, requires_grad=True)
    v = torch.randn(T, Hk, D, generator=gen, requires_grad=True)
    o, lse = st.attention_varlen(q, k, v, cu, cu, causal="bottom_right", return_lse=True)
    assert o.shape == (T, H, D) and lse.shape == (H, T)
    for b, n in enumerate(lens):
        s = slice(int(cu[b]), int(cu[b + 1]))
        want = F.scaled_dot_product_attention(q[s].transpose(0, 1).double(), k[s].transpose(0, 1).double(),
                                              v[s].transpose(0, 1).double(), is_causal=True, enable_gqa=True)
        assert err(o[s].transpose(0, 1), want) < 2e-5
    o.sum().backward()
    assert q.grad.shape == q.shape and torch.isfinite(q.grad).all()


def test_dropout_fresh_seed_repeatable_and_used_by_the_backward():
    q, k, v = (torch.randn(1, 2, 16, 8) for _ in range(3))
    a = st.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    b = st.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert not torch.equal(a, b), "two calls drew the same dropout mask"
    torch.manual_seed(11)
    a = st.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    torch.manual_seed(11)
    b = st.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert torch.equal(a, b), "torch.manual_seed does not repeat the mask"
    # out is linear in v: sum(out * g) = sum(v * dv) exactly when the backward applies
    # the forward's mask
    vv = v.clone().requires_grad_()
    g = torch.randn(1, 2, 16, 8)
    o = st.scaled_dot_product_attention(q, k, vv, dropout_p=0.5)
    (dv,) = torch.autograd.grad(o, vv, g)
    assert abs((o * g).sum().item() - (vv * dv).sum().item()) < 1e-4


def test_compile_fullgraph_and_opcheck():
    def f(q, k, v, m):
        return st.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.5).relu().sum()

    q, k, v = (torch.randn(2, 4, 17, 16, requires_grad=True) for _ in range(3))
    m = torch.rand(2, 1, 17, 17) > 0.2
    m[..., 0] = True
    compiled = torch.compile(f, fullgraph=True)
    a = compiled(q, k, v, m)
    ga = torch.autograd.grad(a, (q, k, v))
    b = f(q, k, v, m)
    gb = torch.autograd.grad(b, (q, k, v))
    assert torch.allclose(a, b, atol=1e-5) and all(torch.allclose(x, y, atol=1e-5) for x, y in zip(ga, gb))
    args = (q, k, v, None, None, None, None, None, None, 1, 1, 0, 0, 0.25, 0.0, 0.0, 0)
    result = torch.library.opcheck(torch.ops.sattn.attention.default, args)
    assert all(v == "SUCCESS" for v in result.values()), result
    args = (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), m, None, None, None, None, None, 0, 2, 4, 0,
            0.25, 0.0, 0.0, 0)
    result = torch.library.opcheck(torch.ops.sattn.attention.default, args)
    assert all(v == "SUCCESS" for v in result.values()), result


def test_errors():
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(RuntimeError, match="CPU only"):
        st.scaled_dot_product_attention(q.to("meta"), q.to("meta"), q.to("meta"))
    with pytest.raises(RuntimeError, match="float64"):
        st.scaled_dot_product_attention(q.double(), q.double(), q.double())
    with pytest.raises(RuntimeError, match="same dtype"):
        st.scaled_dot_product_attention(q, q.half(), q)
    with pytest.raises(RuntimeError, match="embedding size"):
        st.scaled_dot_product_attention(q, torch.randn(1, 2, 4, 9), torch.randn(1, 2, 4, 9))
    with pytest.raises(RuntimeError, match="enable_gqa"):
        st.scaled_dot_product_attention(q, torch.randn(1, 4, 4, 8), torch.randn(1, 4, 4, 8))
    with pytest.raises(RuntimeError, match="broadcast"):
        st.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError):
        st.scaled_dot_product_attention(q, q, q, window=(0, 2))
    with pytest.raises(ValueError):  # sattn's own check: a negative softcap
        st.scaled_dot_product_attention(q, q, q, softcap=-1.0)


def test_operator_checks_what_the_c_side_trusts():
    """Called directly, the operator refuses tensors that do not hold what their shapes say."""
    q, k = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 6, 8)
    op = torch.ops.sattn.attention

    def call(q=q, k=k, v=k, seqlens=None, alibi=None, mask=None):
        return op(q, k, v, mask, None, seqlens, alibi, None, None, 1, 0, 0, 0, 0.3, 0.0, 0.0, 0)

    assert call()[0].shape == (2, 4, 5, 8)
    with pytest.raises(RuntimeError, match="fit together"):
        call(v=torch.randn(1, 2, 6, 8))
    with pytest.raises(RuntimeError, match="seqlens_kv"):
        call(seqlens=torch.tensor([3], dtype=torch.int32))
    with pytest.raises(RuntimeError, match="alibi"):
        call(alibi=torch.ones(3))
    with pytest.raises(RuntimeError, match="broadcast"):
        call(mask=torch.ones(3, 1, 5, 6, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="share"):
        call(v=k.half())
