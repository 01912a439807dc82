/* libsattn_bert without a real model: a tiny BERT written by this test (random
 * weights, a vocabulary of a few pieces) exercises the tokenizer's rules, the
 * encoder's invariances and every malformed-model error; the GELU is checked
 * against erf in double. The real all-MiniLM-L6-v2 against tokenizers, a NumPy
 * float64 BERT and sentence-transformers is tests/bert/test_model.py. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bert_internal.h"
#include "sattn_bert.h"
#include "testutil.h"

/* ---- the tiny model ---- */

enum { E = 8, H = 2, NL = 2, I = 16, P = 12, TYPES = 2 };
static const char *const VOCAB[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "##b", "ab", "hello",
                                    "##lo", "hel", "!", "c", "##a", "é", "e", "中", "x"};
enum { NV = sizeof VOCAB / sizeof *VOCAB };

static char root[256];

typedef struct {
    char name[96];
    const char *dtype;
    int ndim;
    int64_t shape[2];
} spec;

static int nspecs;
static spec specs[64];

static void add(const char *name, int ndim, int64_t d0, int64_t d1)
{
    spec *s = &specs[nspecs++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->dtype = "F32", s->ndim = ndim, s->shape[0] = d0, s->shape[1] = d1;
}

static void make_specs(void)
{
    nspecs = 0;
    add("embeddings.word_embeddings.weight", 2, NV, E);
    add("embeddings.position_embeddings.weight", 2, P, E);
    add("embeddings.token_type_embeddings.weight", 2, TYPES, E);
    add("embeddings.LayerNorm.weight", 1, E, 0);
    add("embeddings.LayerNorm.bias", 1, E, 0);
    for (int l = 0; l < NL; l++) {
        static const struct {
            const char *n;
            int nd, d0, d1;
        } t[] = {
            {"attention.self.query.weight", 2, E, E},     {"attention.self.query.bias", 1, E, 0},
            {"attention.self.key.weight", 2, E, E},       {"attention.self.key.bias", 1, E, 0},
            {"attention.self.value.weight", 2, E, E},     {"attention.self.value.bias", 1, E, 0},
            {"attention.output.dense.weight", 2, E, E},   {"attention.output.dense.bias", 1, E, 0},
            {"attention.output.LayerNorm.weight", 1, E, 0}, {"attention.output.LayerNorm.bias", 1, E, 0},
            {"intermediate.dense.weight", 2, I, E},       {"intermediate.dense.bias", 1, I, 0},
            {"output.dense.weight", 2, E, I},             {"output.dense.bias", 1, E, 0},
            {"output.LayerNorm.weight", 1, E, 0},         {"output.LayerNorm.bias", 1, E, 0},
        };
        for (size_t k = 0; k < sizeof t / sizeof *t; k++) {
            char n[96];
            snprintf(n, sizeof n, "encoder.layer.%d.%s", l, t[k].n);
            add(n, t[k].nd, t[k].d0, t[k].d1);
        }
    }
}

static int64_t numel(const spec *s) { return s->ndim == 1 ? s->shape[0] : s->shape[0] * s->shape[1]; }

static void write_text(const char *dir, const char *name, const char *text, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fwrite(text, 1, len, f);
    fclose(f);
}

static void write_str(const char *dir, const char *name, const char *text) { write_text(dir, name, text, strlen(text)); }

/* model.safetensors of the specs (header padded to 8 bytes), values from a fixed seed;
   LayerNorm weights near 1 so the activations stay in a usual range */
static void write_safetensors(const char *dir, size_t truncate_to)
{
    char *hdr = malloc(65536);
    size_t h = 0;
    uint64_t off = 0;
    h += (size_t)sprintf(hdr + h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < nspecs; i++) {
        uint64_t bytes = (uint64_t)numel(&specs[i]) * (strcmp(specs[i].dtype, "F16") == 0 ? 2 : 4);
        if (specs[i].ndim == 1)
            h += (size_t)sprintf(hdr + h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[%llu,%llu]}",
                                 specs[i].name, specs[i].dtype, (long long)specs[i].shape[0],
                                 (unsigned long long)off, (unsigned long long)(off + bytes));
        else
            h += (size_t)sprintf(hdr + h,
                                 ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
                                 specs[i].name, specs[i].dtype, (long long)specs[i].shape[0],
                                 (long long)specs[i].shape[1], (unsigned long long)off,
                                 (unsigned long long)(off + bytes));
        off += bytes;
    }
    hdr[h++] = '}';
    while (h % 8) hdr[h++] = ' ';
    size_t total = 8 + h + (size_t)off;
    uint8_t *file = calloc(1, total);
    for (int k = 0; k < 8; k++) file[k] = (uint8_t)((uint64_t)h >> (8 * k));
    memcpy(file + 8, hdr, h);
    tu_rng r;
    tu_seed(&r, 7);
    uint8_t *data = file + 8 + h;
    for (int i = 0; i < nspecs; i++) {
        int ln = strstr(specs[i].name, "LayerNorm.weight") != NULL;
        for (int64_t k = 0; k < numel(&specs[i]); k++) {
            float v = (float)(ln ? tu_unif(&r, 0.8, 1.2) : tu_unif(&r, -0.5, 0.5));
            if (strcmp(specs[i].dtype, "F16") == 0) {
                data[0] = 0, data[1] = 0x3c, data += 2; /* 1.0 */
            } else {
                memcpy(data, &v, 4), data += 4;
            }
        }
    }
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    fwrite(file, 1, truncate_to && truncate_to < total ? truncate_to : total, f);
    fclose(f);
    free(file);
    free(hdr);
}

static const char CONFIG[] =
    "{\"model_type\": \"bert\", \"hidden_act\": \"gelu\", \"hidden_size\": 8, \"num_attention_heads\": 2, "
    "\"num_hidden_layers\": 2, \"intermediate_size\": 16, \"vocab_size\": 19, \"max_position_embeddings\": 12, "
    "\"type_vocab_size\": 2, \"layer_norm_eps\": 1e-12, \"position_embedding_type\": \"absolute\"}";

static void write_vocab(const char *dir, int skip)
{
    char buf[1024];
    size_t n = 0;
    for (int i = 0; i < NV; i++)
        if (i != skip) n += (size_t)sprintf(buf + n, "%s\n", VOCAB[i]);
    write_text(dir, "vocab.txt", buf, n);
}

/* a good model in root/NAME; returns its path */
static const char *make_model(const char *name)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    mkdir(dir, 0700);
    make_specs();
    write_text(dir, "config.json", CONFIG, strlen(CONFIG));
    write_vocab(dir, -1);
    write_safetensors(dir, 0);
    return dir;
}

static void rm_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* ---- tokenizer ---- */

static int ids_equal(sattn_bert *m, const char *text, size_t len, const int32_t *want, int nwant)
{
    int32_t ids[64];
    int64_t n = -1;
    sattn_bert_status st = sattn_bert_tokenize(m, text, len, ids, 64, &n);
    int ok = st == SATTN_BERT_OK && n == nwant;
    for (int i = 0; ok && i < nwant; i++) ok = ids[i] == want[i];
    if (!ok) {
        printf("  tokens of \"%.*s\":", (int)len, text);
        for (int64_t i = 0; i < n && i < 64; i++) printf(" %d", ids[i]);
        printf("  want");
        for (int i = 0; i < nwant; i++) printf(" %d", want[i]);
        printf("\n");
    }
    return ok;
}
#define TOKENS(m, s, ...)                                                                                         \
    do {                                                                                                         \
        const int32_t want_[] = {__VA_ARGS__};                                                                   \
        tu_check(ids_equal(m, s, sizeof(s) - 1, want_, (int)(sizeof want_ / sizeof *want_)), "tokens of %s",    \
                 #s);                                                                                            \
    } while (0)

static void test_tokenizer(sattn_bert *m)
{
    /* ids: [PAD]0 [UNK]1 [CLS]2 [SEP]3 [MASK]4 a5 b6 ##b7 ab8 hello9 ##lo10 hel11 !12 c13 ##a14 é15 e16 中17 x18 */
    TOKENS(m, "", 2, 3);
    TOKENS(m, "ab", 2, 8, 3);                    /* longest match first */
    TOKENS(m, "abb", 2, 8, 7, 3);                /* then ## pieces */
    TOKENS(m, "Hello!", 2, 9, 12, 3);            /* lowercase, punctuation split */
    TOKENS(m, "hellolo", 2, 9, 10, 3);
    TOKENS(m, "helx", 2, 1, 3);                  /* an unmatched rest: the whole word [UNK] */
    TOKENS(m, "  a\tb\r\nc ", 2, 5, 6, 13, 3);   /* whitespace of every kind */
    TOKENS(m, "a\x0b" "b", 2, 8, 3);             /* U+000B is a control character: dropped, not a space */
    TOKENS(m, "\xc3\xa9", 2, 16, 3);             /* é: NFD, the accent stripped -> e */
    TOKENS(m, "E\xcc\x81", 2, 16, 3);            /* E + combining acute -> e */
    TOKENS(m, "x\xe4\xb8\xadx", 2, 18, 17, 18, 3); /* CJK gets spaces around it */
    TOKENS(m, "a\xff" "b", 2, 8, 3);             /* invalid UTF-8: U+FFFD, then dropped */
    TOKENS(m, "a\xe4\xb8", 2, 5, 3);             /* truncated sequence at the end */
    TOKENS(m, "a\xc0\xaf" "b", 2, 8, 3);         /* overlong encoding */
    TOKENS(m, "a\xed\xa0\x80" "b", 2, 8, 3);     /* an encoded surrogate */
    TOKENS(m, "a\0b", 2, 8, 3);                  /* NUL dropped */
    TOKENS(m, "a[SEP]b", 2, 5, 3, 6, 3);         /* special tokens matched in the raw text */
    TOKENS(m, "a[sep]b", 2, 5, 1, 1, 1, 6, 3);   /* ...case-sensitively: [, sep, ] are words ([UNK] here) */
    TOKENS(m, "[MASK][CLS]", 2, 4, 2, 3);
    TOKENS(m, "\xe2\x80\x8b" "ab", 2, 8, 3);     /* U+200B (Cf) dropped */
    /* a word of 100 characters is looked up, 101 is [UNK] at once */
    {
        char w[102];
        memset(w, 'x', sizeof w);
        int32_t ids[8];
        int64_t n;
        tu_check(sattn_bert_tokenize(m, w, 100, ids, 8, &n) == SATTN_BERT_OK && n == 3 && ids[1] == 1,
                 "100 x: one word, no piece 'xx...' -> [UNK]");
        tu_check(sattn_bert_tokenize(m, w, 101, ids, 8, &n) == SATTN_BERT_OK && n == 3 && ids[1] == 1,
                 "101 x: over max_input_chars_per_word -> [UNK]");
    }
    /* truncation: P = 12 positions -> 10 pieces between [CLS] and [SEP] */
    {
        const char *t = "a b a b a b a b a b a b a b";
        int32_t ids[32];
        int64_t n;
        sattn_bert_status st = sattn_bert_tokenize(m, t, strlen(t), ids, 32, &n);
        tu_check(st == SATTN_BERT_OK && n == 12 && ids[0] == 2 && ids[11] == 3 && ids[10] == 6,
                 "truncated to max_tokens = 12 (got %lld)", (long long)n);
        int64_t n0;
        tu_check(sattn_bert_tokenize(m, t, strlen(t), NULL, 0, &n0) == SATTN_BERT_OK && n0 == 12,
                 "cap 0 gives the count");
        int32_t few[3] = {-7, -7, -7};
        tu_check(sattn_bert_tokenize(m, t, strlen(t), few, 2, &n0) == SATTN_BERT_OK && n0 == 12 && few[0] == 2 &&
                     few[1] == 5 && few[2] == -7,
                 "cap 2 writes 2 ids, nothing past them");
    }
    /* a long text (past the chunk size) gives the pieces of its parts, in order */
    {
        size_t len = 200000;
        char *t = malloc(len);
        for (size_t i = 0; i < len; i++) t[i] = "ab "[i % 3];
        int32_t ids[12];
        int64_t n;
        tu_check(sattn_bert_tokenize(m, t, len, ids, 12, &n) == SATTN_BERT_OK && n == 12 && ids[1] == 8 &&
                     ids[10] == 8,
                 "a 200 kB text: the first 10 pieces");
        free(t);
    }
    tu_check(sattn_bert_token(m, 9) && strcmp(sattn_bert_token(m, 9), "hello") == 0, "token 9 is hello");
    tu_check(sattn_bert_token(m, NV) == NULL && sattn_bert_token(m, -1) == NULL, "out-of-range ids give NULL");
}

/* ---- the encoder ---- */

static double max_diff(const float *a, const float *b, int64_t n)
{
    double d = 0;
    for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static void test_encoder(sattn_bert *m)
{
    const char *texts[] = {"hello!", "", "ab abb a b c", "x中x é e a", "hellolo a[SEP]b c c c c c c c c c"};
    enum { N = sizeof texts / sizeof *texts };
    float all[N * E], one[E], again[N * E];
    tu_check(sattn_bert_embed(m, N, texts, NULL, all) == SATTN_BERT_OK, "embed %d texts: %s", N,
             sattn_bert_last_error());
    for (int b = 0; b < N; b++) {
        tu_check(sattn_bert_embed(m, 1, &texts[b], NULL, one) == SATTN_BERT_OK, "embed text %d alone", b);
        double d = max_diff(one, all + b * E, E);
        tu_check(d <= 1e-6, "text %d alone and in the batch: max diff %.3g (<= 1e-6)", b, d);
        double norm = 0;
        for (int i = 0; i < E; i++) norm += (double)all[b * E + i] * all[b * E + i];
        tu_check(fabs(sqrt(norm) - 1) < 1e-6, "text %d: unit norm (%.9f)", b, sqrt(norm));
    }
    /* the same bits for 1 and 2 threads */
    int saved = sattn_get_num_threads();
    sattn_set_num_threads(1);
    sattn_bert_embed(m, N, texts, NULL, again);
    sattn_set_num_threads(2);
    tu_check(memcmp(all, again, sizeof all) == 0, "1 thread gives the same bits");
    sattn_bert_embed(m, N, texts, NULL, again);
    tu_check(memcmp(all, again, sizeof all) == 0, "2 threads give the same bits");
    sattn_set_num_threads(saved);

    /* encode from ids = embed from text */
    int32_t ids[64], cu[N + 1] = {0};
    for (int b = 0; b < N; b++) {
        int64_t n;
        sattn_bert_tokenize(m, texts[b], strlen(texts[b]), ids + cu[b], 64 - cu[b], &n);
        cu[b + 1] = cu[b] + (int32_t)n;
    }
    float *hs = malloc((size_t)cu[N] * E * sizeof *hs);
    tu_check(sattn_bert_encode(m, N, ids, cu, again, hs) == SATTN_BERT_OK && memcmp(all, again, sizeof all) == 0,
             "encode of the ids = embed of the texts");
    /* hidden states: each row is LayerNorm output with weights ~1: mean of pooled rows */
    double pooled[E] = {0};
    for (int t = cu[0]; t < cu[1]; t++)
        for (int i = 0; i < E; i++) pooled[i] += hs[t * E + i] / (cu[1] - cu[0]);
    double nn = 0;
    for (int i = 0; i < E; i++) nn += pooled[i] * pooled[i];
    double dd = 0;
    for (int i = 0; i < E; i++) dd = fmax(dd, fabs(pooled[i] / sqrt(nn) - all[i]));
    tu_check(dd < 1e-6, "the embedding is the normalised mean of the hidden states (%.3g)", dd);
    free(hs);

    /* attention weights of one text: rows are distributions */
    float w[NL > 0 ? H * 12 * 12 : 1];
    tu_check(sattn_bert_attention(m, 0, w) != SATTN_BERT_OK, "attention after a batch of %d: refused", N);
    sattn_bert_embed(m, 1, &texts[2], NULL, one);
    int64_t n;
    sattn_bert_tokenize(m, texts[2], strlen(texts[2]), NULL, 0, &n);
    for (int l = 0; l < NL; l++) {
        tu_check(sattn_bert_attention(m, l, w) == SATTN_BERT_OK, "attention of layer %d", l);
        double worst = 0;
        for (int64_t r = 0; r < H * n; r++) {
            double s = 0;
            for (int64_t j = 0; j < n; j++) s += w[r * n + j];
            worst = fmax(worst, fabs(s - 1));
        }
        tu_check(worst < 1e-5, "layer %d: every row sums to 1 (%.3g)", l, worst);
    }
    tu_check(sattn_bert_attention(m, NL, w) == SATTN_BERT_ERR_INVALID, "attention of layer %d: refused", NL);

    /* bad arguments */
    tu_check(sattn_bert_embed(m, 0, texts, NULL, all) == SATTN_BERT_ERR_INVALID, "count 0 refused");
    tu_check(sattn_bert_embed(m, 1, texts, NULL, NULL) == SATTN_BERT_ERR_INVALID, "out NULL refused");
    const char *null_text[] = {NULL};
    tu_check(sattn_bert_embed(m, 1, null_text, NULL, all) == SATTN_BERT_ERR_INVALID, "a NULL text refused");
    int32_t bad[3] = {2, NV + 100, 3}, cu3[2] = {0, 3};
    tu_check(sattn_bert_encode(m, 1, bad, cu3, all, NULL) == SATTN_BERT_ERR_INVALID &&
                 strstr(sattn_bert_last_error(), "ids[1]"),
             "an id past the vocabulary refused: %s", sattn_bert_last_error());
    int32_t longids[13] = {0}, cu13[2] = {0, 13};
    tu_check(sattn_bert_encode(m, 1, longids, cu13, all, NULL) == SATTN_BERT_ERR_INVALID,
             "13 tokens with 12 positions refused");
    int32_t cu0[2] = {0, 0};
    tu_check(sattn_bert_encode(m, 1, longids, cu0, all, NULL) == SATTN_BERT_ERR_INVALID, "an empty sequence refused");
}

/* ---- GELU ---- */

static void test_gelu(void)
{
    enum { N = 400001 };
    float *h = malloc(N * sizeof *h), zero = 0;
    for (int i = 0; i < N; i++) h[i] = -10.0f + 20.0f * (float)i / (N - 1);
    float *x = malloc(N * sizeof *x);
    memcpy(x, h, N * sizeof *x);
    for (int i = 0; i < N; i++) bert__bias_gelu(h + i, &zero, 1, 1);
    double worst = 0;
    int at = 0;
    for (int i = 0; i < N; i++) {
        double xd = x[i], want = 0.5 * xd * (1 + erf(xd / sqrt(2.0)));
        double err = fabs(h[i] - want) / fmax(1.0, fabs(xd));
        if (err > worst) worst = err, at = i;
    }
    /* f32 rounding of x * Φ(x) alone is 6e-8 relative; the erf approximation adds 1.2e-7 */
    tu_check(worst <= 2.5e-7, "gelu vs erf in double on [-10, 10]: max error %.3g at x = %.7g (<= 2.5e-7 x max(1, |x|))",
             worst, x[at]);
    float s[4] = {INFINITY, -INFINITY, NAN, 0.0f}, b4[4] = {0, 0, 0, 0};
    bert__bias_gelu(s, b4, 1, 4);
    tu_check(s[0] == INFINITY && s[1] == 0 && isnan(s[2]) && s[3] == 0, "gelu(inf, -inf, nan, 0) = inf, 0, nan, 0");
    free(h);
    free(x);
}

/* ---- malformed models ---- */

static void expect_fail(const char *dir, sattn_bert_status want, const char *file, const char *what)
{
    sattn_bert *m = (sattn_bert *)1;
    sattn_bert_status st = sattn_bert_load(&m, dir);
    const char *msg = sattn_bert_last_error();
    tu_check(st == want && m == NULL && strstr(msg, file) != NULL,
             "%s: status %d (want %d), message names %s: \"%s\"", what, (int)st, (int)want, file, msg);
    sattn_bert_free(st == SATTN_BERT_OK ? m : NULL);
}

/* config.json as CONFIG with the text from replaced by to (the same length) */
static void patch_config(const char *dir, const char *from, const char *to)
{
    char c[sizeof CONFIG];
    memcpy(c, CONFIG, sizeof c);
    char *p = strstr(c, from);
    if (!p || strlen(from) != strlen(to)) {
        fprintf(stderr, "patch_config: \"%s\" -> \"%s\" does not apply\n", from, to);
        exit(1);
    }
    memcpy(p, to, strlen(to));
    write_str(dir, "config.json", c);
}

static void test_malformed(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/missing", root);
    expect_fail(dir, SATTN_BERT_ERR_IO, "missing", "no such folder");

    const char *d = make_model("bad");
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", d);
    /* config.json */
    unlink(path);
    expect_fail(d, SATTN_BERT_ERR_IO, "config.json", "config.json missing");
    write_str(d, "config.json", "{\"hidden_size\": 8,");
    expect_fail(d, SATTN_BERT_ERR_FORMAT, "config.json", "config.json malformed JSON");
    write_str(d, "config.json", "[1, 2]");
    expect_fail(d, SATTN_BERT_ERR_FORMAT, "config.json", "config.json not an object");
    patch_config(d, "\"gelu\"", "\"relu\"");
    expect_fail(d, SATTN_BERT_ERR_UNSUPPORTED, "config.json", "hidden_act relu");
    patch_config(d, "\"hidden_size\": 8", "\"hidden_size\": 9");
    expect_fail(d, SATTN_BERT_ERR_UNSUPPORTED, "config.json", "hidden_size 9 with 2 heads");
    patch_config(d, "\"num_hidden_layers\": 2", "\"num_hidden_layerz\": 2");
    expect_fail(d, SATTN_BERT_ERR_FORMAT, "config.json", "num_hidden_layers missing");
    patch_config(d, "\"hidden_size\": 8", "\"hidden_size\":-8");
    expect_fail(d, SATTN_BERT_ERR_UNSUPPORTED, "config.json", "hidden_size -8");
    patch_config(d, "\"bert\"", "\"gpt2\"");
    expect_fail(d, SATTN_BERT_ERR_UNSUPPORTED, "config.json", "model_type gpt2");
    patch_config(d, "\"vocab_size\": 19", "\"vocab_size\": 12"); /* 19 pieces in vocab.txt */
    expect_fail(d, SATTN_BERT_ERR_FORMAT, "vocab.txt", "more pieces than vocab_size");
    write_str(d, "config.json", CONFIG);
    /* the sentence-transformers files */
    write_str(d, "sentence_bert_config.json", "{\"max_seq_length\": 13}");
    expect_fail(d, SATTN_BERT_ERR_UNSUPPORTED, "sentence_bert_config.json", "max_seq_length past the positions");
    write_str(d, "sentence_bert_config.json", "{\"max_seq_length\": 10}");
    snprintf(path, sizeof path, "%s/1_Pooling", d);
    mkdir(path, 0700);
    write_str(d, "1_Pooling/config.json", "{\"pooling_mode_cls_token\": true, \"pooling_mode_mean_tokens\": false}");
    expect_fail(d, SATTN_BERT_ERR_UNSUPPORTED, "1_Pooling/config.json", "CLS pooling");
    write_str(d, "1_Pooling/config.json", "{\"pooling_mode_mean_tokens\": true}");
    write_str(d, "modules.json", "[{\"type\": \"sentence_transformers.models.Dense\"}]");
    expect_fail(d, SATTN_BERT_ERR_UNSUPPORTED, "modules.json", "a Dense module");
    write_str(d, "modules.json", "{");
    expect_fail(d, SATTN_BERT_ERR_FORMAT, "modules.json", "modules.json malformed");
    write_str(d, "modules.json", "[{\"type\": \"x.Transformer\"}, {\"type\": \"x.Pooling\"}]");
    {
        sattn_bert *m = NULL;
        sattn_bert_info info;
        tu_check(sattn_bert_load(&m, d) == SATTN_BERT_OK && sattn_bert_get_info(m, &info) == SATTN_BERT_OK &&
                     info.normalize == 0 && info.max_tokens == 10,
                 "modules without Normalize: not normalised; max_seq_length 10 read: %s", sattn_bert_last_error());
        sattn_bert_free(m);
    }
    /* vocab.txt */
    for (int skip = 1; skip <= 3; skip++) {
        write_vocab(d, skip);
        char what[64];
        snprintf(what, sizeof what, "vocabulary without %s", VOCAB[skip]);
        expect_fail(d, SATTN_BERT_ERR_FORMAT, "vocab.txt", what);
    }
    write_str(d, "vocab.txt", "");
    expect_fail(d, SATTN_BERT_ERR_FORMAT, "vocab.txt", "empty vocabulary");
    write_vocab(d, -1);
    /* tokenizer.json */
    write_str(d, "tokenizer.json", "{\"normalizer\": {\"type\": \"NFC\"}}");
    expect_fail(d, SATTN_BERT_ERR_UNSUPPORTED, "tokenizer.json", "another normalizer");
    write_str(d, "tokenizer.json", "not json");
    expect_fail(d, SATTN_BERT_ERR_FORMAT, "tokenizer.json", "tokenizer.json malformed");
    {
        const char *tj =
            "{\"normalizer\": {\"type\": \"BertNormalizer\", \"clean_text\": true, \"handle_chinese_chars\": true, "
            "\"strip_accents\": null, \"lowercase\": true}, \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}, "
            "\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"continuing_subword_prefix\": \"##\", "
            "\"max_input_chars_per_word\": 100}, \"added_tokens\": [{\"id\": 99, \"content\": \"[X]\"}]}";
        write_text(d, "tokenizer.json", tj, strlen(tj));
        expect_fail(d, SATTN_BERT_ERR_UNSUPPORTED, "tokenizer.json", "an added token past the vocabulary");
        unlink(strcat(strcpy(path, d), "/tokenizer.json"));
    }
    /* model.safetensors */
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    unlink(path);
    expect_fail(d, SATTN_BERT_ERR_IO, "model.safetensors", "weights missing");
    static const size_t cuts[] = {1, 7, 8, 100, 2000, 3000};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        write_safetensors(d, cuts[k]);
        char what[64];
        snprintf(what, sizeof what, "weights truncated to %zu bytes", cuts[k]);
        expect_fail(d, SATTN_BERT_ERR_FORMAT, "model.safetensors", what);
    }
    {
        struct stat sb;
        write_safetensors(d, 0);
        stat(path, &sb);
        write_safetensors(d, (size_t)sb.st_size - 4);
        expect_fail(d, SATTN_BERT_ERR_FORMAT, "model.safetensors", "weights truncated by 4 bytes");
    }
    make_specs();
    specs[10].shape[0] = E + 1; /* a wrong shape, offsets consistent */
    write_safetensors(d, 0);
    expect_fail(d, SATTN_BERT_ERR_FORMAT, "model.safetensors", "a tensor of the wrong shape");
    make_specs();
    specs[3].dtype = "F16";
    write_safetensors(d, 0);
    expect_fail(d, SATTN_BERT_ERR_UNSUPPORTED, "model.safetensors", "an F16 tensor");
    make_specs();
    snprintf(specs[20].name, sizeof specs[20].name, "encoder.layer.0.renamed");
    write_safetensors(d, 0);
    expect_fail(d, SATTN_BERT_ERR_FORMAT, "model.safetensors", "a tensor missing");
    {
        /* a header that lies: offsets past the end, a shape/offset mismatch, no JSON */
        static const char *const heads[] = {
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,1600]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,16]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,4]}}",
            "{\"a\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[4.5],\"data_offsets\":[0,16]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[9007199254740992,9007199254740992],\"data_offsets\":[0,16]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}}",
            "{\"a\":",
            "[]",
        };
        for (size_t k = 0; k < sizeof heads / sizeof *heads; k++) {
            size_t hl = strlen(heads[k]);
            uint8_t buf[256] = {0};
            for (int b = 0; b < 8; b++) buf[b] = (uint8_t)((uint64_t)hl >> (8 * b));
            memcpy(buf + 8, heads[k], hl);
            write_text(d, "model.safetensors", (const char *)buf, 8 + hl + 16);
            char what[96];
            snprintf(what, sizeof what, "safetensors header %zu", k);
            expect_fail(d, SATTN_BERT_ERR_FORMAT, "model.safetensors", what);
        }
        uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
        write_text(d, "model.safetensors", (const char *)huge, sizeof huge);
        expect_fail(d, SATTN_BERT_ERR_FORMAT, "model.safetensors", "a header length of 2^64 - 1");
    }
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    unlink(path);
    mkdir(path, 0700);
    expect_fail(d, SATTN_BERT_ERR_IO, "model.safetensors", "weights are a folder");
    rmdir(path);
}

int main(void)
{
    tu_begin();
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/sattn-bert-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    const char *dir = make_model("good");
    sattn_bert *m = NULL;
    sattn_bert_status st = sattn_bert_load(&m, dir);
    tu_check(st == SATTN_BERT_OK, "load the tiny model: %s", sattn_bert_last_error());
    if (st == SATTN_BERT_OK) {
        test_tokenizer(m);
        test_encoder(m);
        sattn_bert_free(m);
    }
    test_gelu();
    test_malformed();
    rm_tree(root);
    return tu_summary("bert");
}
