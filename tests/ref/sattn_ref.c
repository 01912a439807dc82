/* sattn_ref: naive double-precision attention, the oracle of the test suite.
 *
 * Every rule below is transcribed from include/sattn.h; nothing is shared with src/.
 * One (sequence b, query head h, query row i) at a time: build the score row over
 * the keys of the sequence, softmax it in double, and apply it.
 */
#include "sattn_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- storage types ---- */

double sattn_ref_f16_to_f64(uint16_t bits)
{
    /* binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits */
    int sign = bits >> 15, e = (bits >> 10) & 0x1f, m = bits & 0x3ff;
    double v;
    if (e == 0)
        v = ldexp((double)m, -24);             /* subnormal: m * 2^-14 * 2^-10 */
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexp((double)(m + 1024), e - 25); /* 1.m * 2^(e-15) */
    return sign ? -v : v;
}

double sattn_ref_bf16_to_f64(uint16_t bits)
{
    /* bfloat16: 1 sign, 8 exponent (bias 127), 7 mantissa bits */
    int sign = bits >> 15, e = (bits >> 7) & 0xff, m = bits & 0x7f;
    double v;
    if (e == 0)
        v = ldexp((double)m, -133);             /* subnormal: m * 2^-126 * 2^-7 */
    else if (e == 255)
        v = m ? NAN : INFINITY;
    else
        v = ldexp((double)(m + 128), e - 134);  /* 1.m * 2^(e-127) */
    return sign ? -v : v;
}

/* x rounded to nearest even in a binary format with `prec` significand bits
   (implicit bit included), smallest normal exponent emin and largest finite
   value maxf; a value that rounds above maxf becomes inf. x / quantum is exact
   (a power-of-two division of a value with <= 53 bits), so one rounding happens. */
static double round_to_format(double x, int prec, int emin, double maxf)
{
    if (isnan(x) || isinf(x) || x == 0.0)
        return x;
    double ax = fabs(x);
    int e;
    frexp(ax, &e);          /* ax = f * 2^e, f in [0.5, 1): exponent of ax is e - 1 */
    int ex = e - 1;
    if (ex < emin)
        ex = emin;          /* subnormal range: fixed quantum */
    double quantum = ldexp(1.0, ex - (prec - 1));
    double r = nearbyint(ax / quantum) * quantum;
    if (r > maxf)
        r = INFINITY;
    return copysign(r, x);
}

#define F16_MAX 65504.0
#define BF16_MAX 3.3895313892515355e38 /* (2 - 2^-7) * 2^127 */

float sattn_ref_round_f16(float x)
{
    return (float)round_to_format((double)x, 11, -14, F16_MAX);
}

float sattn_ref_round_bf16(float x)
{
    return (float)round_to_format((double)x, 8, -126, BF16_MAX);
}

uint16_t sattn_ref_f32_to_f16(float x)
{
    double r = round_to_format((double)x, 11, -14, F16_MAX);
    uint16_t sign = signbit(r) ? 0x8000 : 0;
    double a = fabs(r);
    if (isnan(r))
        return (uint16_t)(sign | 0x7e00);
    if (isinf(r))
        return (uint16_t)(sign | 0x7c00);
    if (a < ldexp(1.0, -14))
        return (uint16_t)(sign | (uint16_t)(a * ldexp(1.0, 24)));   /* subnormal count */
    int e;
    frexp(a, &e);
    int ex = e - 1;
    uint16_t m = (uint16_t)(a * ldexp(1.0, 10 - ex) - 1024.0);
    return (uint16_t)(sign | (uint16_t)((ex + 15) << 10) | m);
}

uint16_t sattn_ref_f32_to_bf16(float x)
{
    double r = round_to_format((double)x, 8, -126, BF16_MAX);
    uint16_t sign = signbit(r) ? 0x8000 : 0;
    double a = fabs(r);
    if (isnan(r))
        return (uint16_t)(sign | 0x7fc0);
    if (isinf(r))
        return (uint16_t)(sign | 0x7f80);
    if (a < ldexp(1.0, -126))
        return (uint16_t)(sign | (uint16_t)(a * ldexp(1.0, 133)));
    int e;
    frexp(a, &e);
    int ex = e - 1;
    uint16_t m = (uint16_t)(a * ldexp(1.0, 7 - ex) - 128.0);
    return (uint16_t)(sign | (uint16_t)((ex + 127) << 7) | m);
}

int sattn_ref_dtype_size(sattn_dtype dtype)
{
    switch (dtype) {
    case SATTN_F32: return 4;
    case SATTN_F16: return 2;
    case SATTN_BF16: return 2;
    }
    return 0;
}

double sattn_ref_load(sattn_dtype dtype, const void *base, int64_t idx)
{
    switch (dtype) {
    case SATTN_F32: return (double)((const float *)base)[idx];
    case SATTN_F16: return sattn_ref_f16_to_f64(((const uint16_t *)base)[idx]);
    case SATTN_BF16: return sattn_ref_bf16_to_f64(((const uint16_t *)base)[idx]);
    }
    return NAN;
}

void sattn_ref_store(sattn_dtype dtype, void *base, int64_t idx, float x)
{
    switch (dtype) {
    case SATTN_F32: ((float *)base)[idx] = x; break;
    case SATTN_F16: ((uint16_t *)base)[idx] = sattn_ref_f32_to_f16(x); break;
    case SATTN_BF16: ((uint16_t *)base)[idx] = sattn_ref_f32_to_bf16(x); break;
    }
}

/* ---- dropout: Philox4x32-10 ---- */

static void philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo)
{
    uint64_t prod = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(prod >> 32);
    *lo = (uint32_t)prod;
}

void sattn_ref_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;   /* round multipliers */
    const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;   /* Weyl key increments */
    uint32_t x[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round > 0) {    /* the key is bumped before rounds 2..10 */
            k0 += W0;
            k1 += W1;
        }
        uint32_t hi0, lo0, hi1, lo1;
        philox_mulhilo(M0, x[0], &hi0, &lo0);
        philox_mulhilo(M1, x[2], &hi1, &lo1);
        uint32_t y0 = hi1 ^ x[1] ^ k0;
        uint32_t y1 = lo1;
        uint32_t y2 = hi0 ^ x[3] ^ k1;
        uint32_t y3 = lo0;
        x[0] = y0; x[1] = y1; x[2] = y2; x[3] = y3;
    }
    memcpy(out, x, sizeof x);
}

int sattn_ref_dropout_keep(uint64_t seed, float dropout_p,
                           int64_t b, int64_t h, int64_t i, int64_t j)
{
    uint32_t ctr[4] = {(uint32_t)(j >> 2), (uint32_t)i, (uint32_t)h, (uint32_t)b};
    uint32_t key[2] = {(uint32_t)(seed & 0xffffffffu), (uint32_t)(seed >> 32)};
    uint32_t r[4];
    sattn_ref_philox4x32_10(ctr, key, r);
    double u = (double)(r[j & 3] >> 8) * ldexp(1.0, -24);
    return u >= (double)dropout_p;
}

/* ---- layout helpers ---- */

void sattn_ref_resolve_strides(const int64_t stride[3], int64_t seq, int64_t heads,
                               int64_t dim, int64_t out[3])
{
    if (stride[0] == 0 && stride[1] == 0 && stride[2] == 0) {
        out[0] = seq * heads * dim;
        out[1] = heads * dim;
        out[2] = dim;
    } else {
        out[0] = stride[0];
        out[1] = stride[1];
        out[2] = stride[2];
    }
}

int64_t sattn_ref_heads_kv(const sattn_params *p)
{
    return p->heads_kv ? p->heads_kv : p->heads_q;
}

int64_t sattn_ref_head_dim_v(const sattn_params *p)
{
    return p->head_dim_v ? p->head_dim_v : p->head_dim;
}

double sattn_ref_scale(const sattn_params *p)
{
    return p->scale != 0.0f ? (double)p->scale : 1.0 / sqrt((double)p->head_dim);
}

int64_t sattn_ref_rows_q(const sattn_params *p, int64_t b)
{
    return p->cu_seqlens_q ? (int64_t)p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b] : p->seq_q;
}

int64_t sattn_ref_rows_kv(const sattn_params *p, int64_t b)
{
    return p->cu_seqlens_kv ? (int64_t)p->cu_seqlens_kv[b + 1] - p->cu_seqlens_kv[b] : p->seq_kv;
}

int64_t sattn_ref_len_q(const sattn_params *p, int64_t b)
{
    return p->seqlens_q ? (int64_t)p->seqlens_q[b] : sattn_ref_rows_q(p, b);
}

int64_t sattn_ref_len_kv(const sattn_params *p, int64_t b)
{
    return p->seqlens_kv ? (int64_t)p->seqlens_kv[b] : sattn_ref_rows_kv(p, b);
}

int64_t sattn_ref_lse_index(const sattn_params *p, int64_t b, int64_t h, int64_t i)
{
    if (p->cu_seqlens_q)
        return h * (int64_t)p->cu_seqlens_q[p->batch] + p->cu_seqlens_q[b] + i;
    return (b * p->heads_q + h) * p->seq_q + i;
}

int64_t sattn_ref_lse_count(const sattn_params *p)
{
    if (p->cu_seqlens_q)
        return p->heads_q * (int64_t)p->cu_seqlens_q[p->batch];
    return p->batch * p->heads_q * p->seq_q;
}

/* ---- tensors ---- */

/* One (batch, seq, head, dim) tensor as the reference reads or writes it. */
typedef struct {
    const void *data;     /* stored as dtype, or double if f64 */
    int f64;
    sattn_dtype dtype;
    int64_t stride[3];    /* resolved (batch, seq, head) element strides */
    const int32_t *cu;    /* cu_seqlens of its seq axis, or NULL */
} ref_tensor;

static ref_tensor make_tensor(const void *data, int f64, sattn_dtype dtype,
                              const int64_t stride[3], int64_t seq, int64_t heads,
                              int64_t dim, const int32_t *cu)
{
    ref_tensor t;
    t.data = data;
    t.f64 = f64;
    t.dtype = dtype;
    sattn_ref_resolve_strides(stride, seq, heads, dim, t.stride);
    t.cu = cu;
    return t;
}

/* Element offset of (b, i, h, 0); i counts from the start of sequence b. */
static int64_t row_offset(const ref_tensor *t, int64_t b, int64_t i, int64_t h)
{
    if (t->cu)
        return ((int64_t)t->cu[b] + i) * t->stride[1] + h * t->stride[2];
    return b * t->stride[0] + i * t->stride[1] + h * t->stride[2];
}

static double tensor_load(const ref_tensor *t, int64_t off)
{
    if (t->f64)
        return ((const double *)t->data)[off];
    return sattn_ref_load(t->dtype, t->data, off);
}

/* |element|, for the magnitude pass of the backward */
static double tensor_load_abs(const ref_tensor *t, int64_t off)
{
    return fabs(tensor_load(t, off));
}

/* Everything one call needs, with the defaults applied. */
typedef struct {
    const sattn_params *p;
    int64_t heads_kv, dim_v, group;
    double scale;
    ref_tensor q, k, v, o;   /* o: out in the forward, dout in the backward */
} ref_ctx;

static int make_ctx(ref_ctx *c, const sattn_params *p, const void *q, const void *k,
                    const void *v, const void *o, int f64)
{
    if (!p || p->batch < 1 || p->heads_q < 1 || p->head_dim < 1 || p->seq_q < 0 || p->seq_kv < 0)
        return -1;
    c->p = p;
    c->heads_kv = sattn_ref_heads_kv(p);
    c->dim_v = sattn_ref_head_dim_v(p);
    if (c->heads_kv < 1 || p->heads_q % c->heads_kv != 0 || c->dim_v < 1)
        return -1;
    c->group = p->heads_q / c->heads_kv;
    c->scale = sattn_ref_scale(p);
    c->q = make_tensor(q, f64, p->dtype, p->q_stride, p->seq_q, p->heads_q, p->head_dim, p->cu_seqlens_q);
    c->k = make_tensor(k, f64, p->dtype, p->k_stride, p->seq_kv, c->heads_kv, p->head_dim, p->cu_seqlens_kv);
    c->v = make_tensor(v, f64, p->dtype, p->v_stride, p->seq_kv, c->heads_kv, c->dim_v, p->cu_seqlens_kv);
    c->o = make_tensor(o, f64, p->dtype, p->o_stride, p->seq_q, p->heads_q, c->dim_v, p->cu_seqlens_q);
    return 0;
}

/* ---- scores ---- */

/* 1 if key j may be attended by query i of sequence b, head h (every rule at once). */
static int key_allowed(const sattn_params *p, int64_t b, int64_t h, int64_t i, int64_t j,
                       int64_t len_q, int64_t len_kv)
{
    int64_t d = i + len_kv - len_q;   /* the bottom-right aligned diagonal */
    if (j >= len_kv)
        return 0;
    if (p->causal == SATTN_CAUSAL_TOP_LEFT && j > i)
        return 0;
    if (p->causal == SATTN_CAUSAL_BOTTOM_RIGHT && j > d)
        return 0;
    /* j < d - left and j > d + right, written so that any int64 bound is exact:
       d - j and j - d are differences of sequence positions and cannot overflow */
    if (p->window_left > 0 && d - j > p->window_left)
        return 0;
    if (p->window_right > 0 && j - d > p->window_right)
        return 0;
    if (p->mask) {
        const int64_t *ms = p->mask_stride;
        if (p->mask[b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3]] == 0)
            return 0;
    }
    if (p->bias) {
        const int64_t *bs = p->bias_stride;
        if (p->bias[b * bs[0] + h * bs[1] + i * bs[2] + j * bs[3]] == -INFINITY)
            return 0;
    }
    return 1;
}

/* The score row of (b, h, i) over keys j < len_kv: live[j] says whether key j is
   attended; for live keys s[j] is the final score and th[j] = tanh(s0 / softcap)
   (s0 = scale * q.k) when softcap is on. qrow holds q[b,i,h,:]. Returns the number
   of live keys. */
static int64_t score_row(const ref_ctx *c, int64_t b, int64_t h, int64_t i,
                         int64_t len_q, int64_t len_kv, const double *qrow,
                         double *s, double *th, unsigned char *live)
{
    const sattn_params *p = c->p;
    int64_t hk = h / c->group, n = 0;
    for (int64_t j = 0; j < len_kv; j++) {
        live[j] = (unsigned char)key_allowed(p, b, h, i, j, len_q, len_kv);
        if (!live[j])
            continue;
        n++;
        int64_t koff = row_offset(&c->k, b, j, hk);
        double dot = 0.0;
        for (int64_t e = 0; e < p->head_dim; e++)
            dot += qrow[e] * tensor_load(&c->k, koff + e);
        double x = c->scale * dot;
        th[j] = 0.0;
        if (p->softcap > 0.0f) {
            double cap = (double)p->softcap;
            th[j] = tanh(x / cap);
            x = cap * th[j];
        }
        if (p->alibi_slopes) {
            int64_t dist = i + len_kv - len_q - j;
            x -= (double)p->alibi_slopes[h] * (double)(dist < 0 ? -dist : dist);
        }
        if (p->bias) {
            const int64_t *bs = p->bias_stride;
            x += (double)p->bias[b * bs[0] + h * bs[1] + i * bs[2] + j * bs[3]];
        }
        s[j] = x;
    }
    return n;
}

/* P[j] = softmax of the live s[j] (0 for dead keys); returns lse. n live keys >= 1. */
static double softmax_row(const double *s, const unsigned char *live, int64_t len_kv, double *P)
{
    double m = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < len_kv; j++)
        if (live[j] && s[j] > m)
            m = s[j];
    for (int64_t j = 0; j < len_kv; j++)
        if (live[j])
            sum += exp(s[j] - m);
    for (int64_t j = 0; j < len_kv; j++)
        P[j] = live[j] ? exp(s[j] - m) / sum : 0.0;
    return m + log(sum);
}

/* The dropout factor of weight (b, h, i, j): 0 if dropped, 1/(1-p) if kept. */
static double dropout_factor(const sattn_params *p, int64_t b, int64_t h, int64_t i, int64_t j)
{
    if (p->dropout_p == 0.0f)
        return 1.0;
    if (!sattn_ref_dropout_keep(p->seed, p->dropout_p, b, h, i, j))
        return 0.0;
    return 1.0 / (1.0 - (double)p->dropout_p);
}

/* Scratch rows of length seq_kv (or the longest cu_seqlens_kv sequence). */
typedef struct {
    double *s, *th, *P, *dP, *qrow, *drow;
    unsigned char *live;
} ref_rows;

static int64_t max_rows_kv(const sattn_params *p)
{
    int64_t n = p->seq_kv;
    for (int64_t b = 0; b < p->batch; b++)
        if (sattn_ref_rows_kv(p, b) > n)
            n = sattn_ref_rows_kv(p, b);
    return n;
}

static int rows_alloc(ref_rows *r, const ref_ctx *c)
{
    size_t n = (size_t)max_rows_kv(c->p) + 1;
    size_t d = (size_t)(c->p->head_dim > c->dim_v ? c->p->head_dim : c->dim_v) + 1;
    r->s = malloc(n * sizeof(double));
    r->th = malloc(n * sizeof(double));
    r->P = malloc(n * sizeof(double));
    r->dP = malloc(n * sizeof(double));
    r->qrow = malloc(d * sizeof(double));
    r->drow = malloc(d * sizeof(double));
    r->live = malloc(n);
    if (!r->s || !r->th || !r->P || !r->dP || !r->qrow || !r->drow || !r->live)
        return -1;
    return 0;
}

static void rows_free(ref_rows *r)
{
    free(r->s);
    free(r->th);
    free(r->P);
    free(r->dP);
    free(r->qrow);
    free(r->drow);
    free(r->live);
}

/* ---- forward ---- */

static int forward(const ref_ctx *c, double *out, double *lse)
{
    const sattn_params *p = c->p;
    ref_rows r;
    if (rows_alloc(&r, c) != 0) {
        rows_free(&r);
        return -1;
    }
    for (int64_t b = 0; b < p->batch; b++) {
        int64_t rows = sattn_ref_rows_q(p, b);
        int64_t len_q = sattn_ref_len_q(p, b), len_kv = sattn_ref_len_kv(p, b);
        for (int64_t h = 0; h < p->heads_q; h++) {
            int64_t hk = h / c->group;
            for (int64_t i = 0; i < rows; i++) {
                int64_t ooff = row_offset(&c->o, b, i, h);
                double row_lse = -INFINITY;
                for (int64_t e = 0; e < c->dim_v; e++)
                    out[ooff + e] = 0.0;
                if (i < len_q) {
                    int64_t qoff = row_offset(&c->q, b, i, h);
                    for (int64_t e = 0; e < p->head_dim; e++)
                        r.qrow[e] = tensor_load(&c->q, qoff + e);
                    if (score_row(c, b, h, i, len_q, len_kv, r.qrow, r.s, r.th, r.live) > 0) {
                        row_lse = softmax_row(r.s, r.live, len_kv, r.P);
                        for (int64_t j = 0; j < len_kv; j++) {
                            if (!r.live[j])
                                continue;
                            double w = r.P[j] * dropout_factor(p, b, h, i, j);
                            if (w == 0.0)
                                continue;
                            int64_t voff = row_offset(&c->v, b, j, hk);
                            for (int64_t e = 0; e < c->dim_v; e++)
                                out[ooff + e] += w * tensor_load(&c->v, voff + e);
                        }
                    }
                }
                if (lse)
                    lse[sattn_ref_lse_index(p, b, h, i)] = row_lse;
            }
        }
    }
    rows_free(&r);
    return 0;
}

/* ---- backward ---- */

/* With out[i] = sum_j f_j P_j v_j (f_j the dropout factor) and L = sum out . dout:
     dv_j += f_j P_j dout_i
     dP_j  = f_j dout_i . v_j                  (dL/dP_j)
     dS_j  = P_j (dP_j - D),  D = sum_j P_j dP_j   (softmax)
     ds0_j = dS_j (1 - tanh^2(s0_j / softcap))     (softcap; alibi and bias are additive)
     dq_i += scale sum_j ds0_j k_j,  dk_j += scale ds0_j q_i
   With mag, every quantity is taken in absolute value instead (see
   sattn_ref_backward_mag): the scale of each element's rounding error. */
static int backward(const ref_ctx *c, double *dq, double *dk, double *dv, int mag, double d_floor)
{
    double (*load)(const ref_tensor *, int64_t) = mag ? tensor_load_abs : tensor_load;
    const sattn_params *p = c->p;
    ref_tensor dqt = c->q, dkt = c->k, dvt = c->v;   /* output layouts = input layouts */
    ref_rows r;
    if (rows_alloc(&r, c) != 0) {
        rows_free(&r);
        return -1;
    }
    for (int64_t b = 0; b < p->batch; b++) {
        for (int64_t h = 0; h < p->heads_q; h++)
            for (int64_t i = 0; i < sattn_ref_rows_q(p, b); i++) {
                int64_t off = row_offset(&dqt, b, i, h);
                for (int64_t e = 0; e < p->head_dim; e++)
                    dq[off + e] = 0.0;
            }
        for (int64_t h = 0; h < c->heads_kv; h++)
            for (int64_t j = 0; j < sattn_ref_rows_kv(p, b); j++) {
                int64_t koff = row_offset(&dkt, b, j, h), voff = row_offset(&dvt, b, j, h);
                for (int64_t e = 0; e < p->head_dim; e++)
                    dk[koff + e] = 0.0;
                for (int64_t e = 0; e < c->dim_v; e++)
                    dv[voff + e] = 0.0;
            }
    }
    for (int64_t b = 0; b < p->batch; b++) {
        int64_t len_q = sattn_ref_len_q(p, b), len_kv = sattn_ref_len_kv(p, b);
        for (int64_t h = 0; h < p->heads_q; h++) {
            int64_t hk = h / c->group;
            for (int64_t i = 0; i < len_q; i++) {
                int64_t qoff = row_offset(&c->q, b, i, h), ooff = row_offset(&c->o, b, i, h);
                for (int64_t e = 0; e < p->head_dim; e++)
                    r.qrow[e] = tensor_load(&c->q, qoff + e);   /* signed: it makes the scores */
                if (score_row(c, b, h, i, len_q, len_kv, r.qrow, r.s, r.th, r.live) == 0)
                    continue;   /* fully masked row: no gradient */
                softmax_row(r.s, r.live, len_kv, r.P);
                for (int64_t e = 0; e < c->dim_v; e++)
                    r.drow[e] = load(&c->o, ooff + e);
                double D = 0.0;
                for (int64_t j = 0; j < len_kv; j++) {
                    r.dP[j] = 0.0;
                    if (!r.live[j])
                        continue;
                    double f = dropout_factor(p, b, h, i, j);
                    int64_t voff = row_offset(&c->v, b, j, hk);
                    double dot = 0.0;
                    for (int64_t e = 0; e < c->dim_v; e++)
                        dot += r.drow[e] * load(&c->v, voff + e);
                    r.dP[j] = f * dot;
                    D += r.P[j] * r.dP[j];
                    int64_t dvoff = row_offset(&dvt, b, j, hk);
                    for (int64_t e = 0; e < c->dim_v; e++)
                        dv[dvoff + e] += f * r.P[j] * r.drow[e];
                }
                if (mag) {
                    double dsum = 0.0;
                    for (int64_t e = 0; e < c->dim_v; e++)
                        dsum += r.drow[e];
                    D += d_floor * dsum;
                }
                int64_t dqoff = row_offset(&dqt, b, i, h);
                for (int64_t j = 0; j < len_kv; j++) {
                    if (!r.live[j])
                        continue;
                    double ds = mag ? r.P[j] * (r.dP[j] + D) : r.P[j] * (r.dP[j] - D);
                    if (p->softcap > 0.0f)
                        ds *= 1.0 - r.th[j] * r.th[j] + (mag ? 0x1p-8 : 0.0);
                    int64_t koff = row_offset(&c->k, b, j, hk), dkoff = row_offset(&dkt, b, j, hk);
                    for (int64_t e = 0; e < p->head_dim; e++) {
                        dq[dqoff + e] += c->scale * ds * load(&c->k, koff + e);
                        dk[dkoff + e] += c->scale * ds * (mag ? fabs(r.qrow[e]) : r.qrow[e]);
                    }
                }
            }
        }
    }
    rows_free(&r);
    return 0;
}

/* ---- entry points ---- */

int sattn_ref_forward(const sattn_params *p, const void *q, const void *k, const void *v,
                      double *out, double *lse)
{
    ref_ctx c;
    if (make_ctx(&c, p, q, k, v, NULL, 0) != 0 || sattn_ref_dtype_size(p->dtype) == 0)
        return -1;
    return forward(&c, out, lse);
}

int sattn_ref_backward(const sattn_params *p, const void *q, const void *k, const void *v,
                       const void *dout, double *dq, double *dk, double *dv)
{
    ref_ctx c;
    if (make_ctx(&c, p, q, k, v, dout, 0) != 0 || sattn_ref_dtype_size(p->dtype) == 0)
        return -1;
    return backward(&c, dq, dk, dv, 0, 0.0);
}

int sattn_ref_backward_mag(const sattn_params *p, const void *q, const void *k, const void *v,
                           const void *dout, double d_floor, double *mq, double *mk, double *mv)
{
    ref_ctx c;
    if (make_ctx(&c, p, q, k, v, dout, 0) != 0 || sattn_ref_dtype_size(p->dtype) == 0)
        return -1;
    return backward(&c, mq, mk, mv, 1, d_floor);
}

int sattn_ref_forward_f64(const sattn_params *p, const double *q, const double *k,
                          const double *v, double *out, double *lse)
{
    ref_ctx c;
    if (make_ctx(&c, p, q, k, v, NULL, 1) != 0)
        return -1;
    return forward(&c, out, lse);
}

int sattn_ref_backward_f64(const sattn_params *p, const double *q, const double *k,
                           const double *v, const double *dout,
                           double *dq, double *dk, double *dv)
{
    ref_ctx c;
    if (make_ctx(&c, p, q, k, v, dout, 1) != 0)
        return -1;
    return backward(&c, dq, dk, dv, 0, 0.0);
}
