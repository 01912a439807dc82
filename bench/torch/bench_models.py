#!/usr/bin/env python3
"""attn_implementation "sattn" against "sdpa" and "eager" inside real transformers models,
in one run, 2 threads (torch.set_num_threads), medians of --reps runs:

  MiniLM forward    all-MiniLM-L6-v2 on a padded batch of 32 texts of 5 to 256 tokens
  SmolLM2 prefill   SmolLM2-135M-Instruct (GGUF, dequantised to float32), one forward of
                    2048 tokens without a cache
  SmolLM2 decode    tokens/s of 32 greedy steps with a KV cache at a 2048-token context

    SATTN_LIBRARY=build/libsattn.so PYTHONPATH=python python3 bench/torch/bench_models.py

The attention share of each is measured, not guessed: each implementation runs under a
registered wrapper that times its calls (perf_counter around each attention call of the
model, summed), so "attention" is the time spent inside the attention functions and
share = attention / total; the rest is the model's GEMMs, norms, masks and overhead.
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


class Timed:
    """An attention function that times the one it calls."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.seconds += time.perf_counter() - t0
        return out


SATTN = st.register_transformers()
IMPLS = [SATTN, "sdpa", "eager"]


def timed_impls(eager_fn):
    """Registers "timed-<impl>" for each implementation; returns {impl: (name, Timed)}."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import eager_mask
    fns = {SATTN: AttentionInterface._global_mapping[SATTN], "sdpa": sdpa_attention_forward, "eager": eager_fn}
    masks = {SATTN: sdpa_mask, "sdpa": sdpa_mask, "eager": eager_mask}
    out = {}
    for impl in IMPLS:
        t = Timed(fns[impl])
        AttentionInterface.register("timed-" + impl, t)
        ALL_MASK_ATTENTION_FUNCTIONS.register("timed-" + impl, masks[impl])
        out[impl] = ("timed-" + impl, t)
    return out


def median_time(fn, reps, timer):
    """(median total, median attention) seconds of fn over reps runs, after a warm-up."""
    fn()
    t, a = [], []
    for _ in range(reps):
        timer.seconds = 0.0
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
        a.append(timer.seconds)
    return statistics.median(t), statistics.median(a)


def minilm(reps):
    path = model_files.model_dir()
    tok = AutoTokenizer.from_pretrained(path)
    texts = make_texts(os.path.join(path, "vocab.txt"), n=32, seed=7)
    batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    from transformers.models.bert.modeling_bert import eager_attention_forward
    res = {}
    for impl, (name, timer) in timed_impls(eager_attention_forward).items():
        model = AutoModel.from_pretrained(path, attn_implementation=name).eval()
        with torch.no_grad():
            res[impl] = median_time(lambda: model(**batch), reps, timer)
    real = int(batch["attention_mask"].sum())
    return res, f"32 texts, {real} tokens padded to {batch['input_ids'].numel()}"


def smollm2(reps, context=2048, steps=32):
    folder, gguf = model_files.smollm2()
    torch.manual_seed(0)
    ids = torch.randint(100, 40000, (1, context))
    from transformers.models.llama.modeling_llama import eager_attention_forward
    pre, dec = {}, {}
    for impl, (name, timer) in timed_impls(eager_attention_forward).items():
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, attn_implementation=name).eval()
        with torch.no_grad():
            pre[impl] = median_time(lambda: model(ids, use_cache=False), reps, timer)

            def decode():
                out = model(ids, use_cache=True)
                cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
                timer.seconds = 0.0
                t0 = time.perf_counter()
                for _ in range(steps):
                    out = model(nxt, past_key_values=cache, use_cache=True)
                    cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
                return time.perf_counter() - t0, timer.seconds

            decode()
            runs = [decode() for _ in range(reps)]
            dec[impl] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        del model
    return pre, dec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sattn.set_num_threads(a.threads)
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from machine import cpu_name
    m, what = minilm(a.reps)
    pre, dec = smollm2(a.reps)
    import transformers
    print(f"CPU: {cpu_name()}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, sattn {sattn.version()} "
          f"({sattn.isa()} kernels, GEMMs of sattn's own layer unused here); {a.threads} threads; medians of {a.reps}")
    print()
    print(f"{'case':<52} {'impl':<6} {'time':>11} {'attention':>11} {'share':>7} {'vs sdpa':>8}")

    def rows(case, res, per=None):
        for impl in IMPLS:
            t, att = res[impl]
            shown = f"{per / t:.1f} tok/s" if per else f"{t * 1e3:.1f} ms"
            print(f"{case:<52} {impl:<6} {shown:>11} {att * 1e3:>9.1f}ms {100 * att / t:>6.1f}% "
                  f"{res['sdpa'][0] / t:>7.2f}x")

    rows(f"MiniLM forward ({what})", m)
    rows("SmolLM2-135M prefill, 2048 tokens", pre)
    rows("SmolLM2-135M decode, 32 steps at 2048 context", dec, per=32)


if __name__ == "__main__":
    main()
