/* BERT sentence embeddings on sattn: loading a model folder, the encoder, pooling.
 *
 * Data flow of sattn_bert_embed for texts of n_b tokens (T = sum n_b, packed):
 *     texts --tokenizer--> ids (T), cu_seqlens (count + 1)
 *     x (T, E) = LayerNorm(word[id] + position[i] + type[0])
 *     per layer:  y = sattn_mha_forward(x) over cu_seqlens     x = LayerNorm(x + y)
 *                 h (T, I) = gelu(x W1ᵀ + b1)    y = h W2ᵀ      x = LayerNorm(x + y + b2)
 *     out (count, E) = mean of x over each text's rows, then L2-normalised
 * No row of any buffer belongs to padding: every GEMM has M = T.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bert_internal.h"

/* ---- errors ---- */

static _Thread_local char bert_error[1024];

sattn_bert_status bert__fail(sattn_bert_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(bert_error, sizeof bert_error, fmt, ap);
    va_end(ap);
    return st;
}

const char *sattn_bert_last_error(void) { return bert_error; }

/* ---- the model ---- */

typedef struct {
    sattn_mha *attn;             /* query/key/value/output projections with their biases */
    const float *ln1_g, *ln1_b;  /* attention.output.LayerNorm (E) */
    const float *w1, *b1;        /* intermediate.dense (I, E), (I) */
    const float *w2, *b2;        /* output.dense (E, I), (E) */
    const float *ln2_g, *ln2_b;  /* output.LayerNorm (E) */
} bert_layer;

struct sattn_bert {
    int64_t E, L, H, I;          /* hidden, layers, heads, intermediate */
    int64_t vocab_rows, positions, max_tokens;
    float eps;
    int normalize;
    bert_tokenizer tok;
    st_file st;
    const float *word;           /* (vocab_rows, E) */
    const float *pos;            /* (positions, E) */
    const float *type0;          /* (E): token type 0 */
    const float *emb_g, *emb_b;  /* embeddings.LayerNorm (E) */
    bert_layer *layers;          /* (L) */
    float **owned;               /* copies of tensors the file did not align */
    int nowned;
    /* per call: grown as needed */
    float *x, *y, *h;            /* (T, E), (T, E), (T, I) */
    int64_t cap_tokens;
    int32_t *cu;                 /* (count + 1): the last call's cu_seqlens, which the layers keep */
    int64_t cap_cu;
    int64_t last_count, last_tokens;
};

/* ---- files ---- */

static void join(char *out, size_t cap, const char *dir, const char *name)
{
    size_t n = strlen(dir);
    snprintf(out, cap, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

sattn_bert_status bert__open_file(const char *path, int optional, int *fd, uint64_t *size)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) {
        if (optional && errno == ENOENT) return SATTN_BERT_OK;
        return bert__fail(SATTN_BERT_ERR_IO, "%s: %s", path, strerror(errno));
    }
    struct stat sb;
    const char *why = fstat(*fd, &sb) != 0 ? strerror(errno) : !S_ISREG(sb.st_mode) ? "not a regular file" : NULL;
    if (why) {
        sattn_bert_status st = bert__fail(SATTN_BERT_ERR_IO, "%s: %s", path, why);
        close(*fd);
        *fd = -1;
        return st;
    }
    *size = (uint64_t)sb.st_size;
    return SATTN_BERT_OK;
}

sattn_bert_status bert__parse_json(const char *buf, size_t len, const char *path, cJSON **out)
{
    *out = cJSON_ParseWithLength(buf, len);
    if (*out) return SATTN_BERT_OK;
    const char *at = cJSON_GetErrorPtr();
    long off = at && at >= buf && at <= buf + len ? (long)(at - buf) : -1;
    return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: malformed JSON (near byte %ld)", path, off);
}

int bert__json_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d)) return 0;
    *out = (int64_t)d;
    return 1;
}

/* Reads a whole small file (at most limit bytes). With optional set, a missing file is
   SATTN_BERT_OK with *buf NULL. */
static sattn_bert_status read_file(const char *path, size_t limit, int optional, char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    int fd;
    uint64_t size64;
    sattn_bert_status st = bert__open_file(path, optional, &fd, &size64);
    if (st != SATTN_BERT_OK || fd < 0) return st;
    if (size64 > limit) {
        close(fd);
        return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: %llu bytes, more than the %zu this file may have", path,
                          (unsigned long long)size64, limit);
    }
    size_t size = (size_t)size64;
    char *b = malloc(size + 1);
    if (!b) {
        close(fd);
        return bert__fail(SATTN_BERT_ERR_NOMEM, "%s: out of memory for %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, b + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != size) {
        free(b);
        return bert__fail(SATTN_BERT_ERR_IO, "%s: read %zu of %zu bytes", path, got, size);
    }
    b[size] = '\0';
    *buf = b;
    *len = size;
    return SATTN_BERT_OK;
}

static sattn_bert_status read_json(const char *path, int optional, cJSON **out)
{
    char *buf;
    size_t len;
    *out = NULL;
    sattn_bert_status st = read_file(path, (size_t)64 << 20, optional, &buf, &len);
    if (st != SATTN_BERT_OK || buf == NULL) return st;
    st = bert__parse_json(buf, len, path, out);
    free(buf);
    if (st == SATTN_BERT_OK && !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: the top level is not a JSON object", path);
    }
    return st;
}

/* an integer field in [lo, hi]; required unless def is given (has_def) */
static sattn_bert_status json_field_int(const cJSON *obj, const char *key, int64_t lo, int64_t hi, int has_def,
                                        int64_t def, int64_t *out, const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v && has_def) {
        *out = def;
        return SATTN_BERT_OK;
    }
    if (!v) return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: \"%s\" is missing", path, key);
    if (!bert__json_int(v, lo, hi, out)) /* an integer out of range is a model this code does not run */
        return bert__fail(cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) ? SATTN_BERT_ERR_UNSUPPORTED
                                                                                         : SATTN_BERT_ERR_FORMAT,
                          "%s: \"%s\" must be an integer in [%lld, %lld]", path, key, (long long)lo, (long long)hi);
    return SATTN_BERT_OK;
}

/* ---- configuration ---- */

static sattn_bert_status load_config(sattn_bert *m, const char *dir)
{
    char path[4096];
    join(path, sizeof path, dir, "config.json");
    cJSON *cfg;
    sattn_bert_status st = read_json(path, 0, &cfg);
    if (st != SATTN_BERT_OK) return st;
    const cJSON *v;
#define CHECK(call)                                                                                              \
    do {                                                                                                         \
        if ((st = (call)) != SATTN_BERT_OK) goto done;                                                           \
    } while (0)
#define UNSUPPORTED(...)                                                                                         \
    do {                                                                                                         \
        st = bert__fail(SATTN_BERT_ERR_UNSUPPORTED, __VA_ARGS__);                                                \
        goto done;                                                                                               \
    } while (0)
    v = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    if (v && (!cJSON_IsString(v) || strcmp(v->valuestring, "bert") != 0))
        UNSUPPORTED("%s: model_type \"%s\" is not supported (bert only)", path,
                    cJSON_IsString(v) ? v->valuestring : "?");
    v = cJSON_GetObjectItemCaseSensitive(cfg, "hidden_act");
    if (v && (!cJSON_IsString(v) || strcmp(v->valuestring, "gelu") != 0))
        UNSUPPORTED("%s: hidden_act \"%s\" is not supported (gelu, the exact erf form, only)", path,
                    cJSON_IsString(v) ? v->valuestring : "?");
    v = cJSON_GetObjectItemCaseSensitive(cfg, "position_embedding_type");
    if (v && (!cJSON_IsString(v) || strcmp(v->valuestring, "absolute") != 0))
        UNSUPPORTED("%s: position_embedding_type \"%s\" is not supported (absolute only)", path,
                    cJSON_IsString(v) ? v->valuestring : "?");
    int64_t type_vocab;
    CHECK(json_field_int(cfg, "hidden_size", 1, 1 << 16, 0, 0, &m->E, path));
    CHECK(json_field_int(cfg, "num_attention_heads", 1, 1 << 16, 0, 0, &m->H, path));
    CHECK(json_field_int(cfg, "num_hidden_layers", 1, 1 << 12, 0, 0, &m->L, path));
    CHECK(json_field_int(cfg, "intermediate_size", 1, 1 << 20, 0, 0, &m->I, path));
    CHECK(json_field_int(cfg, "vocab_size", 1, INT32_MAX, 0, 0, &m->vocab_rows, path));
    CHECK(json_field_int(cfg, "max_position_embeddings", 2, 1 << 24, 0, 0, &m->positions, path));
    CHECK(json_field_int(cfg, "type_vocab_size", 1, 1 << 16, 1, 2, &type_vocab, path));
    if (m->E % m->H != 0 || m->E / m->H > 4096)
        UNSUPPORTED("%s: hidden_size %lld is not num_attention_heads %lld times a head size of at most 4096", path,
                    (long long)m->E, (long long)m->H);
    v = cJSON_GetObjectItemCaseSensitive(cfg, "layer_norm_eps");
    m->eps = 1e-12f;
    if (v) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0 && v->valuedouble < 1))
            UNSUPPORTED("%s: layer_norm_eps must be a number in (0, 1)", path);
        m->eps = (float)v->valuedouble;
    }
    m->max_tokens = m->positions;
    cJSON_Delete(cfg);
    cfg = NULL;

    /* sentence-transformers' settings: max_seq_length, pooling, normalisation */
    join(path, sizeof path, dir, "sentence_bert_config.json");
    CHECK(read_json(path, 1, &cfg));
    if (cfg) {
        CHECK(json_field_int(cfg, "max_seq_length", 2, m->positions, 1, m->positions, &m->max_tokens, path));
        cJSON_Delete(cfg);
        cfg = NULL;
    }
    join(path, sizeof path, dir, "1_Pooling/config.json");
    CHECK(read_json(path, 1, &cfg));
    if (cfg) {
        static const char *const others[] = {"pooling_mode_cls_token", "pooling_mode_max_tokens",
                                             "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                                             "pooling_mode_lasttoken"};
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "pooling_mode_mean_tokens")))
            UNSUPPORTED("%s: pooling_mode_mean_tokens is not true (mean pooling only)", path);
        for (size_t i = 0; i < sizeof others / sizeof *others; i++)
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, others[i])))
                UNSUPPORTED("%s: %s is not supported (mean pooling only)", path, others[i]);
        cJSON_Delete(cfg);
        cfg = NULL;
    }
done:
    cJSON_Delete(cfg);
#undef CHECK
#undef UNSUPPORTED
    return st;
}

/* modules.json: a list of {"type": ...}; normalised iff one is a Normalize module. */
static sattn_bert_status load_modules(sattn_bert *m, const char *dir)
{
    char path[4096];
    join(path, sizeof path, dir, "modules.json");
    char *buf;
    size_t len;
    m->normalize = 1;
    sattn_bert_status st = read_file(path, (size_t)1 << 20, 1, &buf, &len);
    if (st != SATTN_BERT_OK || buf == NULL) return st;
    cJSON *root;
    st = bert__parse_json(buf, len, path, &root);
    free(buf);
    if (st != SATTN_BERT_OK) return st;
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: not a JSON array of modules", path);
    }
    m->normalize = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "type");
        if (!cJSON_IsString(t)) {
            cJSON_Delete(root);
            return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: a module without a \"type\" string", path);
        }
        const char *dot = strrchr(t->valuestring, '.');
        const char *name = dot ? dot + 1 : t->valuestring;
        if (strcmp(name, "Normalize") == 0) m->normalize = 1;
        else if (strcmp(name, "Transformer") != 0 && strcmp(name, "Pooling") != 0) {
            sattn_bert_status s2 = bert__fail(SATTN_BERT_ERR_UNSUPPORTED,
                                              "%s: module \"%s\" is not supported (Transformer, Pooling, "
                                              "Normalize)", path, t->valuestring);
            cJSON_Delete(root);
            return s2;
        }
    }
    cJSON_Delete(root);
    return SATTN_BERT_OK;
}

/* ---- weights ---- */

/* The f32 tensor name (or "bert." name) of the given shape (dims, up to 2), as a
   pointer into the mapping, or into an aligned copy when the file's layout does not
   allow reading it in place. */
static sattn_bert_status tensor(sattn_bert *m, const char *path, const char *name, int ndim, int64_t d0,
                                int64_t d1, const float **out)
{
    char full[256];
    const st_tensor *t = st_find(&m->st, name);
    if (!t) {
        snprintf(full, sizeof full, "bert.%s", name);
        t = st_find(&m->st, full);
    }
    if (!t) return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: tensor \"%s\" is missing", path, name);
    if (t->dtype != ST_F32)
        return bert__fail(SATTN_BERT_ERR_UNSUPPORTED, "%s: tensor \"%s\" is %s; only F32 is read", path, name,
                          t->dtype_name);
    int64_t want[2] = {d0, d1};
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
    if (!ok) {
        char got[128] = "", need[64];
        size_t k = 0;
        for (int i = 0; i < t->ndim && k < sizeof got - 24; i++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (ndim == 1) snprintf(need, sizeof need, "%lld", (long long)d0);
        else snprintf(need, sizeof need, "%lld, %lld", (long long)d0, (long long)d1);
        return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: tensor \"%s\" has shape [%s]; config.json needs [%s]", path,
                          name, got, need);
    }
    const uint8_t *p = m->st.data + t->begin;
    if ((uintptr_t)p % sizeof(float) == 0) {
        *out = (const float *)p;
        return SATTN_BERT_OK;
    }
    size_t bytes = (size_t)(t->end - t->begin);
    float **owned = realloc(m->owned, (size_t)(m->nowned + 1) * sizeof *owned);
    if (!owned) return bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory copying tensor \"%s\"", name);
    m->owned = owned;
    float *copy = malloc(bytes ? bytes : 1);
    if (!copy) return bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory copying tensor \"%s\"", name);
    memcpy(copy, p, bytes);
    owned[m->nowned++] = copy;
    *out = copy;
    return SATTN_BERT_OK;
}

static sattn_bert_status load_weights(sattn_bert *m, const char *dir)
{
    char path[4096];
    join(path, sizeof path, dir, "model.safetensors");
    sattn_bert_status st = st_open(&m->st, path);
    if (st != SATTN_BERT_OK) return st;
    const int64_t E = m->E, I = m->I;
    const float *type;
    if ((st = tensor(m, path, "embeddings.word_embeddings.weight", 2, m->vocab_rows, E, &m->word)) ||
        (st = tensor(m, path, "embeddings.position_embeddings.weight", 2, m->positions, E, &m->pos)))
        return st;
    /* token_type_embeddings: only row 0 is used; its row count is the config's */
    const st_tensor *tt = st_find(&m->st, "embeddings.token_type_embeddings.weight");
    if (!tt) tt = st_find(&m->st, "bert.embeddings.token_type_embeddings.weight");
    int64_t types = tt && tt->ndim == 2 ? tt->shape[0] : 1;
    if ((st = tensor(m, path, "embeddings.token_type_embeddings.weight", 2, types < 1 ? 1 : types, E, &type)) ||
        (st = tensor(m, path, "embeddings.LayerNorm.weight", 1, E, 0, &m->emb_g)) ||
        (st = tensor(m, path, "embeddings.LayerNorm.bias", 1, E, 0, &m->emb_b)))
        return st;
    m->type0 = type;
    m->layers = calloc((size_t)m->L, sizeof *m->layers);
    if (!m->layers) return bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory for %lld layers", (long long)m->L);
    for (int64_t l = 0; l < m->L; l++) {
        bert_layer *ly = &m->layers[l];
        char n[128];
        const float *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;
#define T(dst, nd, a, b, fmt)                                                                                    \
    do {                                                                                                         \
        snprintf(n, sizeof n, "encoder.layer.%lld." fmt, (long long)l);                                          \
        if ((st = tensor(m, path, n, nd, a, b, dst)) != SATTN_BERT_OK) return st;                                \
    } while (0)
        T(&wq, 2, E, E, "attention.self.query.weight");
        T(&bq, 1, E, 0, "attention.self.query.bias");
        T(&wk, 2, E, E, "attention.self.key.weight");
        T(&bk, 1, E, 0, "attention.self.key.bias");
        T(&wv, 2, E, E, "attention.self.value.weight");
        T(&bv, 1, E, 0, "attention.self.value.bias");
        T(&wo, 2, E, E, "attention.output.dense.weight");
        T(&bo, 1, E, 0, "attention.output.dense.bias");
        T(&ly->ln1_g, 1, E, 0, "attention.output.LayerNorm.weight");
        T(&ly->ln1_b, 1, E, 0, "attention.output.LayerNorm.bias");
        T(&ly->w1, 2, I, E, "intermediate.dense.weight");
        T(&ly->b1, 1, I, 0, "intermediate.dense.bias");
        T(&ly->w2, 2, E, I, "output.dense.weight");
        T(&ly->b2, 1, E, 0, "output.dense.bias");
        T(&ly->ln2_g, 1, E, 0, "output.LayerNorm.weight");
        T(&ly->ln2_b, 1, E, 0, "output.LayerNorm.bias");
#undef T
        /* the attention: one sattn_mha with q, k, v rows side by side */
        sattn_mha_config mc = {.embed_dim = E, .num_heads = m->H, .bias = 1, .dtype = SATTN_F32};
        if (sattn_mha_create(&ly->attn, &mc) != SATTN_OK)
            return bert__fail(SATTN_BERT_ERR_NOMEM, "layer %lld: %s", (long long)l, sattn_last_error());
        float *w = sattn_mha_param(ly->attn, "in_proj_weight", NULL);
        float *b = sattn_mha_param(ly->attn, "in_proj_bias", NULL);
        size_t EE = (size_t)(E * E);
        memcpy(w, wq, EE * sizeof *w), memcpy(w + EE, wk, EE * sizeof *w), memcpy(w + 2 * EE, wv, EE * sizeof *w);
        memcpy(b, bq, (size_t)E * sizeof *b), memcpy(b + E, bk, (size_t)E * sizeof *b);
        memcpy(b + 2 * E, bv, (size_t)E * sizeof *b);
        memcpy(sattn_mha_param(ly->attn, "out_proj.weight", NULL), wo, EE * sizeof *w);
        memcpy(sattn_mha_param(ly->attn, "out_proj.bias", NULL), bo, (size_t)E * sizeof *w);
    }
    return SATTN_BERT_OK;
}

static sattn_bert_status load_tokenizer(sattn_bert *m, const char *dir)
{
    char path[4096];
    char *buf;
    size_t len;
    join(path, sizeof path, dir, "vocab.txt");
    sattn_bert_status st = read_file(path, (size_t)256 << 20, 0, &buf, &len);
    if (st != SATTN_BERT_OK) return st;
    st = tok_init(&m->tok, buf, len, path);
    free(buf);
    if (st != SATTN_BERT_OK) return st;
    if (m->tok.n > m->vocab_rows)
        return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: %lld pieces, but config.json's vocab_size is %lld", path,
                          (long long)m->tok.n, (long long)m->vocab_rows);
    join(path, sizeof path, dir, "tokenizer.json");
    if ((st = read_file(path, (size_t)256 << 20, 1, &buf, &len)) != SATTN_BERT_OK) return st;
    if (buf) {
        st = tok_configure(&m->tok, buf, len, path);
        free(buf);
    }
    return st;
}

void sattn_bert_free(sattn_bert *m)
{
    if (!m) return;
    if (m->layers)
        for (int64_t l = 0; l < m->L; l++) sattn_mha_free(m->layers[l].attn);
    free(m->layers);
    for (int i = 0; i < m->nowned; i++) free(m->owned[i]);
    free(m->owned);
    st_close(&m->st);
    tok_free(&m->tok);
    free(m->x), free(m->y), free(m->h), free(m->cu);
    free(m);
}

sattn_bert_status sattn_bert_load(sattn_bert **model, const char *dir)
{
    if (!model) return bert__fail(SATTN_BERT_ERR_INVALID, "model is NULL");
    *model = NULL;
    if (!dir) return bert__fail(SATTN_BERT_ERR_INVALID, "dir is NULL");
    if (strlen(dir) > 3000) return bert__fail(SATTN_BERT_ERR_INVALID, "the folder's path is too long");
    {
        const uint16_t one = 1;
        if (*(const uint8_t *)&one != 1)
            return bert__fail(SATTN_BERT_ERR_UNSUPPORTED, "safetensors are little-endian; this CPU is not");
    }
    struct stat sb;
    if (stat(dir, &sb) != 0) return bert__fail(SATTN_BERT_ERR_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return bert__fail(SATTN_BERT_ERR_IO, "%s: not a folder", dir);
    sattn_bert *m = calloc(1, sizeof *m);
    if (!m) return bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory");
    sattn_bert_status st;
    if ((st = load_config(m, dir)) || (st = load_modules(m, dir)) || (st = load_tokenizer(m, dir)) ||
        (st = load_weights(m, dir))) {
        sattn_bert_free(m);
        return st;
    }
    *model = m;
    return SATTN_BERT_OK;
}

sattn_bert_status sattn_bert_get_info(const sattn_bert *m, sattn_bert_info *info)
{
    if (!m || !info) return bert__fail(SATTN_BERT_ERR_INVALID, "%s is NULL", m ? "info" : "model");
    *info = (sattn_bert_info){.hidden = m->E, .layers = m->L, .heads = m->H, .intermediate = m->I,
                              .vocab = m->tok.n, .max_tokens = m->max_tokens, .normalize = m->normalize};
    return SATTN_BERT_OK;
}

/* ---- tokens ---- */

sattn_bert_status sattn_bert_tokenize(const sattn_bert *m, const char *text, size_t len, int32_t *ids, int64_t cap,
                                      int64_t *n)
{
    if (!m || !n) return bert__fail(SATTN_BERT_ERR_INVALID, "%s is NULL", m ? "n" : "model");
    if (!text && len > 0) return bert__fail(SATTN_BERT_ERR_INVALID, "text is NULL");
    if (cap < 0 || (cap > 0 && !ids)) return bert__fail(SATTN_BERT_ERR_INVALID, "ids is NULL or cap is negative");
    return tok_encode(&m->tok, text ? text : "", len, m->max_tokens, ids, cap, n);
}

const char *sattn_bert_token(const sattn_bert *m, int32_t id)
{
    if (!m || id < 0 || id >= m->tok.n) return NULL;
    return m->tok.piece[id];
}

/* ---- the encoder's elementwise parts ----
 * Each works row by row; rows are shared among threads in fixed blocks, and a row's
 * arithmetic never depends on the thread, so any thread count gives the same bits. */

/* Row kernels compiled three times (AVX-512, AVX2, baseline), the CPU's best chosen
   when the program loads. Each element is computed by the same operations in every
   version, so the choice (and the thread count) never changes a bit with gcc, which
   does not contract a * b + c into an FMA in ISO C. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define BERT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef BERT_CLONES
#define BERT_CLONES
#endif

/* Sums in 16 lanes (element i into lane i % 16), then the lanes in order: a fixed
   order the compiler can vectorise, in f32 (a row of 384 values loses ~1e-7 relative). */
enum { LANES = 16 };

/* r = LayerNorm(r + b + c) (b, c may be NULL): mean and biased variance over n. */
BERT_CLONES
static void layernorm_row(float *restrict r, const float *restrict b, const float *restrict c,
                          const float *restrict g, const float *restrict beta, int64_t n, float eps)
{
    if (b)
        for (int64_t i = 0; i < n; i++) r[i] += b[i];
    if (c)
        for (int64_t i = 0; i < n; i++) r[i] += c[i];
    float lane[LANES] = {0};
    int64_t body = n / LANES * LANES;
    for (int64_t i = 0; i < body; i += LANES)
        for (int k = 0; k < LANES; k++) lane[k] += r[i + k];
    float s = 0;
    for (int k = 0; k < LANES; k++) s += lane[k];
    for (int64_t i = body; i < n; i++) s += r[i];
    const float mean = s / (float)n;
    float lane2[LANES] = {0};
    for (int64_t i = 0; i < body; i += LANES)
        for (int k = 0; k < LANES; k++) {
            float d = r[i + k] - mean;
            lane2[k] += d * d;
        }
    float s2 = 0;
    for (int k = 0; k < LANES; k++) s2 += lane2[k];
    for (int64_t i = body; i < n; i++) s2 += (r[i] - mean) * (r[i] - mean);
    const float inv = 1.0f / sqrtf(s2 / (float)n + eps);
    for (int64_t i = 0; i < n; i++) r[i] = (r[i] - mean) * inv * g[i] + beta[i];
}

/* a = LayerNorm(a + b + c) over each row of E, in place. */
static void add_layernorm(float *a, const float *b, const float *c, const float *g, const float *beta, int64_t T,
                          int64_t E, float eps)
{
    int nt = sattn_suggest_threads(10.0 * (double)T * (double)E);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#else
    (void)nt;
#endif
    for (int64_t t = 0; t < T; t++) layernorm_row(a + t * E, b ? b + t * E : NULL, c, g, beta, E, eps);
}

/* GELU, exact form: gelu(x) = x Φ(x), Φ(x) = (1 + erf(x/√2)) / 2, with
     |z| < 0.75:  erf(z) = z P(z²)                  (degree 6, least squares)
     |z| >= 0.75: erfc(|z|) = exp(-z²) Q(1/(1 + |z|/2))  (degree 8; z clamped to 4, past
                  which erf is ±1 in f32), so that Φ(x) = erfc(|z|)/2 for x < 0 keeps
                  its relative accuracy (no 1 + erf cancellation).
   Largest error of erf measured against double erf on [-4, 4]: 1.2e-7 (tests). The
   exp is a Cody-Waite reduction to [-ln2/2, ln2/2] and a degree-6 polynomial.
   Written without branches so that the compiler vectorises it. */
static inline float exp_neg(float x) /* e^x for x in [-16, 0] */
{
    /* n = round(x / ln2) by the 1.5 * 2^23 trick (no rounding instruction needed) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) * (1 << 23); /* 2^n, n in [-24, 0] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float gelu1(float x)
{
    float z = x * 0.70710678118654752f, az = fabsf(z);
    /* near 0 */
    float s = z * z;
    float p = 9.557677169808936e-05f;
    p = p * s - 0.000837071952322088f;
    p = p * s + 0.005217601934014718f;
    p = p * s - 0.026864990625169696f;
    p = p * s + 0.11283781280562814f;
    p = p * s - 0.37612638561495204f;
    p = p * s + 1.128379167077294f;
    float phi_small = 0.5f + 0.5f * z * p;
    /* the tails */
    float zc = az < 4.0f ? az : 4.0f;
    float t = 1.0f / (1.0f + 0.5f * zc);
    float q = -5.234304248e-03f;
    q = q * t + 1.415242851e-01f;
    q = q * t + -5.119335313e-01f;
    q = q * t + 6.056231377e-01f;
    q = q * t + -1.308668975e-01f;
    q = q * t + 3.589132279e-01f;
    q = q * t + 2.568868371e-01f;
    q = q * t + 2.853116196e-01f;
    q = q * t + -1.787888625e-04f;
    float e = exp_neg(-zc * zc) * q;
    float half_erfc = az < 4.0f ? 0.5f * e : 0.0f;
    float phi_tail = z < 0 ? half_erfc : 1.0f - half_erfc;
    float phi = az < 0.75f ? phi_small : phi_tail;
    return phi > 0.0f ? x * phi : -0.0f; /* far below 0: -0, also for x = -inf */
}

BERT_CLONES
static void gelu_row(float *restrict r, const float *restrict b, int64_t n)
{
    for (int64_t i = 0; i < n; i++) r[i] = gelu1(r[i] + b[i]);
}

/* h = gelu(h + b) over each row of I */
void bert__bias_gelu(float *h, const float *b, int64_t T, int64_t I)
{
    int nt = sattn_suggest_threads(30.0 * (double)T * (double)I);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#else
    (void)nt;
#endif
    for (int64_t t = 0; t < T; t++) gelu_row(h + t * I, b, I);
}

/* ---- the encoder ---- */

static sattn_bert_status reserve(sattn_bert *m, int64_t T, int64_t count)
{
    if (T > m->cap_tokens) {
        free(m->x), free(m->y), free(m->h);
        m->x = malloc((size_t)(T * m->E) * sizeof(float));
        m->y = malloc((size_t)(T * m->E) * sizeof(float));
        m->h = malloc((size_t)(T * m->I) * sizeof(float));
        m->cap_tokens = m->x && m->y && m->h ? T : 0;
        if (!m->cap_tokens) {
            free(m->x), free(m->y), free(m->h);
            m->x = m->y = m->h = NULL;
            return bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory for the activations of %lld tokens",
                              (long long)T);
        }
    }
    if (count + 1 > m->cap_cu) {
        int32_t *cu = malloc((size_t)(count + 1) * sizeof *cu);
        if (!cu) return bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory for %lld texts", (long long)count);
        free(m->cu);
        m->cu = cu;
        m->cap_cu = count + 1;
    }
    return SATTN_BERT_OK;
}

static sattn_bert_status core_fail(const char *what, int64_t layer)
{
    return bert__fail(sattn_last_error()[0] && strstr(sattn_last_error(), "out of memory") ? SATTN_BERT_ERR_NOMEM
                                                                                          : SATTN_BERT_ERR_INVALID,
                      "layer %lld, %s: %s", (long long)layer, what, sattn_last_error());
}

/* The encoder over the packed ids with m->cu set; pooled embeddings into out. */
static sattn_bert_status run_encoder(sattn_bert *m, int64_t count, const int32_t *ids, float *out,
                                     float *hidden_states)
{
    const int64_t E = m->E, I = m->I, T = m->cu[count];
    int64_t longest = 0;
    for (int64_t b = 0; b < count; b++)
        if (m->cu[b + 1] - m->cu[b] > longest) longest = m->cu[b + 1] - m->cu[b];
    /* embeddings */
    {
        int nt = sattn_suggest_threads(4.0 * (double)T * (double)E);
        const int32_t *cu = m->cu;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#else
        (void)nt;
#endif
        for (int64_t b = 0; b < count; b++)
            for (int64_t t = cu[b]; t < cu[b + 1]; t++) {
                const float *w = m->word + (int64_t)ids[t] * E, *p = m->pos + (t - cu[b]) * E;
                float *r = m->x + t * E;
                for (int64_t i = 0; i < E; i++) r[i] = w[i] + p[i] + m->type0[i];
            }
        add_layernorm(m->x, NULL, NULL, m->emb_g, m->emb_b, T, E, m->eps);
    }
    sattn_params opts = {.cu_seqlens_q = m->cu, .cu_seqlens_kv = m->cu};
    for (int64_t l = 0; l < m->L; l++) {
        bert_layer *ly = &m->layers[l];
        if (sattn_mha_forward(ly->attn, &opts, count, longest, m->x, m->y) != SATTN_OK)
            return core_fail("attention", l);
        add_layernorm(m->x, m->y, NULL, ly->ln1_g, ly->ln1_b, T, E, m->eps);
        if (sattn_sgemm(0, 1, T, I, E, m->x, E, ly->w1, E, 0, m->h, I) != SATTN_OK)
            return core_fail("intermediate.dense", l);
        bert__bias_gelu(m->h, ly->b1, T, I);
        if (sattn_sgemm(0, 1, T, E, I, m->h, I, ly->w2, I, 0, m->y, E) != SATTN_OK)
            return core_fail("output.dense", l);
        add_layernorm(m->x, m->y, ly->b2, ly->ln2_g, ly->ln2_b, T, E, m->eps);
    }
    /* mean pooling over each text's tokens (in double, in token order), then L2 */
    double *acc = malloc((size_t)E * sizeof *acc);
    if (!acc) return bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory for the pooling");
    for (int64_t b = 0; b < count; b++) {
        for (int64_t i = 0; i < E; i++) acc[i] = 0;
        for (int64_t t = m->cu[b]; t < m->cu[b + 1]; t++)
            for (int64_t i = 0; i < E; i++) acc[i] += m->x[t * E + i];
        double n = (double)(m->cu[b + 1] - m->cu[b]), ss = 0;
        for (int64_t i = 0; i < E; i++) {
            acc[i] /= n;
            ss += acc[i] * acc[i];
        }
        double scale = m->normalize ? 1.0 / fmax(sqrt(ss), 1e-12) : 1.0;
        for (int64_t i = 0; i < E; i++) out[b * E + i] = (float)(acc[i] * scale);
    }
    free(acc);
    if (hidden_states) memcpy(hidden_states, m->x, (size_t)(T * E) * sizeof(float));
    m->last_count = count;
    m->last_tokens = T;
    return SATTN_BERT_OK;
}

sattn_bert_status sattn_bert_encode(sattn_bert *m, int64_t count, const int32_t *ids, const int32_t *cu_seqlens,
                                    float *out, float *hidden_states)
{
    if (!m) return bert__fail(SATTN_BERT_ERR_INVALID, "model is NULL");
    if (count < 1) return bert__fail(SATTN_BERT_ERR_INVALID, "count must be >= 1 (got %lld)", (long long)count);
    if (!ids || !cu_seqlens || !out)
        return bert__fail(SATTN_BERT_ERR_INVALID, "%s is NULL", !ids ? "ids" : !cu_seqlens ? "cu_seqlens" : "out");
    if (cu_seqlens[0] != 0) return bert__fail(SATTN_BERT_ERR_INVALID, "cu_seqlens[0] must be 0");
    for (int64_t b = 0; b < count; b++) {
        int64_t len = (int64_t)cu_seqlens[b + 1] - cu_seqlens[b];
        if (len < 1 || len > m->max_tokens)
            return bert__fail(SATTN_BERT_ERR_INVALID, "sequence %lld has %lld tokens; each needs 1 to %lld",
                              (long long)b, (long long)len, (long long)m->max_tokens);
    }
    int64_t T = cu_seqlens[count];
    for (int64_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= m->vocab_rows)
            return bert__fail(SATTN_BERT_ERR_INVALID, "ids[%lld] = %d is not in [0, %lld)", (long long)t, (int)ids[t],
                              (long long)m->vocab_rows);
    sattn_bert_status st = reserve(m, T, count);
    if (st != SATTN_BERT_OK) return st;
    memcpy(m->cu, cu_seqlens, (size_t)(count + 1) * sizeof *m->cu);
    m->last_count = 0;
    return run_encoder(m, count, ids, out, hidden_states);
}

sattn_bert_status sattn_bert_embed(sattn_bert *m, int64_t count, const char *const *texts, const size_t *lens,
                                   float *out)
{
    if (!m) return bert__fail(SATTN_BERT_ERR_INVALID, "model is NULL");
    if (count < 1) return bert__fail(SATTN_BERT_ERR_INVALID, "count must be >= 1 (got %lld)", (long long)count);
    if (!texts || !out) return bert__fail(SATTN_BERT_ERR_INVALID, "%s is NULL", !texts ? "texts" : "out");
    for (int64_t b = 0; b < count; b++)
        if (!texts[b] && !(lens && lens[b] == 0))
            return bert__fail(SATTN_BERT_ERR_INVALID, "texts[%lld] is NULL", (long long)b);
    if (count > INT32_MAX / m->max_tokens)
        return bert__fail(SATTN_BERT_ERR_INVALID, "%lld texts: more than one call can pack", (long long)count);
    /* each text's ids at b * max_tokens, then packed */
    int32_t *ids = malloc((size_t)(count * m->max_tokens) * sizeof *ids);
    int64_t *n = malloc((size_t)count * sizeof *n);
    sattn_bert_status st = ids && n ? reserve(m, 0, count) : SATTN_BERT_ERR_NOMEM;
    if (st == SATTN_BERT_ERR_NOMEM && (!ids || !n))
        bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory for the tokens of %lld texts", (long long)count);
    if (st == SATTN_BERT_OK) {
        int failed = 0;
        double bytes = 0;
        for (int64_t b = 0; b < count; b++) bytes += lens ? (double)lens[b] : 64.0;
        int nt = sattn_suggest_threads(200.0 * bytes);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 4) if (nt > 1) reduction(| : failed)
#else
        (void)nt;
#endif
        for (int64_t b = 0; b < count; b++) {
            const char *s = texts[b] ? texts[b] : "";
            size_t len = lens ? lens[b] : strlen(s);
            if (tok_encode(&m->tok, s, len, m->max_tokens, ids + b * m->max_tokens, m->max_tokens, &n[b]) !=
                SATTN_BERT_OK)
                failed = 1;
        }
        if (failed) st = bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory tokenizing");
    }
    if (st == SATTN_BERT_OK) {
        m->cu[0] = 0;
        for (int64_t b = 0; b < count; b++) {
            memmove(ids + m->cu[b], ids + b * m->max_tokens, (size_t)n[b] * sizeof *ids);
            m->cu[b + 1] = m->cu[b] + (int32_t)n[b];
        }
        st = reserve(m, m->cu[count], count);
        if (st == SATTN_BERT_OK) {
            m->last_count = 0;
            st = run_encoder(m, count, ids, out, NULL);
        }
    }
    free(ids);
    free(n);
    return st;
}

sattn_bert_status sattn_bert_attention(const sattn_bert *m, int64_t layer, float *w)
{
    if (!m || !w) return bert__fail(SATTN_BERT_ERR_INVALID, "%s is NULL", m ? "w" : "model");
    if (layer < 0 || layer >= m->L)
        return bert__fail(SATTN_BERT_ERR_INVALID, "layer %lld: the model has layers 0 to %lld", (long long)layer,
                          (long long)m->L - 1);
    if (m->last_count != 1)
        return bert__fail(SATTN_BERT_ERR_INVALID, "the attention weights need a last embed or encode of one text "
                          "(the last had %lld)", (long long)m->last_count);
    if (sattn_mha_attention_weights(m->layers[layer].attn, 0, m->last_tokens, 0, w) != SATTN_OK)
        return bert__fail(SATTN_BERT_ERR_INVALID, "layer %lld: %s", (long long)layer, sattn_last_error());
    return SATTN_BERT_OK;
}
