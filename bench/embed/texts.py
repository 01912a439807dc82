"""The benchmark's texts: n lines of mixed lengths, each of a chosen token count
(5 to 256 with [CLS] and [SEP], uniform), made of whole words of the model's
vocabulary with a fixed seed, so every run and every machine embeds the same text."""
import random


def make_texts(vocab_path, n=1000, lo=5, hi=256, seed=1234):
    words = [w for w in open(vocab_path, encoding="utf-8").read().split("\n")
             if w.isalpha() and w.isascii() and len(w) > 1]
    rng = random.Random(seed)
    # one vocabulary word is one token: a text of k words has k + 2 tokens
    return [" ".join(rng.choice(words) for _ in range(rng.randint(lo, hi) - 2)) for _ in range(n)]
