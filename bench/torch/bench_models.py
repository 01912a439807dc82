#!/usr/bin/env python3
"""attn_implementation "sattn" against "sdpa" and "eager" inside real transformers models,
in one run, 2 threads (torch.set_num_threads), medians of --reps runs:

  MiniLM forward    all-MiniLM-L6-v2 on a padded batch of 32 texts of 5 to 256 tokens
  SmolLM2 prefill   SmolLM2-135M-Instruct (GGUF, dequantised to float32), one forward of
                    2048 tokens without a cache
  SmolLM2 decode    tokens/s of 32 greedy steps with a KV cache at a 2048-token context

    SATTN_LIBRARY=build/libsattn.so PYTHONPATH=python python3 bench/torch/bench_models.py

The attention share of each is measured, not guessed: the same run with an attention
implementation that returns zeros of the right shape ("none": the model's GEMMs, norms
and masks, without attention) is subtracted from each, so share = (t - t_none) / t.
"""
import argparse
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "bert"))
sys.path.insert(0, os.path.join(ROOT, "bench", "embed"))
import model_files  # noqa: E402
from texts import make_texts  # noqa: E402

import sattn  # noqa: E402
import sattn.torch as st  # noqa: E402
from transformers import AttentionInterface, AutoModel, AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask  # noqa: E402


def no_attention(module, query, key, value, attention_mask, **kwargs):
    """Zeros of the attention's output shape: the rest of the model, timed alone."""
    b, h, l, _ = query.shape
    return query.new_zeros(b, l, h, value.shape[-1]), None


AttentionInterface.register("none", no_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register("none", sdpa_mask)
IMPLS = [st.register_transformers(), "sdpa", "eager", "none"]


def median_time(fn, reps):
    fn()  # warm-up
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def minilm(reps):
    path = model_files.model_dir()
    tok = AutoTokenizer.from_pretrained(path)
    texts = make_texts(os.path.join(path, "vocab.txt"), n=32, seed=7)
    batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    res = {}
    for impl in IMPLS:
        model = AutoModel.from_pretrained(path, attn_implementation=impl).eval()
        with torch.no_grad():
            res[impl] = median_time(lambda: model(**batch), reps)
    real = int(batch["attention_mask"].sum())
    return res, f"32 texts, {real} tokens padded to {batch['input_ids'].numel()}"


def smollm2(reps, context=2048, steps=32):
    folder, gguf = model_files.smollm2()
    torch.manual_seed(0)
    ids = torch.randint(100, 40000, (1, context))
    pre, dec = {}, {}
    for impl in IMPLS:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, attn_implementation=impl).eval()
        with torch.no_grad():
            pre[impl] = median_time(lambda: model(ids, use_cache=False), reps)

            def decode():
                out = model(ids, use_cache=True)
                cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
                t0 = time.perf_counter()
                for _ in range(steps):
                    out = model(nxt, past_key_values=cache, use_cache=True)
                    cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
                return time.perf_counter() - t0

            decode()
            dec[impl] = statistics.median(decode() for _ in range(reps))
        del model
    return pre, dec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sattn.set_num_threads(a.threads)
    sys.path.insert(0, os.path.join(ROOT, "bench", "embed"))
    from bench_embed import cpu_name
    m, what = minilm(a.reps)
    pre, dec = smollm2(a.reps)
    import transformers
    print(f"CPU: {cpu_name()}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, sattn {sattn.version()} "
          f"({sattn.isa()} kernels, GEMMs of sattn's own layer unused here); {a.threads} threads; medians of {a.reps}")
    print()
    print(f"{'case':<44} {'impl':<6} {'time':>10} {'attention':>10} {'share':>7} {'vs sdpa':>8}")

    def rows(case, res, unit="ms", per=None):
        for impl in IMPLS[:3]:
            t, t0 = res[impl], res["none"]
            share = max(0.0, (t - t0) / t)
            shown = f"{per / t:.1f} tok/s" if per else f"{t * 1e3:.1f} ms"
            print(f"{case:<44} {impl:<6} {shown:>10} {max(0.0, t - t0) * 1e3:>8.1f}ms {share * 100:>6.1f}% "
                  f"{res['sdpa'] / t:>7.2f}x")

    rows(f"MiniLM forward ({what})", m)
    rows("SmolLM2-135M prefill, 2048 tokens", pre)
    rows("SmolLM2-135M decode, 32 steps at 2048 context", dec, per=32)


if __name__ == "__main__":
    main()
