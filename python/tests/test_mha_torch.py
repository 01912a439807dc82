"""sattn.MultiheadAttention against torch.nn.MultiheadAttention (self-attention): outputs,
attention weights (per head and averaged), the input gradient and every parameter
gradient, after load_state_dict from a real torch layer.

PyTorch runs in float64 with the float32 parameters sattn holds, on the same inputs.
Tolerances are the attention's (refimpl.TOL) for the layer as a whole: 1e-5 of
max(1, max|expected|) for outputs, 5e-5 for gradients. The two float32 GEMMs around the
attention sum over embed_dim (<= 64) and over tokens (<= 130) and add about 1e-7 of that
scale (measured: outputs within 3e-7, gradients within 2e-5 of their scale).
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sattn
from refimpl import close, to_f64

OUT_TOL, GRAD_TOL = 1e-5, 5e-5


def torch_layer(E, H, bias, batch_first, seed):
    torch.manual_seed(seed)
    m = torch.nn.MultiheadAttention(E, H, bias=bias, batch_first=batch_first, dtype=torch.float64)
    if bias:  # PyTorch starts the biases at 0: make them matter
        with torch.no_grad():
            m.in_proj_bias.uniform_(-0.5, 0.5)
            m.out_proj.bias.uniform_(-0.5, 0.5)
    with torch.no_grad():  # the values sattn holds: float32
        for p in m.parameters():
            p.copy_(p.float().double())
    return m


def ours_from(m, **kw):
    layer = sattn.MultiheadAttention(m.embed_dim, m.num_heads, bias=m.in_proj_bias is not None,
                                     batch_first=m.batch_first, **kw)
    layer.load_state_dict({k: v.detach().float().numpy() for k, v in m.state_dict().items()})
    return layer


def torch_grads(m):
    return {n: p.grad.numpy() for n, p in m.named_parameters()}


def as_torch_mask(a):
    if a is None:
        return None
    a = np.asarray(a)
    return torch.from_numpy(a.copy()) if a.dtype == np.bool_ else torch.from_numpy(a.astype(np.float64))


def compare(record, layer, m, x, dy_seed=0, label="f32", need_weights=True, avg=True,
            kpm=None, attn_mask=None, is_causal=False, torch_mask=None, out_tol=OUT_TOL,
            grad_tol=GRAD_TOL, out_r=0.0):
    """Forward, weights and backward of layer and torch layer m on x."""
    y, w = layer(x, key_padding_mask=kpm, need_weights=need_weights, attn_mask=attn_mask,
                 average_attn_weights=avg, is_causal=is_causal)
    tx = torch.from_numpy(to_f64(x)).requires_grad_()
    tm = as_torch_mask(attn_mask if torch_mask is None else torch_mask)
    ty, tw = m(tx, tx, tx, key_padding_mask=as_torch_mask(kpm), need_weights=need_weights,
               attn_mask=tm, average_attn_weights=avg, is_causal=is_causal)
    assert y.shape == tuple(ty.shape) and y.dtype == x.dtype
    close(record, f"mha out vs torch f64 ({label})", y, ty.detach().numpy(), out_tol, out_r)
    if need_weights:
        assert w.shape == tuple(tw.shape)
        close(record, "mha weights vs torch f64", w, tw.detach().numpy(), 1e-5)
    else:
        assert w is None and tw is None
    dy = np.random.default_rng(dy_seed).standard_normal(y.shape).astype(x.dtype)
    dx, grads = layer.backward(dy)
    m.zero_grad(set_to_none=True)
    ty.backward(torch.from_numpy(to_f64(dy)))
    close(record, f"mha dx vs torch f64 ({label})", dx, tx.grad.numpy(), grad_tol, out_r)
    want = torch_grads(m)
    assert set(grads) == set(want)
    for n in want:
        close(record, f"mha d[{n}] vs torch f64", grads[n], want[n], grad_tol)


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@pytest.mark.parametrize("seed", range(12))
def test_random_layers(record, seed):
    """Random embed_dim / heads / bias / batch_first / lengths (1, 7, 63, 65) with
    key_padding_mask (bool: trailing or scattered padding, or float), attn_mask (bool
    True = not allowed, or float; (L, L) or (N * H, L, L)), is_causal and need_weights
    per head or averaged."""
    rng = np.random.default_rng(seed)
    H = int(rng.integers(1, 5))
    E = H * int(rng.choice([1, 4, 16]))
    bias, bf = bool(seed % 3), bool(seed % 2)
    N, L = int(rng.integers(1, 3)), int([1, 7, 63, 65][seed % 4])
    m = torch_layer(E, H, bias, bf, seed)
    layer = ours_from(m)
    x = rng.standard_normal((N, L, E) if bf else (L, N, E)).astype(np.float32)
    kw = {"need_weights": seed % 4 != 3, "avg": seed % 3 != 0}
    kind = seed % 4
    if kind in (1, 3):  # key padding: key 0 always valid, so no row loses every key
        if seed % 8 == 1:
            lens = rng.integers(1, L + 1, N)
            kpm = np.arange(L)[None, :] >= lens[:, None]
        else:
            kpm = rng.random((N, L)) < 0.4
            kpm[:, 0] = False
        if seed % 8 == 3:
            kpm = np.where(kpm, -np.inf, rng.standard_normal((N, L))).astype(np.float32)
        kw["kpm"] = kpm
    if kind in (2, 3):
        shape = (L, L) if seed % 3 else (N * H, L, L)
        if seed % 5 < 3:
            am = rng.random(shape) < 0.3  # True = not allowed
            am[..., 0] = False
        else:
            am = rng.standard_normal(shape).astype(np.float32)
        kw["attn_mask"] = am
    if kind == 0 and L > 1:  # causal: torch takes it as a mask plus the hint
        kw["is_causal"] = True
        kw["torch_mask"] = np.triu(np.ones((L, L), bool), 1)
    compare(record, layer, m, x, dy_seed=seed, **kw)


def test_causal_with_mask_and_unbatched(record):
    rng = np.random.default_rng(20)
    m = torch_layer(32, 4, True, True, 20)
    layer = ours_from(m)
    causal = np.triu(np.ones((65, 65), bool), 1)
    x = rng.standard_normal((2, 65, 32)).astype(np.float32)
    compare(record, layer, m, x, attn_mask=causal, is_causal=True)
    compare(record, layer, m, x[0], attn_mask=causal, avg=False)  # unbatched (L, E)


def test_gqa_layer(record):
    """num_kv_heads < num_heads: no torch layer has it, so PyTorch computes it from the
    same parameters with F.linear and scaled_dot_product_attention(enable_gqa=True)."""
    rng = np.random.default_rng(21)
    E, H, Hkv, D, N, L = 48, 6, 2, 8, 2, 63
    layer = sattn.MultiheadAttention(E, H, num_kv_heads=Hkv)
    names = ["q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias", "out_proj.weight",
             "out_proj.bias"]
    assert list(layer.state_dict()) == names
    shapes = [(H * D, E), (Hkv * D, E), (Hkv * D, E), (H * D + 2 * Hkv * D,), (E, H * D), (E,)]
    params = {n: (rng.standard_normal(s) / np.sqrt(E)).astype(np.float32) for n, s in zip(names, shapes)}
    layer.load_state_dict(params)
    t = {n: torch.from_numpy(to_f64(a)).requires_grad_() for n, a in params.items()}
    x = rng.standard_normal((N, L, E)).astype(np.float32)
    tx = torch.from_numpy(to_f64(x)).requires_grad_()
    bq, bk, bv = torch.split(t["in_proj_bias"], [H * D, Hkv * D, Hkv * D])
    heads = lambda a, h: a.view(N, L, h, D).transpose(1, 2)  # noqa: E731
    o = F.scaled_dot_product_attention(heads(F.linear(tx, t["q_proj_weight"], bq), H),
                                       heads(F.linear(tx, t["k_proj_weight"], bk), Hkv),
                                       heads(F.linear(tx, t["v_proj_weight"], bv), Hkv),
                                       is_causal=True, enable_gqa=True)
    ty = F.linear(o.transpose(1, 2).reshape(N, L, H * D), t["out_proj.weight"], t["out_proj.bias"])
    y, w = layer(x, is_causal=True, need_weights=False)
    assert w is None
    close(record, "mha out vs torch f64 (gqa)", y, ty.detach().numpy(), OUT_TOL)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, grads = layer.backward(dy)
    ty.backward(torch.from_numpy(to_f64(dy)))
    close(record, "mha dx vs torch f64 (gqa)", dx, tx.grad.numpy(), GRAD_TOL)
    for n in names:
        close(record, f"mha d[{n}] vs torch f64", grads[n], t[n].grad.numpy(), GRAD_TOL)


def test_fully_masked_rows(record):
    """A query row with every key masked: attention output 0, so the layer gives
    out_proj.bias there, and weights 0; PyTorch gives NaN there with need_weights."""
    rng = np.random.default_rng(22)
    m = torch_layer(16, 2, True, True, 22)
    layer = ours_from(m)
    x = rng.standard_normal((2, 7, 16)).astype(np.float32)
    kpm = np.zeros((2, 7), bool)
    kpm[0] = True  # every key of sequence 0 is padding
    am = np.zeros((7, 7), bool)
    am[3] = True   # row 3 may attend nothing
    y, w = layer(x, key_padding_mask=kpm, attn_mask=am)
    bias = layer.state_dict()["out_proj.bias"]
    assert np.array_equal(y[0], np.broadcast_to(bias, (7, 16)))
    assert np.array_equal(y[1, 3], bias) and np.all(w[0] == 0) and np.all(w[1, 3] == 0)
    tx = torch.from_numpy(to_f64(x))
    _, tw = m(tx, tx, tx, key_padding_mask=torch.from_numpy(kpm), attn_mask=torch.from_numpy(am))
    assert torch.isnan(tw[0]).all()
    ty, _ = m(tx, tx, tx, key_padding_mask=torch.from_numpy(kpm), attn_mask=torch.from_numpy(am),
              need_weights=False)
    live = ty.detach().numpy()[1, [0, 1, 2, 4, 5, 6]]
    close(record, "mha out vs torch f64 (f32)", y[1, [0, 1, 2, 4, 5, 6]], live, OUT_TOL)
    dx, grads = layer.backward(np.ones_like(y))
    assert np.all(np.isfinite(dx)) and all(np.all(np.isfinite(g)) for g in grads.values())


@pytest.mark.parametrize("dt", ["float16", "bfloat16"])
def test_half_precision_layer(record, dt):
    """x and y stored as float16 / bfloat16 (parameters and math in float32): y and dx
    carry half an ulp of rounding more (2^-11, 2^-8 relative)."""
    rng = np.random.default_rng(23)
    npdt = np.float16 if dt == "float16" else sattn.bfloat16
    r = 2**-11 * 1.05 if dt == "float16" else 2**-8 * 1.05
    m = torch_layer(32, 4, True, True, 23)
    layer = ours_from(m, dtype=npdt)
    x = rng.standard_normal((2, 63, 32)).astype(npdt)
    compare(record, layer, m, x, label=dt, is_causal=True,
            torch_mask=np.triu(np.ones((63, 63), bool), 1), out_r=r)


def test_decode_equals_causal_forward(record):
    """Generation with the KV cache, token by token and in chunks, gives the outputs of
    one causal forward."""
    rng = np.random.default_rng(24)
    for hkv in (4, 2, 1):
        layer = sattn.MultiheadAttention(32, 4, num_kv_heads=hkv)
        x = rng.standard_normal((2, 65, 32)).astype(np.float32)
        y, _ = layer(x, is_causal=True, need_weights=False)
        cache = layer.new_cache(2)
        steps = [layer.decode(x[:, t:t + 1], cache) for t in range(33)]
        steps.append(layer.decode(x[:, 33:], cache))  # the rest in one chunk
        assert len(cache) == 65
        close(record, "mha decode vs causal forward", np.concatenate(steps, axis=1), to_f64(y), 1e-5)


def test_state_dict(record):
    m = torch_layer(16, 4, True, False, 25)
    layer = ours_from(m)
    sd = layer.state_dict()
    assert list(sd) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    for n, p in m.state_dict().items():
        assert np.array_equal(sd[n], p.float().numpy())
    with pytest.raises(ValueError, match="in_proj_weight must have shape"):
        layer.load_state_dict(dict(sd, in_proj_weight=np.zeros((16, 16), np.float32)))
    with pytest.raises(ValueError, match="unexpected parameters"):
        layer.load_state_dict(dict(sd, bias_k=np.zeros((1, 1, 16), np.float32)))
    with pytest.raises(ValueError, match="missing parameters"):
        layer.load_state_dict({"in_proj_weight": sd["in_proj_weight"]})
    # q/k/v_proj_weight fill the same rows as in_proj_weight
    w = sd["in_proj_weight"]
    layer.load_state_dict(dict({k: v for k, v in sd.items() if k != "in_proj_weight"},
                               q_proj_weight=w[:16], k_proj_weight=w[16:32], v_proj_weight=w[32:]))
    assert np.array_equal(layer.state_dict()["in_proj_weight"], w)
    nobias = sattn.MultiheadAttention(16, 4, bias=False)
    assert list(nobias.state_dict()) == ["in_proj_weight", "out_proj.weight"]
    with pytest.raises(ValueError, match="not a|self-attention"):
        layer(np.zeros((2, 3, 16), np.float32), np.ones((2, 3, 16), np.float32))


def test_dropout_in_training_mode(record, ref):
    """dropout applies in training mode only. Its mask is the Philox rule of sattn.h
    (PyTorch's generator cannot be matched), so PyTorch computes the layer by hand with
    the mask the reference draws for the layer's seed: outputs and every gradient."""
    rng = np.random.default_rng(26)
    N, L, E, H, p = 2, 7, 16, 2, 0.3
    m = torch_layer(E, H, True, True, 26)
    layer = ours_from(m, dropout=p, seed=77)
    x = rng.standard_normal((N, L, E)).astype(np.float32)
    y, _ = layer(x, need_weights=False)
    assert layer.seed == 78  # the next forward draws a new mask
    keep = np.array([[[[ref.dropout_keep(77, p, b, h, i, j) for j in range(L)] for i in range(L)]
                      for h in range(H)] for b in range(N)], np.float64)
    tx = torch.from_numpy(to_f64(x)).requires_grad_()
    q, k, v = F.linear(tx, m.in_proj_weight, m.in_proj_bias).split(E, dim=-1)
    heads = lambda a: a.view(N, L, H, E // H).transpose(1, 2)  # noqa: E731
    P = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / np.sqrt(E // H), dim=-1)
    o = (P * torch.from_numpy(keep) / (1 - p)) @ heads(v)
    ty = m.out_proj(o.transpose(1, 2).reshape(N, L, E))
    close(record, "mha out vs torch f64 (dropout)", y, ty.detach().numpy(), OUT_TOL)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, grads = layer.backward(dy)
    m.zero_grad(set_to_none=True)
    ty.backward(torch.from_numpy(to_f64(dy)))
    close(record, "mha dx vs torch f64 (dropout)", dx, tx.grad.numpy(), GRAD_TOL)
    for n, w in torch_grads(m).items():
        close(record, f"mha d[{n}] vs torch f64", grads[n], w, GRAD_TOL)
    y2, _ = layer(x, need_weights=False)
    assert not np.array_equal(y, y2)
    plain = ours_from(m)
    ye, _ = layer.eval()(x, need_weights=False)
    assert np.array_equal(ye, plain(x, need_weights=False)[0])
