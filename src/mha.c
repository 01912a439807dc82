/* The multi-head self-attention layer: projections, attention, output projection,
 * their backward, and one decode step against a KV cache.
 *
 * Data flow of a forward over T tokens (C = H*D + 2*Hkv*D):
 *     x (T, E) --sgemm--> QKV (T, C): row t holds q heads, then k heads, then v heads
 *     QKV --sattn_forward, strides {seq*C, C, D}--> O (T, H*D), lse
 *     O --sgemm--> y (T, E)
 * The attention reads Q, K and V where the projection wrote them: no transpose and no
 * copy between the two. QKV, O and lse stay in the layer for the backward.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "kernels/kernels.h"
#include "sattn_internal.h"

struct sattn_mha {
    int64_t E, H, Hkv, D, HD, C; /* C = H*D + 2*Hkv*D: one token's row of QKV */
    int bias;
    sattn_dtype dtype;

    /* parameters and gradients, the same layout: w_qkv (C, E), b_qkv (C), w_out (E, HD), b_out (E) */
    float *param, *grad;
    int64_t nparam;
    int64_t off_b_qkv, off_w_out, off_b_out;

    /* saved by the forward for the backward and the attention weights */
    float *qkv;          /* (tokens, C) */
    float *o;            /* (tokens, HD) */
    float *lse;          /* (batch, H, seq) or (H, tokens) */
    size_t cap_qkv, cap_o, cap_lse; /* floats allocated */
    int saved;           /* a forward's activations are held */
    int64_t batch, seq, tokens;
    sattn_params opts;   /* the forward's options, with its shape and strides */

    /* temporaries: x or y in f32 (tokens, E), and the backward's dQKV (tokens, C), dO (tokens, HD) */
    float *tmp;
    size_t cap_tmp;
};

/* ---- parameters ---- */

sattn_status sattn_mha_create(sattn_mha **layer, const sattn_mha_config *cfg)
{
    if (layer == NULL) return sattn__fail("layer is NULL");
    *layer = NULL;
    if (cfg == NULL) return sattn__fail("cfg is NULL");
    if (cfg->embed_dim < 1) return sattn__fail("embed_dim must be >= 1 (got %lld)", (long long)cfg->embed_dim);
    if (cfg->num_heads < 1) return sattn__fail("num_heads must be >= 1 (got %lld)", (long long)cfg->num_heads);
    int64_t hkv = cfg->num_kv_heads == 0 ? cfg->num_heads : cfg->num_kv_heads;
    if (hkv < 1 || cfg->num_heads % hkv != 0)
        return sattn__fail("num_kv_heads must divide num_heads = %lld (got %lld)", (long long)cfg->num_heads,
                           (long long)cfg->num_kv_heads);
    int64_t d = cfg->head_dim;
    if (d == 0) {
        if (cfg->embed_dim % cfg->num_heads != 0)
            return sattn__fail("head_dim is 0 but embed_dim = %lld is not a multiple of num_heads = %lld",
                               (long long)cfg->embed_dim, (long long)cfg->num_heads);
        d = cfg->embed_dim / cfg->num_heads;
    }
    if (d < 1 || d > SATTN__MAX_HEAD_DIM)
        return sattn__fail("head_dim must be in [1, %d] (got %lld)", SATTN__MAX_HEAD_DIM, (long long)d);
    if (cfg->dtype != SATTN_F32 && cfg->dtype != SATTN_F16 && cfg->dtype != SATTN_BF16)
        return sattn__fail("dtype %d is not a sattn_dtype", (int)cfg->dtype);
    /* heads as the kernel takes them; then every size product is checked */
    if (cfg->num_heads > SATTN__MAX_EXTENT)
        return sattn__fail("num_heads must be <= %lld (got %lld)", (long long)SATTN__MAX_EXTENT,
                           (long long)cfg->num_heads);
    int64_t HD, KD, C, CE, EHD, n;
    if (!sattn__mul_ok(cfg->num_heads, d, &HD) || !sattn__mul_ok(hkv, 2 * d, &KD) || !sattn__add_ok(HD, KD, &C) ||
        !sattn__mul_ok(C, cfg->embed_dim, &CE) || !sattn__mul_ok(cfg->embed_dim, HD, &EHD) ||
        !sattn__add_ok(CE, EHD, &n) || !sattn__add_ok(n, C + cfg->embed_dim, &n) ||
        (uint64_t)n > SIZE_MAX / sizeof(float) / 2)
        return sattn__fail("embed_dim = %lld, num_heads = %lld, num_kv_heads = %lld, head_dim = %lld: the "
                           "parameters would number more than memory can address",
                           (long long)cfg->embed_dim, (long long)cfg->num_heads, (long long)hkv, (long long)d);

    sattn_mha *m = calloc(1, sizeof *m);
    if (!m) return sattn__fail_nomem(sizeof *m);
    m->E = cfg->embed_dim, m->H = cfg->num_heads, m->Hkv = hkv, m->D = d;
    m->HD = HD, m->C = C;
    m->bias = cfg->bias != 0, m->dtype = cfg->dtype;
    m->off_b_qkv = m->C * m->E;
    m->off_w_out = m->off_b_qkv + (m->bias ? m->C : 0);
    m->off_b_out = m->off_w_out + m->E * m->HD;
    m->nparam = m->off_b_out + (m->bias ? m->E : 0);
    size_t bytes = (size_t)m->nparam * sizeof(float);
    m->param = calloc(2 * (size_t)m->nparam, sizeof(float));
    if (!m->param) {
        free(m);
        return sattn__fail_nomem(2 * bytes);
    }
    m->grad = m->param + m->nparam;
    *layer = m;
    return SATTN_OK;
}

void sattn_mha_free(sattn_mha *m)
{
    if (!m) return;
    free(m->param), free(m->qkv), free(m->o), free(m->lse), free(m->tmp);
    free(m);
}

/* The view of a named parameter within the parameter array: offset and size, or -1. */
static int64_t param_view(const sattn_mha *m, const char *name, int64_t *numel)
{
    const int64_t kd = m->Hkv * m->D;
    if (name == NULL) return *numel = m->nparam, 0;
    if (!strcmp(name, "in_proj_weight")) return *numel = m->C * m->E, 0;
    if (!strcmp(name, "q_proj_weight")) return *numel = m->HD * m->E, 0;
    if (!strcmp(name, "k_proj_weight")) return *numel = kd * m->E, m->HD * m->E;
    if (!strcmp(name, "v_proj_weight")) return *numel = kd * m->E, (m->HD + kd) * m->E;
    if (!strcmp(name, "out_proj.weight")) return *numel = m->E * m->HD, m->off_w_out;
    if (m->bias && !strcmp(name, "in_proj_bias")) return *numel = m->C, m->off_b_qkv;
    if (m->bias && !strcmp(name, "out_proj.bias")) return *numel = m->E, m->off_b_out;
    return -1;
}

static float *named(sattn_mha *m, float *base, const char *name, int64_t *numel)
{
    int64_t n = 0, off;
    if (m == NULL) {
        sattn__fail("layer is NULL");
        return NULL;
    }
    off = param_view(m, name, &n);
    if (off < 0) {
        sattn__fail("the layer has no parameter \"%s\"%s", name,
                    m->bias ? "" : " (it was created without biases)");
        return NULL;
    }
    if (numel) *numel = n;
    return base + off;
}

float *sattn_mha_param(sattn_mha *m, const char *name, int64_t *numel)
{
    return named(m, m ? m->param : NULL, name, numel);
}

float *sattn_mha_grad(sattn_mha *m, const char *name, int64_t *numel)
{
    return named(m, m ? m->grad : NULL, name, numel);
}

sattn_status sattn_mha_set(sattn_mha *m, const char *name, const float *src, int64_t numel)
{
    int64_t n = 0;
    float *dst = sattn_mha_param(m, name, &n);
    if (!dst) return SATTN_ERR_INVALID;
    if (src == NULL) return sattn__fail("src is NULL");
    if (numel != n)
        return sattn__fail("\"%s\" has %lld elements, not %lld", name ? name : "(all parameters)", (long long)n,
                           (long long)numel);
    memmove(dst, src, (size_t)n * sizeof(float));
    return SATTN_OK;
}

void sattn_mha_zero_grad(sattn_mha *m)
{
    if (m) memset(m->grad, 0, (size_t)m->nparam * sizeof(float));
}

/* ---- helpers ---- */

/* Grows *buf to hold n floats (contents not kept). */
static sattn_status reserve(float **buf, size_t *cap, size_t n)
{
    if (n <= *cap && *buf) return SATTN_OK;
    if (n > SIZE_MAX / sizeof(float) - 16) return sattn__fail_nomem(SIZE_MAX);
    size_t bytes = ((n * sizeof(float)) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) return sattn__fail_nomem(bytes);
    free(*buf);
    *buf = p, *cap = n;
    return SATTN_OK;
}

/* dst (rows, cols) f32 = src (rows, cols) stored as dtype, both packed. */
static void load_matrix(float *dst, const void *src, int64_t rows, int64_t cols, sattn_dtype dtype)
{
    const size_t es = (size_t)sattn__dtype_size(dtype);
    const int threads = sattn__threads_elementwise((double)rows * (double)cols, rows);
    (void)threads;
    SATTN__OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (int64_t r = 0; r < rows; r++)
        sattn__load_rows(sattn__kernels_get(), dst + r * cols, (int)cols, (const char *)src + (size_t)(r * cols) * es, cols, 1,
                         (int)cols, dtype, 1.0f);
}

/* dst (rows, cols) stored as dtype = src (rows, cols) f32. */
static void store_matrix(void *dst, const float *src, int64_t rows, int64_t cols, sattn_dtype dtype)
{
    const size_t es = (size_t)sattn__dtype_size(dtype);
    const int threads = sattn__threads_elementwise((double)rows * (double)cols, rows);
    (void)threads;
    SATTN__OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (int64_t r = 0; r < rows; r++)
        sattn__store_rows(sattn__kernels_get(), (char *)dst + (size_t)(r * cols) * es, cols, src + r * cols, (int)cols, 1, (int)cols,
                          dtype, 1.0f);
}

/* Y (rows, n) += b (n) on every row. */
static void add_bias(float *Y, const float *b, int64_t rows, int64_t n)
{
    const int threads = sattn__threads_elementwise((double)rows * (double)n, rows);
    (void)threads;
    SATTN__OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < n; c++) Y[r * n + c] += b[c];
}

/* g (n) += sum over rows of dY (rows, n), rows in order: the same bits for any thread count. */
static void add_colsums(float *g, const float *dY, int64_t rows, int64_t n)
{
    const int threads = sattn__threads_elementwise((double)rows * (double)n, n);
    (void)threads;
    SATTN__OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (int64_t c = 0; c < n; c++) {
        float s = 0.0f;
        for (int64_t r = 0; r < rows; r++) s += dY[r * n + c];
        g[c] += s;
    }
}

/* The fields of opts the layer sets itself must be left 0. */
static sattn_status check_opts(const sattn_params *o)
{
#define ZERO(f)                                                                                       \
    if (o->f != 0) return sattn__fail("opts->" #f " must be 0: the layer sets it")
    ZERO(batch); ZERO(seq_q); ZERO(seq_kv); ZERO(heads_q); ZERO(heads_kv); ZERO(head_dim);
    ZERO(head_dim_v); ZERO(dtype);
    for (int a = 0; a < 3; a++) {
        ZERO(q_stride[a]); ZERO(k_stride[a]); ZERO(v_stride[a]); ZERO(o_stride[a]);
    }
#undef ZERO
    return SATTN_OK;
}

/* Tokens of a forward: batch * seq, or cu_seqlens_q[batch] for a packed batch (whose
   offsets are checked here, before they size anything). */
static sattn_status token_count(const sattn_params *o, int64_t batch, int64_t seq, int64_t *tokens)
{
    if (batch < 1) return sattn__fail("batch must be >= 1 (got %lld)", (long long)batch);
    if (seq < 0) return sattn__fail("seq must be >= 0 (got %lld)", (long long)seq);
    if (batch > INT64_MAX / (seq > 0 ? seq : 1) / 4) return sattn__fail("batch * seq is too large");
    if (o->cu_seqlens_q == NULL && o->cu_seqlens_kv == NULL) {
        *tokens = batch * seq;
        return SATTN_OK;
    }
    if (o->cu_seqlens_q == NULL || o->cu_seqlens_kv == NULL)
        return sattn__fail("self-attention: cu_seqlens_q and cu_seqlens_kv are given together");
    const int32_t *cu = o->cu_seqlens_q;
    if (cu[0] < 0) return sattn__fail("cu_seqlens_q[0] = %d is negative", (int)cu[0]);
    for (int64_t b = 0; b < batch; b++) {
        if (o->cu_seqlens_kv[b] != cu[b] || o->cu_seqlens_kv[b + 1] != cu[b + 1])
            return sattn__fail("self-attention: cu_seqlens_kv[%lld] differs from cu_seqlens_q", (long long)b);
        if (cu[b + 1] < cu[b] || cu[b + 1] - cu[b] > seq)
            return sattn__fail("cu_seqlens_q[%lld..%lld] = %d..%d: lengths are in [0, seq = %lld]",
                               (long long)b, (long long)b + 1, (int)cu[b], (int)cu[b + 1], (long long)seq);
    }
    *tokens = cu[batch];
    return SATTN_OK;
}

/* The attention's params over the layer's QKV buffer: q, k, v are column ranges of
   one (tokens, C) matrix, out is (tokens, HD). */
static void attention_params(const sattn_mha *m, const sattn_params *opts, int64_t batch, int64_t seq,
                             sattn_params *p)
{
    if (opts) *p = *opts;
    else memset(p, 0, sizeof *p);
    p->batch = batch, p->seq_q = p->seq_kv = seq;
    p->heads_q = m->H, p->heads_kv = m->Hkv, p->head_dim = m->D, p->head_dim_v = m->D;
    p->dtype = SATTN_F32;
    const int64_t qkv_st[3] = {seq * m->C, m->C, m->D}, o_st[3] = {seq * m->HD, m->HD, m->D};
    memcpy(p->q_stride, qkv_st, sizeof qkv_st);
    memcpy(p->k_stride, qkv_st, sizeof qkv_st);
    memcpy(p->v_stride, qkv_st, sizeof qkv_st);
    memcpy(p->o_stride, o_st, sizeof o_st);
}

static int64_t lse_count(const sattn_params *p, int64_t tokens)
{
    return p->cu_seqlens_q ? p->heads_q * tokens : p->batch * p->heads_q * p->seq_q;
}

/* Y (T, E) f32 = O (T, HD) Woᵀ + bo */
static sattn_status out_projection(const sattn_mha *m, float *Y, const float *O, int64_t T)
{
    sattn_status st = sattn__sgemm(0, 1, T, m->E, m->HD, O, m->HD, m->param + m->off_w_out, m->HD, 0, Y, m->E);
    if (st == SATTN_OK && m->bias) add_bias(Y, m->param + m->off_b_out, T, m->E);
    return st;
}

/* QKV (T, C) = X (T, E) Wqkvᵀ + b */
static sattn_status in_projection(const sattn_mha *m, float *QKV, const float *X, int64_t T)
{
    sattn_status st = sattn__sgemm(0, 1, T, m->C, m->E, X, m->E, m->param, m->E, 0, QKV, m->C);
    if (st == SATTN_OK && m->bias) add_bias(QKV, m->param + m->off_b_qkv, T, m->C);
    return st;
}

/* ---- forward ---- */

sattn_status sattn_mha_forward(sattn_mha *m, const sattn_params *opts, int64_t batch, int64_t seq,
                               const void *x, void *y)
{
    static const sattn_params none;
    if (m == NULL) return sattn__fail("layer is NULL");
    if (opts == NULL) opts = &none;
    sattn_status st = check_opts(opts);
    if (st != SATTN_OK) return st;
    int64_t T = 0;
    if ((st = token_count(opts, batch, seq, &T)) != SATTN_OK) return st;
    if (T > 0 && x == NULL) return sattn__fail("x is NULL");
    if (T > 0 && y == NULL) return sattn__fail("y is NULL");
    if (T > INT_MAX) return sattn__fail("%lld tokens: at most %d per call", (long long)T, INT_MAX);

    m->saved = 0;
    sattn_params p;
    attention_params(m, opts, batch, seq, &p);
    const int64_t nlse = lse_count(&p, T);
    if ((st = reserve(&m->qkv, &m->cap_qkv, (size_t)(T * m->C) + 1)) != SATTN_OK) return st;
    if ((st = reserve(&m->o, &m->cap_o, (size_t)(T * m->HD) + 1)) != SATTN_OK) return st;
    if ((st = reserve(&m->lse, &m->cap_lse, (size_t)nlse + 1)) != SATTN_OK) return st;
    if ((st = reserve(&m->tmp, &m->cap_tmp, (size_t)(T * m->E) + 1)) != SATTN_OK) return st;
    float *q = m->qkv, *k = m->qkv + m->HD, *v = k + m->Hkv * m->D;
    /* every argument of the attention checked before any work */
    sattn__problem pr;
    if ((st = sattn__prepare(&pr, &p, SATTN__FORWARD, q, k, v, m->o, m->lse, NULL, NULL, NULL, NULL)) != SATTN_OK)
        return st;

    const float *xf = (const float *)x;
    if (m->dtype != SATTN_F32) {
        load_matrix(m->tmp, x, T, m->E, m->dtype);
        xf = m->tmp;
    }
    if ((st = in_projection(m, m->qkv, xf, T)) != SATTN_OK) return st;
    if (opts->cu_seqlens_q) memset(m->o, 0, (size_t)(T * m->HD) * sizeof(float)); /* rows outside every sequence */
    if ((st = sattn_forward(&p, q, k, v, m->o, m->lse)) != SATTN_OK) return st;
    float *yf = m->dtype == SATTN_F32 ? (float *)y : m->tmp;
    if ((st = out_projection(m, yf, m->o, T)) != SATTN_OK) return st;
    if (m->dtype != SATTN_F32) store_matrix(y, yf, T, m->E, m->dtype);

    m->saved = 1, m->batch = batch, m->seq = seq, m->tokens = T, m->opts = p;
    return SATTN_OK;
}

/* ---- backward ---- */

/* The masking and score fields of two option sets agree. */
static int same_opts(const sattn_params *a, const sattn_params *b)
{
    return a->scale == b->scale && a->causal == b->causal && a->window_left == b->window_left &&
           a->window_right == b->window_right && a->seqlens_q == b->seqlens_q && a->seqlens_kv == b->seqlens_kv &&
           a->cu_seqlens_q == b->cu_seqlens_q && a->cu_seqlens_kv == b->cu_seqlens_kv && a->bias == b->bias &&
           !memcmp(a->bias_stride, b->bias_stride, sizeof a->bias_stride) && a->mask == b->mask &&
           !memcmp(a->mask_stride, b->mask_stride, sizeof a->mask_stride) && a->alibi_slopes == b->alibi_slopes &&
           a->softcap == b->softcap && a->dropout_p == b->dropout_p && a->seed == b->seed;
}

sattn_status sattn_mha_backward(sattn_mha *m, const sattn_params *opts, int64_t batch, int64_t seq,
                                const void *x, const void *dy, void *dx)
{
    static const sattn_params none;
    if (m == NULL) return sattn__fail("layer is NULL");
    if (opts == NULL) opts = &none;
    sattn_status st = check_opts(opts);
    if (st != SATTN_OK) return st;
    if (!m->saved) return sattn__fail("no forward to differentiate: call sattn_mha_forward first");
    if (batch != m->batch || seq != m->seq)
        return sattn__fail("batch = %lld, seq = %lld differ from the forward's %lld, %lld", (long long)batch,
                           (long long)seq, (long long)m->batch, (long long)m->seq);
    if (!same_opts(opts, &m->opts)) return sattn__fail("opts differ from the forward's");
    const int64_t T = m->tokens;
    if (T > 0 && x == NULL) return sattn__fail("x is NULL");
    if (T > 0 && dy == NULL) return sattn__fail("dy is NULL");
    if (T == 0) return SATTN_OK;

    /* tmp holds X and dY in f32 (2 T E), dQKV (T C) and dO (T HD) */
    const size_t TE = (size_t)(T * m->E), TC = (size_t)(T * m->C), THD = (size_t)(T * m->HD);
    if ((st = reserve(&m->tmp, &m->cap_tmp, 2 * TE + TC + THD)) != SATTN_OK) return st;
    float *xf = m->tmp, *dyf = xf + TE, *dqkv = dyf + TE, *dO = dqkv + TC;
    if (m->dtype == SATTN_F32) {
        memcpy(xf, x, TE * sizeof(float));
        memcpy(dyf, dy, TE * sizeof(float));
    } else {
        load_matrix(xf, x, T, m->E, m->dtype);
        load_matrix(dyf, dy, T, m->E, m->dtype);
    }
    float *g = m->grad;
    /* y = O Woᵀ + bo:  dWo += dyᵀ O,  dbo += sum_t dy,  dO = dy Wo */
    if ((st = sattn__sgemm(1, 0, m->E, m->HD, T, dyf, m->E, m->o, m->HD, 1, g + m->off_w_out, m->HD)) != SATTN_OK)
        return st;
    if (m->bias) add_colsums(g + m->off_b_out, dyf, T, m->E);
    if ((st = sattn__sgemm(0, 0, T, m->HD, m->E, dyf, m->E, m->param + m->off_w_out, m->HD, 0, dO, m->HD)) != SATTN_OK)
        return st;
    /* O = attention(Q, K, V):  dQ, dK, dV into the columns of dQKV */
    const sattn_params *p = &m->opts;
    float *q = m->qkv, *k = q + m->HD, *v = k + m->Hkv * m->D;
    if (p->cu_seqlens_q) memset(dqkv, 0, TC * sizeof(float));
    if ((st = sattn_backward(p, q, k, v, m->o, m->lse, dO, dqkv, dqkv + m->HD, dqkv + m->HD + m->Hkv * m->D)) !=
        SATTN_OK)
        return st;
    /* QKV = x Wqkvᵀ + b:  dWqkv += dQKVᵀ x,  db += sum_t dQKV,  dx = dQKV Wqkv */
    if ((st = sattn__sgemm(1, 0, m->C, m->E, T, dqkv, m->C, xf, m->E, 1, g, m->E)) != SATTN_OK) return st;
    if (m->bias) add_colsums(g + m->off_b_qkv, dqkv, T, m->C);
    if (dx) {
        float *dxf = m->dtype == SATTN_F32 ? (float *)dx : xf;
        if ((st = sattn__sgemm(0, 0, T, m->E, m->C, dqkv, m->C, m->param, m->E, 0, dxf, m->E)) != SATTN_OK)
            return st;
        if (m->dtype != SATTN_F32) store_matrix(dx, dxf, T, m->E, m->dtype);
    }
    return SATTN_OK;
}

/* ---- attention weights of the last forward ---- */

sattn_status sattn_mha_attention_weights(const sattn_mha *m, int64_t row0, int64_t rows, int average, float *w)
{
    if (m == NULL) return sattn__fail("layer is NULL");
    if (!m->saved) return sattn__fail("no forward yet: call sattn_mha_forward first");
    return sattn_attention_weights(&m->opts, m->qkv, m->qkv + m->HD, m->lse, row0, rows, average, w);
}

/* ---- one decode step against a KV cache ---- */

sattn_status sattn_mha_decode(sattn_mha *m, sattn_kvcache *cache, const sattn_params *opts, int64_t batch,
                              int64_t n, const void *x, void *y)
{
    static const sattn_params none;
    if (m == NULL) return sattn__fail("layer is NULL");
    if (cache == NULL) return sattn__fail("cache is NULL");
    if (opts == NULL) opts = &none;
    sattn_status st = check_opts(opts);
    if (st != SATTN_OK) return st;
    if (opts->causal || opts->window_left || opts->window_right || opts->seqlens_q || opts->seqlens_kv ||
        opts->cu_seqlens_q || opts->cu_seqlens_kv || opts->bias || opts->mask || opts->dropout_p != 0 || opts->seed)
        return sattn__fail("opts may set only scale, softcap and alibi_slopes in a decode step "
                           "(the cache applies the causal rule and its window)");
    sattn_kvcache_config ci;
    if ((st = sattn_kvcache_get_config(cache, &ci)) != SATTN_OK) return st;
    if (ci.batch != batch)
        return sattn__fail("batch = %lld but the cache holds %lld sequences", (long long)batch, (long long)ci.batch);
    if (ci.heads_kv != m->Hkv || ci.head_dim != m->D || ci.head_dim_v != m->D)
        return sattn__fail("the cache has %lld kv heads of dims %lld/%lld; the layer needs %lld of %lld",
                           (long long)ci.heads_kv, (long long)ci.head_dim, (long long)ci.head_dim_v,
                           (long long)m->Hkv, (long long)m->D);
    if (n < 1) return sattn__fail("n must be >= 1 (got %lld)", (long long)n);
    if (x == NULL) return sattn__fail("x is NULL");
    if (y == NULL) return sattn__fail("y is NULL");
    if (batch > INT_MAX / n) return sattn__fail("batch * n is too large");

    const int64_t T = batch * n;
    const size_t es = (size_t)sattn__dtype_size(ci.dtype);
    const int64_t st3[3] = {n * m->C, m->C, m->D};
    sattn_params p;
    memset(&p, 0, sizeof p);
    p.seq_q = n, p.heads_q = m->H, p.dtype = ci.dtype;
    p.scale = opts->scale, p.softcap = opts->softcap, p.alibi_slopes = opts->alibi_slopes;
    if (ci.dtype == SATTN_F32) memcpy(p.q_stride, st3, sizeof st3); /* q read in place in QKV */
    /* everything the append and the attention would refuse, refused before the append */
    if ((st = sattn__kvcache_check_step(cache, &p, n)) != SATTN_OK) return st;

    /* tmp: X or Y f32 (T E), QKV (T C), O f32 (T HD), and q / out in the cache's dtype (T HD each) */
    const size_t TE = (size_t)(T * m->E), TC = (size_t)(T * m->C), THD = (size_t)(T * m->HD);
    const size_t h16 = ci.dtype == SATTN_F32 ? 0 : (2 * THD * es + sizeof(float) - 1) / sizeof(float);
    if ((st = reserve(&m->tmp, &m->cap_tmp, TE + TC + THD + h16)) != SATTN_OK) return st;
    float *xf = m->tmp, *qkv = xf + TE, *of = qkv + TC;
    void *qh = of + THD, *oh = (char *)qh + THD * es;
    m->saved = 0; /* tmp is reused: the forward's temporaries are gone, its saved state too */

    const float *xin = (const float *)x;
    if (m->dtype != SATTN_F32) {
        load_matrix(xf, x, T, m->E, m->dtype);
        xin = xf;
    }
    if ((st = in_projection(m, qkv, xin, T)) != SATTN_OK) return st;
    sattn__kv_mark mark;
    sattn__kvcache_mark(cache, &mark);
    if ((st = sattn_kvcache_append(cache, n, qkv + m->HD, st3, qkv + m->HD + m->Hkv * m->D, st3)) != SATTN_OK)
        return st;

    const void *q = qkv;
    void *out = of;
    if (ci.dtype != SATTN_F32) { /* q and out in the cache's dtype, packed */
        q = qh, out = oh;
        const int threads = sattn__threads_elementwise((double)T * (double)m->HD, T);
        (void)threads;
        SATTN__OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
        for (int64_t t = 0; t < T; t++)
            sattn__store_rows(sattn__kernels_get(), (char *)qh + (size_t)(t * m->HD) * es, m->HD, qkv + t * m->C, (int)m->HD, 1,
                              (int)m->HD, ci.dtype, 1.0f);
    }
    if ((st = sattn_kvcache_attend(cache, &p, q, out, NULL)) != SATTN_OK) {
        sattn__kvcache_rollback(cache, &mark, n); /* out of memory: the step did not happen */
        return st;
    }
    if (ci.dtype != SATTN_F32) load_matrix(of, oh, T, m->HD, ci.dtype);
    float *yf = m->dtype == SATTN_F32 ? (float *)y : xf;
    if ((st = out_projection(m, yf, of, T)) != SATTN_OK) {
        sattn__kvcache_rollback(cache, &mark, n);
        return st;
    }
    if (m->dtype != SATTN_F32) store_matrix(y, yf, T, m->E, m->dtype);
    return SATTN_OK;
}
