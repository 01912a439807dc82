"""An independent float64 BERT sentence encoder in NumPy, written from the model's
definition (BERT: Devlin et al. 2019; sentence-transformers' mean pooling and
normalisation), sharing nothing with src/bert: the oracle of the embeddings.

    x = LayerNorm(word[id] + position[i] + token_type[0])
    per layer: a = softmax(Q Kᵀ / √d) V per head, Q = x Wqᵀ + bq, ...
               x = LayerNorm(x + a Woᵀ + bo)
               x = LayerNorm(x + gelu(x W1ᵀ + b1) W2ᵀ + b2),  gelu(t) = t Φ(t) (erf form)
    e = mean over the tokens, e / max(|e|, 1e-12)
"""
import json
import math
import struct

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


def read_safetensors(path):
    """Every tensor as float64, by name (the format: u64 header length, JSON, data)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        dtype = {"F32": "<f4", "I64": "<i8"}[t["dtype"]]
        out[name] = np.frombuffer(data[b:e], dtype=dtype).reshape(t["shape"]).astype(np.float64)
    return out


class Bert:
    def __init__(self, model_dir):
        with open(model_dir + "/config.json") as f:
            self.cfg = json.load(f)
        w = read_safetensors(model_dir + "/model.safetensors")
        self.w = {k[5:] if k.startswith("bert.") else k: v for k, v in w.items()}

    def layernorm(self, x, name):
        eps = self.cfg["layer_norm_eps"]
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def linear(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def embed(self, ids):
        """The normalised mean-pooled embedding of one sequence of token ids."""
        w, H = self.w, self.cfg["num_attention_heads"]
        n = len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self.layernorm(x, "embeddings.LayerNorm")
        E = x.shape[1]
        d = E // H
        for l in range(self.cfg["num_hidden_layers"]):
            p = "encoder.layer.%d." % l
            q = self.linear(x, p + "attention.self.query").reshape(n, H, d).transpose(1, 0, 2)
            k = self.linear(x, p + "attention.self.key").reshape(n, H, d).transpose(1, 0, 2)
            v = self.linear(x, p + "attention.self.value").reshape(n, H, d).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            s = np.exp(s - s.max(-1, keepdims=True))
            a = (s / s.sum(-1, keepdims=True)) @ v
            a = a.transpose(1, 0, 2).reshape(n, E)
            x = self.layernorm(x + self.linear(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = self.linear(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
            x = self.layernorm(x + self.linear(h, p + "output.dense"), p + "output.LayerNorm")
        e = x.mean(0)
        return e / max(np.linalg.norm(e), 1e-12)
