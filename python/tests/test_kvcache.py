"""sattn.KVCache: decoding against the reference's causal attention over the whole
sequence (bottom-right alignment: new token t sees the tokens up to itself)."""
import numpy as np
import pytest

import sattn
from refimpl import BF16, F16, F32, TOL, close


def run_decode(cache, q, k, v, chunks, **opts):
    """Appends and attends chunk by chunk; returns the outputs along the seq axis."""
    outs, t = [], 0
    for n in chunks:
        outs.append(cache.step(q[:, t:t + n], k[:, t:t + n], v[:, t:t + n], **opts))
        t += n
    return np.concatenate(outs, axis=1)


@pytest.mark.parametrize("dt", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("window", [0, 5])
def test_decode_equals_causal_attention(record, ref, dt, window):
    rng = np.random.default_rng(60 + window)
    code = {"float32": F32, "float16": F16, "bfloat16": BF16}[dt]
    npdt = {"float32": np.float32, "float16": np.float16, "bfloat16": sattn.bfloat16}[dt]
    B, T, hkv, groups, D, Dv = 2, 65, 2, 3, 16, 8
    q = rng.standard_normal((B, T, hkv * groups, D)).astype(npdt)
    k = rng.standard_normal((B, T, hkv, D)).astype(npdt)   # values the cache can hold exactly
    v = rng.standard_normal((B, T, hkv, Dv)).astype(npdt)
    cache = sattn.KVCache(B, hkv, D, head_dim_v=Dv, dtype=npdt, capacity=4, window=window)
    slopes = np.linspace(0.05, 0.3, hkv * groups).astype(np.float32)
    opts = dict(scale=0.3, softcap=5.0, alibi_slopes=slopes)
    chunks = [1] * 20 + [3, 1, 7] + [1] * 34 if not window else [1] * 40 + [4, 1, 4] + [1] * 16
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731  (append takes float32)
    out = run_decode(cache, q, f32(k), f32(v), chunks, **opts)
    assert len(cache) == T and out.dtype == q.dtype and out.shape == (B, T, hkv * groups, Dv)
    win = (window - 1, None) if window else None
    want = ref(q, k, v, causal="bottom_right", window=win, **opts)["out"]
    close(record, f"kvcache out vs reference ({dt})", out, want, TOL[code]["out"], TOL[code]["out_r"])
    cfg = cache.config
    assert cfg["window"] == window and cfg["head_dim_v"] == Dv and cfg["capacity"] >= 4


def test_lse_reset_and_strided(record, ref):
    rng = np.random.default_rng(61)
    base = rng.standard_normal((2, 9, 3, 2, 16), dtype=np.float32)  # fused (B, T, 3, H, D)
    q, k, v = base[:, :, 0], base[:, :, 1], base[:, :, 2]  # views with gaps
    cache = sattn.KVCache(2, 2, 16, max_tokens=9)
    before = sattn.copies_made()
    cache.append(k, v)
    out, lse = cache.attend(q, return_lse=True)
    assert sattn.copies_made() == before
    want = ref(q, k, v, causal="bottom_right")
    close(record, "kvcache out vs reference (float32)", out, want["out"], 1e-5)
    close(record, "kvcache lse vs reference", lse, want["lse"], 1e-5)
    with pytest.raises(ValueError, match="max_tokens"):
        cache.append(k[:, :1], v[:, :1])  # a 10th token
    cache.reset()
    assert len(cache) == 0
    cache.append(k[:, :1], v[:, :1])
    assert np.allclose(cache.attend(q[:, :1]), v[:, :1])


def test_errors():
    with pytest.raises(ValueError, match="head_dim"):
        sattn.KVCache(1, 1, 0)
    cache = sattn.KVCache(1, 2, 8)
    with pytest.raises(ValueError, match="cache is empty"):
        cache.attend(np.zeros((1, 1, 2, 8), np.float32))
    with pytest.raises(ValueError, match="heads_kv"):
        cache.append(np.zeros((1, 1, 3, 8), np.float32), np.zeros((1, 1, 3, 8), np.float32))
    cache.append(np.zeros((1, 1, 2, 8), np.float32), np.zeros((1, 1, 2, 8), np.float32))
    with pytest.raises(ValueError, match="heads_q"):
        cache.attend(np.zeros((1, 1, 3, 8), np.float32))
