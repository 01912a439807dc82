/* libFuzzer target: the WordPiece tokenizer (src/bert/tokenizer.c) on any bytes.
 * Byte 0 picks the normalizer switches, byte 1 max_tokens (2 to 257), byte 2 the
 * capacity given; the rest is the text. Every input must give [CLS] ... [SEP] of at
 * most max_tokens valid ids, the same twice, and a smaller capacity a prefix of them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert_internal.h"

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_tokenizer: %s\n", what);
    abort(); /* a finding: libFuzzer saves the input */
}

static const char VOCAB[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\n##b\nab\nhello\n##lo\n!\n\xc3\xa9\ne\n"
                            "\xe4\xb8\xad\n##\xe4\xb8\xad\nx\n##x\n\xce\xb1\n\xd0\xb4\n##\n#\n[\n]\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bert_tokenizer t;
    static int ready;
    if (!ready) {
        if (tok_init(&t, VOCAB, sizeof VOCAB - 1, "vocab") != SATTN_BERT_OK) fail("the vocabulary did not load");
        ready = 1;
    }
    if (size < 3) return 0;
    t.clean_text = data[0] & 1, t.chinese = (data[0] >> 1) & 1, t.strip_accents = (data[0] >> 2) & 1;
    t.lowercase = (data[0] >> 3) & 1;
    t.max_chars = data[0] & 0x10 ? 3 : 100;
    int64_t max_tokens = 2 + data[1];
    int64_t cap = data[2] % (max_tokens + 1);
    const char *text = (const char *)data + 3;
    size_t len = size - 3;
    int32_t full[258], again[258], part[258];
    int64_t n = -1, n2 = -1, n3 = -1;
    if (tok_encode(&t, text, len, max_tokens, full, max_tokens, &n) != SATTN_BERT_OK) fail("refused a text");
    if (n < 2 || n > max_tokens) fail("token count out of [2, max_tokens]");
    if (full[0] != t.cls || full[n - 1] != t.sep) fail("not [CLS] ... [SEP]");
    for (int64_t i = 0; i < n; i++)
        if (full[i] < 0 || full[i] >= t.n) fail("an id outside the vocabulary");
    if (tok_encode(&t, text, len, max_tokens, again, max_tokens, &n2) != SATTN_BERT_OK || n2 != n ||
        memcmp(full, again, (size_t)n * sizeof *full) != 0)
        fail("not deterministic");
    for (int64_t i = 0; i < 258; i++) part[i] = -5;
    if (tok_encode(&t, text, len, max_tokens, part, cap, &n3) != SATTN_BERT_OK || n3 != n)
        fail("the count depends on the capacity");
    for (int64_t i = 0; i < 258; i++)
        if (i < cap && i < n ? part[i] != full[i] : part[i] != -5) fail("a capacity-limited call wrote wrongly");
    return 0;
}
