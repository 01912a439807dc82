"""attn_implementation="sattn" in transformers on real models, against "sdpa":

  all-MiniLM-L6-v2 (BERT, padding masks): last_hidden_state of a padded batch to 1e-5 on
    every real token, and the gradients of one training step to 1e-4. (On padding
    positions, which no pooling reads, PyTorch's own "sdpa" and "eager" differ from each
    other by ~4e-5 there, and from float64 by ~5e-5; sattn is as close.)
  SmolLM2-135M-Instruct (Llama: causal, GQA, the KV cache of generate()): greedy
    generate() of 32 new tokens, one prompt and a left-padded batch of two, the same tokens.

The models come from the packages that ship them (tests/bert/model_files.py, cached in
~/.cache/sattn). Needs transformers (>= 4.48), tokenizers, gguf and accelerate: missing,
the module is skipped loudly, and under CI it fails.
"""
import os
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "bert"))

CI = bool(os.environ.get("CI"))
try:
    import transformers  # noqa: F401
    import gguf  # noqa: F401
    import accelerate  # noqa: F401
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
except ImportError as e:
    if CI:
        raise RuntimeError(f"CI is set but the transformers tests cannot run: {e}") from e
    pytest.skip(f"transformers, gguf or accelerate missing ({e}): the transformers tests did NOT run",
                allow_module_level=True)

import model_files  # noqa: E402
import sattn.torch as st  # noqa: E402

NAME = st.register_transformers()


def fetch(what):
    try:
        return what()
    except RuntimeError as e:
        if CI:
            raise
        pytest.skip(f"model not available ({e}): did NOT run")


@pytest.fixture(scope="module")
def minilm():
    path = fetch(model_files.model_dir)
    tok = AutoTokenizer.from_pretrained(path)
    texts = ["Hello world!", "A much longer sentence that has many more tokens than the first one does.", "",
             "Ünïcödé, CJK 中文 and emoji 😀 in one line", "x " * 60]
    return path, tok(texts, padding=True, return_tensors="pt")


def test_minilm_forward_matches_sdpa(minilm):
    path, batch = minilm
    out = {}
    for impl in ("sdpa", NAME):
        model = AutoModel.from_pretrained(path, attn_implementation=impl).eval()
        assert model.config._attn_implementation == impl
        with torch.no_grad():
            out[impl] = model(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    diff = (out[NAME] - out["sdpa"])[real].abs().max().item()
    print(f"MiniLM last_hidden_state, real tokens: max |sattn - sdpa| = {diff:.3g}")
    assert diff <= 1e-5


def test_minilm_training_step_gradients_match_sdpa(minilm):
    path, batch = minilm
    grads = {}
    for impl in ("sdpa", NAME):
        model = AutoModel.from_pretrained(path, attn_implementation=impl)
        model.train()
        for m in model.modules():  # the same step for both: no dropout draws
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        h = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1)
        loss = ((h * mask).sum(1) / mask.sum(1)).square().mean()   # a pooled objective: real tokens only
        loss.backward()
        grads[impl] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["sdpa"].keys() == grads[NAME].keys() and len(grads[NAME]) > 90
    diff = max((grads[NAME][n] - grads["sdpa"][n]).abs().max().item() for n in grads["sdpa"])
    print(f"MiniLM one training step: max |grad sattn - grad sdpa| = {diff:.3g} over {len(grads[NAME])} tensors")
    assert diff <= 1e-4


@pytest.fixture(scope="module")
def smollm2():
    folder, gguf_file = fetch(model_files.smollm2)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    models = {impl: AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, attn_implementation=impl).eval()
              for impl in ("sdpa", NAME)}
    return tok, models


def prompt_ids(tok, texts):
    chats = [tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False)
             for t in texts]
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok(chats, return_tensors="pt", padding=True)


def test_smollm2_greedy_generate_matches_sdpa(smollm2):
    tok, models = smollm2
    for texts in (["Write a short poem about the sea."],
                  ["What is the capital of France?", "List three prime numbers and explain why they are prime."]):
        batch = prompt_ids(tok, texts)
        out = {}
        for impl, model in models.items():
            with torch.no_grad():
                out[impl] = model.generate(**batch, max_new_tokens=32, min_new_tokens=32, do_sample=False)
        new = out[NAME][:, batch["input_ids"].shape[1]:]
        assert new.shape[1] == 32
        print("SmolLM2 sattn:", [tok.decode(r) for r in new])
        assert torch.equal(out[NAME], out["sdpa"]), [tok.decode(r) for r in out["sdpa"][:, batch["input_ids"].shape[1]:]]
