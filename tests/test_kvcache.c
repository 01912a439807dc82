/* test_kvcache: the KV cache (sattn_kvcache_*).
 *
 *   - decoding: a sequence appended in steps (one token at a time, in chunks of 3 or
 *     7, in a mix of sizes), each step attending its queries to the cache, gives the
 *     outputs and lse of one causal forward over the whole sequence: checked against
 *     the double-precision reference, and (f32) against sattn_forward itself;
 *     lengths 1 .. 1000, GQA, MQA, batch > 1, head_dim_v != head_dim, odd head dims,
 *     capacity 1 (growing at almost every step), strided and packed inputs, strided q
 *     and out, fewer or more queries than the step's tokens, scale, softcap, ALiBi;
 *   - sliding window: the same against a full causal forward with window_left = W - 1
 *     (W = 1, which window_left cannot express, against an explicit diagonal mask);
 *   - f16 and bf16 caches against the reference on K, V, Q rounded to that dtype;
 *   - reset, length, max_tokens, NULL handling, out of memory;
 *   - memory: doubling growth, max_tokens as a cap, a window's capacity bounded by
 *     O(window + largest append) however long the sequence (sattn_kvcache_get_config);
 *   - errors: every bad argument returns SATTN_ERR_INVALID naming the field, leaves
 *     the outputs (sentinel-filled) and the cache untouched.
 *
 * Expected values come from tests/ref (the reference); sattn_forward is a second,
 * tighter comparison for f32.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define KV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KV_ASAN 1
#endif
#endif

/* ---- decoding against one forward ---- */

/* How a step hands its new K and V to sattn_kvcache_append. */
typedef enum {
    KV_PACKED = 0,   /* copied into packed (batch, n, heads_kv, dim) buffers; k_stride NULL, v_stride {0,0,0} */
    KV_BSHD,         /* slices of the whole sequence's packed tensor (batch stride seq*heads*dim) */
    KV_BHSD,         /* slices of a (batch, heads, seq, dim) tensor */
    KV_PADDED,       /* slices of a tensor with random axis order and gaps (NaN in the gaps) */
} kv_input;

typedef struct {
    const char *label;
    int64_t batch, seq, heads_q, heads_kv, head_dim, head_dim_v;
    sattn_dtype dtype;
    int64_t window;     /* the cache's window; 0 = none */
    int64_t capacity;   /* the cache's initial capacity; 0 = default */
    int chunks[8];      /* append sizes, cycled; the list ends at the first 0; none = 1 */
    kv_input kv;
    tu_layout lq, lo;   /* q and out of the whole sequence; TU_DEFAULT: each step gets packed
                           buffers of its own with zero strides */
    int seq_q_mode;     /* 0: a step queries its n tokens; 1: a random count in [1, allowed] */
    float scale, softcap;
    int alibi;
} kv_spec;

/* What a run measured: largest error / tolerance against the reference, and largest
   |decode - forward| / max(1, max|forward out|) (out) or / max(1, |lse|) (lse). */
typedef struct {
    double worst_out, worst_lse, fwd_out, fwd_lse;
} kv_result;

static uint64_t hash_label(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Fills every element of t (flags TU_DOMAIN) of an array of dtype with uniform values in
   [-spread, spread), every gap with NaN; f32 copy (unrounded) into f32 if not NULL. */
static void fill(tu_rng *r, const tu_tensor *t, const unsigned char *flags, sattn_dtype dt, void *data,
                 float *f32, double spread)
{
    for (int64_t x = 0; x < t->count; x++) {
        float val = flags[x] == TU_DOMAIN ? (float)tu_unif(r, -spread, spread) : NAN;
        sattn_ref_store(dt, data, x, val);
        if (f32) f32[x] = val;
    }
}

static void *alloc_bytes(int64_t n, size_t es)
{
    void *p = malloc((size_t)(n + 1) * es);
    if (!p) abort();
    return p;
}

/* Copies rows t0 .. t0+rows-1 of (batch, ., heads, dim) tensor src (strides ss, dtype size
   es) into rows d0 .. of dst (strides ds). */
static void copy_rows(void *dst, const int64_t ds[3], int64_t d0, const void *src, const int64_t ss[3],
                      int64_t t0, int64_t batch, int64_t rows, int64_t heads, int64_t dim, size_t es)
{
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t h = 0; h < heads; h++)
                memcpy((char *)dst + (size_t)(b * ds[0] + (d0 + i) * ds[1] + h * ds[2]) * es,
                       (const char *)src + (size_t)(b * ss[0] + (t0 + i) * ss[1] + h * ss[2]) * es,
                       (size_t)dim * es);
}

static const tu_layout kv_layouts[4] = {TU_BSHD, TU_BSHD, TU_BHSD, TU_PADDED};

/* Decodes s's sequence through cache (created here if NULL, else reset first) and
   compares. Returns 1 if everything passed. */
static int run_decode(const kv_spec *s, sattn_kvcache *cache, kv_result *res)
{
    tu_rng r;
    tu_seed(&r, hash_label(s->label));
    const int64_t B = s->batch, T = s->seq, HQ = s->heads_q, HKV = s->heads_kv, D = s->head_dim;
    const int64_t DV = s->head_dim_v ? s->head_dim_v : s->head_dim;
    const sattn_dtype dt = s->dtype;
    const size_t es = (size_t)sattn_ref_dtype_size(dt);
    const tu_tol tol = tu_tolerance(dt);
    int ok = 1;
    sattn_kvcache *own = NULL;   /* the cache made here, freed here */

    tu_tensor tq, tk, tv, to;
    tu_tensor_init(&tq, &r, s->lq, B, T, HQ, D, NULL);
    tu_tensor_init(&tk, &r, kv_layouts[s->kv], B, T, HKV, D, NULL);
    tu_tensor_init(&tv, &r, kv_layouts[s->kv], B, T, HKV, DV, NULL);
    tu_tensor_init(&to, &r, s->lo, B, T, HQ, DV, NULL);
    unsigned char *fq = tu_domain_flags(&tq), *fk = tu_domain_flags(&tk), *fv = tu_domain_flags(&tv);
    unsigned char *fo = tu_domain_flags(&to);
    void *q = alloc_bytes(tq.count, es), *kd = alloc_bytes(tk.count, es), *vd = alloc_bytes(tv.count, es);
    float *kf = alloc_bytes(tk.count, 4), *vf = alloc_bytes(tv.count, 4);
    /* q and k spread over +-2: scores of a few units, so the softmax is far from uniform */
    fill(&r, &tq, fq, dt, q, NULL, 2.0);
    fill(&r, &tk, fk, dt, kd, kf, 2.0);
    fill(&r, &tv, fv, dt, vd, vf, 1.0);
    float *alibi = NULL;
    if (s->alibi) {
        alibi = alloc_bytes(HQ, 4);
        for (int64_t h = 0; h < HQ; h++) alibi[h] = (float)pow(2.0, -8.0 * (double)(h + 1) / (double)HQ);
    }

    void *out = tu_alloc_sentinel((size_t)(to.count + 1) * es);
    const int64_t nlse = B * HQ * T;
    float *lse = alloc_bytes(nlse, 4);
    for (int64_t x = 0; x < nlse; x++) lse[x] = NAN;
    unsigned char *written = calloc((size_t)T + 1, 1);
    /* per-step packed buffers (the TU_DEFAULT layouts and KV_PACKED) */
    void *qs = alloc_bytes(B * T * HQ * D, es), *os = alloc_bytes(B * T * HQ * DV, es);
    float *ks = alloc_bytes(B * T * HKV * D, 4), *vs = alloc_bytes(B * T * HKV * DV, 4);
    float *ls = alloc_bytes(B * HQ * T, 4);
    if (!written) abort();

    if (cache) {
        sattn_kvcache_reset(cache);
        ok &= tu_check(sattn_kvcache_length(cache) == 0, "%s: length after reset", s->label);
    } else {
        sattn_kvcache_config cfg = {B, HKV, D, s->head_dim_v, dt, s->capacity, 0, s->window};
        sattn_status st = sattn_kvcache_create(&own, &cfg);
        if (!tu_check(st == SATTN_OK, "%s: create: %d (%s)", s->label, (int)st, sattn_last_error())) {
            ok = 0;
            goto done;
        }
        cache = own;
    }

    int nchunks = 0;
    while (nchunks < 8 && s->chunks[nchunks] > 0) nchunks++;
    for (int64_t t = 0, step = 0; t < T; step++) {
        int64_t n = nchunks ? s->chunks[step % nchunks] : 1;
        if (n > T - t) n = T - t;

        /* append tokens t .. t+n-1 */
        sattn_status st;
        if (s->kv == KV_PACKED) {
            const int64_t kp[3] = {n * HKV * D, HKV * D, D}, vp[3] = {n * HKV * DV, HKV * DV, DV};
            static const int64_t zero[3] = {0, 0, 0};
            copy_rows(ks, kp, 0, kf, tk.rstride, t, B, n, HKV, D, 4);
            copy_rows(vs, vp, 0, vf, tv.rstride, t, B, n, HKV, DV, 4);
            st = sattn_kvcache_append(cache, n, ks, NULL, vs, zero);
        } else {
            st = sattn_kvcache_append(cache, n, kf + tu_offset(&tk, 0, t, 0), tk.rstride,
                                      vf + tu_offset(&tv, 0, t, 0), tv.rstride);
        }
        if (!tu_check(st == SATTN_OK, "%s: append of %lld at %lld: %d (%s)", s->label, (long long)n,
                      (long long)t, (int)st, sattn_last_error())) {
            ok = 0;
            break;
        }
        t += n;
        ok &= tu_check(sattn_kvcache_length(cache) == t, "%s: length %lld, expected %lld", s->label,
                       (long long)sattn_kvcache_length(cache), (long long)t);

        /* queries: the newest seq_q tokens */
        int64_t most = s->window > 0 ? n : t, sq = n;
        if (s->seq_q_mode) sq = tu_range(&r, 1, most);
        const int64_t t0 = t - sq;
        sattn_params p;
        memset(&p, 0, sizeof p);
        p.seq_q = sq, p.heads_q = HQ, p.dtype = dt;
        p.scale = s->scale, p.softcap = s->softcap, p.alibi_slopes = alibi;
        const void *qp = (const char *)q + (size_t)tu_offset(&tq, 0, t0, 0) * es;
        void *op = (char *)out + (size_t)tu_offset(&to, 0, t0, 0) * es;
        if (s->lq == TU_DEFAULT) {
            const int64_t st3[3] = {sq * HQ * D, HQ * D, D};
            copy_rows(qs, st3, 0, q, tq.rstride, t0, B, sq, HQ, D, es);
            qp = qs;
        } else {
            memcpy(p.q_stride, tq.rstride, sizeof p.q_stride);
        }
        if (s->lo == TU_DEFAULT) op = os;
        else memcpy(p.o_stride, to.rstride, sizeof p.o_stride);
        if (step % 2) p.batch = B, p.heads_kv = HKV, p.head_dim = D, p.head_dim_v = DV; /* may be given */
        st = sattn_kvcache_attend(cache, &p, qp, op, ls);
        if (!tu_check(st == SATTN_OK, "%s: attend seq_q %lld at %lld: %d (%s)", s->label, (long long)sq,
                      (long long)t, (int)st, sattn_last_error())) {
            ok = 0;
            break;
        }
        if (s->lo == TU_DEFAULT) {
            const int64_t st3[3] = {sq * HQ * DV, HQ * DV, DV};
            copy_rows(out, to.rstride, t0, os, st3, 0, B, sq, HQ, DV, es);
        }
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < HQ; h++)
                for (int64_t i = 0; i < sq; i++) lse[(b * HQ + h) * T + t0 + i] = ls[(b * HQ + h) * sq + i];
        memset(written + t0, 1, (size_t)sq);
    }

    /* the whole sequence at once: causal, and the cache's window */
    sattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = B, p.seq_q = T, p.seq_kv = T, p.heads_q = HQ, p.heads_kv = HKV, p.head_dim = D, p.head_dim_v = DV;
    p.dtype = dt;
    memcpy(p.q_stride, tq.stride, sizeof p.q_stride);
    memcpy(p.k_stride, tk.stride, sizeof p.k_stride);
    memcpy(p.v_stride, tv.stride, sizeof p.v_stride);
    memcpy(p.o_stride, to.stride, sizeof p.o_stride);
    p.scale = s->scale, p.softcap = s->softcap, p.alibi_slopes = alibi;
    p.causal = SATTN_CAUSAL_TOP_LEFT;
    uint8_t *diag = NULL;
    if (s->window > 1) {
        p.window_left = s->window - 1;
    } else if (s->window == 1) { /* each token sees itself only */
        diag = calloc((size_t)(T * T), 1);
        if (!diag) abort();
        for (int64_t i = 0; i < T; i++) diag[i * T + i] = 1;
        p.mask = diag;
        p.mask_stride[2] = T, p.mask_stride[3] = 1;
    }

    /* rows no step queried are not compared */
    unsigned char *flse = calloc((size_t)nlse + 1, 1);
    if (!flse) abort();
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < HQ; h++)
            for (int64_t i = 0; i < T; i++) {
                flse[(b * HQ + h) * T + i] = written[i] ? TU_DOMAIN : TU_DONTCARE;
                if (!written[i])
                    for (int64_t c = 0; c < DV; c++) fo[tu_offset(&to, b, i, h) + c] = TU_DONTCARE;
            }

    double *rout = tu_alloc_f64(to.count), *rlse = tu_alloc_f64(nlse);
    if (!tu_check(sattn_ref_forward(&p, q, kd, vd, rout, rlse) == 0, "%s: reference failed", s->label)) {
        ok = 0;
    } else {
        tu_cmp c;
        ok &= tu_check(tu_compare("out", dt, out, rout, NULL, fo, to.count, &tol.out, &c),
                       "%s: out against the reference", s->label);
        res->worst_out = c.worst;
        ok &= tu_check(tu_compare("lse", SATTN_F32, lse, rlse, NULL, flse, nlse, &tol.lse, &c),
                       "%s: lse against the reference", s->label);
        res->worst_lse = c.worst;
    }

    /* f32: decoding sums the same terms as the forward in another order (key chunks
       merged through the lse instead of one pass), a few f32 ulps apart: 1e-5 of
       max(1, max|out|) and of max(1, |lse|) is ~80 ulps of room, far below any real
       mistake (a wrong key moves an output by ~1e-2). */
    if (dt == SATTN_F32) {
        float *fout = tu_alloc_sentinel((size_t)(to.count + 1) * es);
        float *flse_out = alloc_bytes(nlse, 4);
        sattn_status st = sattn_forward(&p, q, kd, vd, fout, flse_out);
        if (tu_check(st == SATTN_OK, "%s: forward: %s", s->label, sattn_last_error())) {
            double mx = 1.0, eo = 0.0, el = 0.0;
            for (int64_t x = 0; x < to.count; x++)
                if (fo[x] == TU_DOMAIN && fabs(fout[x]) > mx) mx = fabs(fout[x]);
            for (int64_t x = 0; x < to.count; x++)
                if (fo[x] == TU_DOMAIN) {
                    double e = fabs((double)((const float *)out)[x] - fout[x]) / mx;
                    if (!(e <= eo)) eo = e; /* NaN sticks */
                }
            for (int64_t x = 0; x < nlse; x++)
                if (flse[x] == TU_DOMAIN) {
                    double e = isinf(flse_out[x]) && lse[x] == flse_out[x]
                                   ? 0.0
                                   : fabs((double)lse[x] - flse_out[x]) / fmax(1.0, fabs(flse_out[x]));
                    if (!(e <= el)) el = e;
                }
            res->fwd_out = eo, res->fwd_lse = el;
            ok &= tu_check(eo <= 1e-5, "%s: out differs from sattn_forward by %.3g of max(1, max|out|) > 1e-5",
                           s->label, eo);
            ok &= tu_check(el <= 1e-5, "%s: lse differs from sattn_forward by %.3g > 1e-5", s->label, el);
        }
        free(fout);
        free(flse_out);
    }
    free(rout);
    free(rlse);
    free(flse);
    free(diag);
done:
    sattn_kvcache_free(own);
    free(fq), free(fk), free(fv), free(fo);
    free(q), free(kd), free(vd), free(kf), free(vf), free(alibi), free(out), free(lse), free(written);
    free(qs), free(os), free(ks), free(vs), free(ls);
    return ok;
}

/* The plain cases: one sequence through a fresh cache. */
static void test_decode(void)
{
    static const kv_spec cases[] = {
        /* label                    B  T    HQ HKV D   DV  dtype      W  cap chunks       kv          lq          lo */
        {"token by token T=1",      1, 1,   1, 1,  16, 0,  SATTN_F32, 0, 0, {1},          KV_PACKED,  TU_DEFAULT, TU_DEFAULT, 0, 0, 0, 0},
        {"token by token T=7",      1, 7,   2, 2,  16, 0,  SATTN_F32, 0, 0, {1},          KV_BSHD,    TU_BSHD,    TU_BSHD,    0, 0, 0, 0},
        {"token by token T=63",     2, 63,  4, 4,  32, 0,  SATTN_F32, 0, 0, {1},          KV_PACKED,  TU_DEFAULT, TU_DEFAULT, 0, 0, 0, 0},
        {"token by token T=65",     1, 65,  2, 1,  64, 0,  SATTN_F32, 0, 0, {1},          KV_BHSD,    TU_BSHD,    TU_BSHD,    0, 0, 0, 0},
        {"token by token T=257 GQA",1, 257, 8, 2,  32, 0,  SATTN_F32, 0, 0, {1},          KV_BSHD,    TU_DEFAULT, TU_DEFAULT, 0, 0, 0, 0},
        {"chunks of 3",             2, 65,  4, 1,  32, 0,  SATTN_F32, 0, 0, {3},          KV_PACKED,  TU_PADDED,  TU_PADDED,  0, 0, 0, 0},
        {"chunks of 7 T=257",       1, 257, 4, 1,  40, 48, SATTN_F32, 0, 0, {7},          KV_PADDED,  TU_BSHD,    TU_BHSD,    0, 0, 0, 0},
        {"mixed chunks",            3, 130, 6, 3,  24, 0,  SATTN_F32, 0, 0, {5, 1, 2, 9, 1, 1, 70}, KV_PADDED, TU_PADDED, TU_PADDED, 0, 0, 0, 0},
        {"prefill then tokens",     2, 100, 4, 2,  32, 0,  SATTN_F32, 0, 0, {64, 1, 1, 1, 1, 1, 1, 1}, KV_BSHD, TU_BSHD, TU_DEFAULT, 0, 0, 0, 0},
        {"one append",              2, 150, 2, 2,  16, 0,  SATTN_F32, 0, 0, {150},        KV_BSHD,    TU_BSHD,    TU_BSHD,    0, 0, 0, 0},
        {"MQA odd head_dim 7",      2, 63,  5, 1,  7,  3,  SATTN_F32, 0, 0, {1},          KV_PADDED,  TU_PADDED,  TU_PADDED,  0, 0, 0, 0},
        {"head_dim 65, dv 33",      1, 65,  2, 2,  65, 33, SATTN_F32, 0, 0, {2, 1},       KV_PACKED,  TU_BSHD,    TU_BSHD,    0, 0, 0, 0},
        {"capacity 1, grows",       2, 257, 2, 1,  16, 0,  SATTN_F32, 0, 1, {1, 2, 1, 5},  KV_BSHD,    TU_BSHD,    TU_BSHD,    0, 0, 0, 0},
        {"capacity 1, chunks",      1, 100, 4, 4,  8,  12, SATTN_F32, 0, 1, {3, 7},       KV_PACKED,  TU_DEFAULT, TU_DEFAULT, 0, 0, 0, 0},
        {"random seq_q",            2, 90,  4, 2,  16, 0,  SATTN_F32, 0, 0, {4, 1, 6},    KV_BSHD,    TU_PADDED,  TU_PADDED,  1, 0, 0, 0},
        {"random seq_q packed",     1, 60,  2, 1,  16, 0,  SATTN_F32, 0, 2, {3},          KV_PACKED,  TU_DEFAULT, TU_DEFAULT, 1, 0, 0, 0},
        {"scale softcap alibi",     2, 70,  4, 2,  32, 0,  SATTN_F32, 0, 0, {1, 4},       KV_BSHD,    TU_BSHD,    TU_BSHD,    0, 0.4f, 3.0f, 1},
        {"alibi chunks",            1, 80,  8, 1,  16, 0,  SATTN_F32, 0, 0, {7},          KV_PADDED,  TU_BSHD,    TU_BSHD,    0, 0, 0, 1},
        /* sliding window: W = 1 (no window_left can say it), 4, 64 */
        {"window 1 tokens",         2, 40,  2, 1,  16, 0,  SATTN_F32, 1, 0, {1},          KV_BSHD,    TU_BSHD,    TU_BSHD,    0, 0, 0, 0},
        {"window 1 chunks",         1, 65,  4, 2,  8,  0,  SATTN_F32, 1, 5, {3, 1, 8},    KV_PADDED,  TU_PADDED,  TU_PADDED,  1, 0, 0, 0},
        {"window 4 tokens",         2, 257, 4, 2,  16, 0,  SATTN_F32, 4, 0, {1},          KV_BSHD,    TU_DEFAULT, TU_DEFAULT, 0, 0, 0, 0},
        {"window 4 chunks 3",       1, 200, 2, 1,  16, 0,  SATTN_F32, 4, 1, {3},          KV_PACKED,  TU_BSHD,    TU_BSHD,    0, 0, 0, 0},
        {"window 4 big chunks",     1, 100, 2, 2,  16, 0,  SATTN_F32, 4, 4, {9, 1, 17},   KV_BSHD,    TU_BSHD,    TU_BSHD,    1, 0, 0, 1},
        {"window 64 tokens",        1, 257, 4, 1,  32, 0,  SATTN_F32, 64, 0, {1},         KV_BSHD,    TU_BSHD,    TU_BSHD,    0, 0, 0, 0},
        {"window 64 chunks 7",      2, 257, 2, 2,  16, 24, SATTN_F32, 64, 1, {7},         KV_PADDED,  TU_PADDED,  TU_PADDED,  0, 0, 0, 0},
        {"window 64 mixed",         1, 300, 4, 2,  16, 0,  SATTN_F32, 64, 16, {1, 100, 3, 1, 64, 2}, KV_BSHD, TU_BSHD, TU_BSHD, 1, 0.3f, 2.0f, 1},
        {"window 4 long",           1, 1000, 1, 1, 8,  0,  SATTN_F32, 4, 0, {1},          KV_BSHD,    TU_BSHD,    TU_BSHD,    0, 0, 0, 0},
        /* 16-bit caches */
        {"f16 tokens",              2, 65,  4, 2,  32, 0,  SATTN_F16, 0, 0, {1},          KV_BSHD,    TU_BSHD,    TU_BSHD,    0, 0, 0, 0},
        {"f16 chunks",              1, 130, 2, 1,  64, 16, SATTN_F16, 0, 1, {7, 1},       KV_PADDED,  TU_PADDED,  TU_PADDED,  0, 0, 3.0f, 1},
        {"f16 window 4",            1, 100, 2, 2,  16, 0,  SATTN_F16, 4, 0, {3, 1},       KV_PACKED,  TU_DEFAULT, TU_DEFAULT, 0, 0, 0, 0},
        {"bf16 tokens",             2, 65,  4, 1,  32, 0,  SATTN_BF16, 0, 0, {1},         KV_BSHD,    TU_BSHD,    TU_BSHD,    0, 0, 0, 0},
        {"bf16 chunks",             1, 130, 2, 2,  7,  5,  SATTN_BF16, 0, 1, {3},         KV_PACKED,  TU_BSHD,    TU_BSHD,    1, 0.5f, 0, 0},
        {"bf16 window 64",          1, 200, 2, 1,  16, 0,  SATTN_BF16, 64, 0, {1, 9},     KV_BSHD,    TU_BSHD,    TU_BSHD,    0, 0, 0, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        kv_result res = {0, 0, 0, 0};
        int ok = run_decode(&cases[c], NULL, &res);
        printf("  %-26s %s  out %.3f lse %.3f of tolerance", cases[c].label, ok ? "ok  " : "FAIL", res.worst_out,
               res.worst_lse);
        if (cases[c].dtype == SATTN_F32) printf("; vs forward out %.1e lse %.1e", res.fwd_out, res.fwd_lse);
        printf("\n");
    }
}

/* A cache reused after reset decodes a new sequence (of another length and chunking)
   as a fresh one does, also after it grew and (with a window) moved. */
static void test_reset_reuse(void)
{
    const int64_t windows[2] = {0, 5};
    for (int w = 0; w < 2; w++) {
        kv_spec s = {"reuse", 2, 80, 4, 2, 16, 0, SATTN_F32, windows[w], 1, {3, 1}, KV_BSHD, TU_BSHD, TU_BSHD,
                     0, 0, 0, 0};
        sattn_kvcache_config cfg = {2, 2, 16, 0, SATTN_F32, 1, 0, windows[w]};
        sattn_kvcache *c = NULL;
        if (!tu_check(sattn_kvcache_create(&c, &cfg) == SATTN_OK, "reuse: create")) return;
        kv_result res;
        int ok = run_decode(&s, c, &res);
        s.label = "reuse after reset", s.seq = 33, s.chunks[0] = 1, s.chunks[1] = 0;
        ok &= run_decode(&s, c, &res);
        s.label = "reuse after reset 2", s.seq = 120, s.chunks[0] = 11, s.chunks[1] = 2;
        ok &= run_decode(&s, c, &res);
        tu_check(ok, "reset and reuse, window %lld", (long long)windows[w]);
        sattn_kvcache_free(c);
    }
}

/* ---- lifetime, length, max_tokens ---- */

/* 1 if word occurs in msg delimited by non-identifier characters. */
static int has_word(const char *msg, const char *word)
{
    size_t n = strlen(word);
    for (const char *at = strstr(msg, word); at; at = strstr(at + 1, word)) {
        int left = at == msg || !(isalnum((unsigned char)at[-1]) || at[-1] == '_');
        int right = !(isalnum((unsigned char)at[n]) || at[n] == '_');
        if (left && right) return 1;
    }
    return 0;
}

/* Status st must be want, with the message naming field. */
static int expect_fail(sattn_status st, sattn_status want, const char *field, const char *what)
{
    const char *msg = sattn_last_error();
    int ok = tu_check(st == want, "%s: status %d, expected %d", what, (int)st, (int)want);
    if (field) ok &= tu_check(has_word(msg, field), "%s: message \"%s\" does not name %s", what, msg, field);
    else ok &= tu_check(msg[0] != '\0', "%s: empty message", what);
    return ok;
}

static void test_lifetime(void)
{
    sattn_kvcache_free(NULL);   /* no-ops */
    sattn_kvcache_reset(NULL);
    tu_check(sattn_kvcache_length(NULL) == 0, "length(NULL) is 0");

    /* max_tokens: counts every appended token, also with a window */
    for (int w = 0; w < 2; w++) {
        sattn_kvcache_config cfg = {1, 1, 4, 0, SATTN_F32, 0, 10, w ? 3 : 0};
        sattn_kvcache *c = NULL;
        float k[4 * 11] = {0}, v[4 * 11] = {0};
        if (!tu_check(sattn_kvcache_create(&c, &cfg) == SATTN_OK, "create with max_tokens")) return;
        tu_check(sattn_kvcache_append(c, 6, k, NULL, v, NULL) == SATTN_OK, "6 of max_tokens 10");
        expect_fail(sattn_kvcache_append(c, 5, k, NULL, v, NULL), SATTN_ERR_INVALID, "max_tokens", "6 + 5 > 10");
        tu_check(sattn_kvcache_length(c) == 6, "a failed append appends nothing");
        tu_check(sattn_kvcache_append(c, 4, k, NULL, v, NULL) == SATTN_OK, "6 + 4 = max_tokens");
        expect_fail(sattn_kvcache_append(c, 1, k, NULL, v, NULL), SATTN_ERR_INVALID, "max_tokens", "11 > 10");
        tu_check(sattn_kvcache_length(c) == 10, "length stays 10");
        sattn_kvcache_reset(c);
        tu_check(sattn_kvcache_length(c) == 0, "length 0 after reset");
        tu_check(sattn_kvcache_append(c, 10, k, NULL, v, NULL) == SATTN_OK, "10 after reset");
        sattn_kvcache_free(c);
    }

    /* out of memory: a size that overflows, and (outside ASan, which reports
       allocations over 1 TiB instead of returning NULL) a growth no machine satisfies */
    {
        sattn_kvcache_config cfg = {1 << 20, 1 << 10, 4096, 0, SATTN_F32, 1 << 30, 0, 0};
        sattn_kvcache *c = (sattn_kvcache *)&cfg;   /* must come back NULL */
        expect_fail(sattn_kvcache_create(&c, &cfg), SATTN_ERR_NOMEM, NULL, "create overflowing size_t");
        tu_check(c == NULL, "*cache is NULL after a failed create");
    }
#ifndef KV_ASAN
    {
        /* 256 heads of 4096 f32: 4 MiB per token of capacity, for K and for V; growing to
           2^31 - 2 tokens asks for 2^53 bytes each, beyond the 2^47 a process gets from
           an mmap without an address hint */
        sattn_kvcache_config cfg = {1, 256, 4096, 0, SATTN_F32, 1, 0, 0};
        sattn_kvcache *c = NULL;
        if (tu_check(sattn_kvcache_create(&c, &cfg) == SATTN_OK, "create 256 heads of 4096")) {
            float *one = calloc(4096, sizeof(float));
            /* every batch and head reads the same row (0 strides); the seq stride of 1 only
               makes the strides not all zero (all zero means packed). The large append fails
               before it reads anything; the one-token append reads one[0 .. 4096). */
            const int64_t bcast[3] = {0, 1, 0};
            if (!one) abort();
            int64_t big = 2147483647 - 1;
            expect_fail(sattn_kvcache_append(c, big, one, bcast, one, bcast), SATTN_ERR_NOMEM, NULL,
                        "growth past memory");
            sattn_kvcache_config got;
            tu_check(sattn_kvcache_length(c) == 0 && sattn_kvcache_get_config(c, &got) == SATTN_OK &&
                         got.capacity == 1,
                     "nothing appended, capacity unchanged after NOMEM");
            tu_check(sattn_kvcache_append(c, 1, one, bcast, one, bcast) == SATTN_OK, "append after NOMEM");
            free(one);
            sattn_kvcache_free(c);
        }
    }
#else
    printf("  (growth past memory not tried under AddressSanitizer)\n");
#endif
}

/* ---- memory: the capacity sattn_kvcache_get_config reports ---- */

static void test_capacity(void)
{
    static float zeros[16 * 7];
    sattn_kvcache_config got;

    /* the configuration comes back, defaults resolved */
    {
        sattn_kvcache_config cfg = {3, 2, 16, 0, SATTN_BF16, 0, 0, 5};
        sattn_kvcache *c = NULL;
        if (tu_check(sattn_kvcache_create(&c, &cfg) == SATTN_OK, "get_config: create")) {
            tu_check(sattn_kvcache_get_config(c, &got) == SATTN_OK && got.batch == 3 && got.heads_kv == 2 &&
                         got.head_dim == 16 && got.head_dim_v == 16 && got.dtype == SATTN_BF16 &&
                         got.capacity == 256 && got.max_tokens == 0 && got.window == 5,
                     "get_config returns the configuration (head_dim_v and capacity resolved)");
            expect_fail(sattn_kvcache_get_config(c, NULL), SATTN_ERR_INVALID, "cfg", "get_config(cache, NULL)");
            sattn_kvcache_free(c);
        }
        expect_fail(sattn_kvcache_get_config(NULL, &got), SATTN_ERR_INVALID, "cache", "get_config(NULL, cfg)");
    }

    /* without a window: doubling from 1 (1, 2, 4, ..., 128 for 100 tokens); never above
       max_tokens, which also bounds the first allocation */
    {
        sattn_kvcache_config cfg = {1, 1, 16, 0, SATTN_F32, 1, 0, 0};
        sattn_kvcache *c = NULL;
        if (tu_check(sattn_kvcache_create(&c, &cfg) == SATTN_OK, "doubling: create")) {
            for (int t = 0; t < 100; t++) sattn_kvcache_append(c, 1, zeros, NULL, zeros, NULL);
            sattn_kvcache_get_config(c, &got);
            tu_check(got.capacity == 128, "100 tokens from capacity 1: capacity %lld, expected 128",
                     (long long)got.capacity);
            sattn_kvcache_free(c);
        }
        cfg.capacity = 0, cfg.max_tokens = 100;
        if (tu_check(sattn_kvcache_create(&c, &cfg) == SATTN_OK, "max_tokens: create")) {
            sattn_kvcache_get_config(c, &got);
            tu_check(got.capacity == 100, "capacity 0 (256) with max_tokens 100: %lld", (long long)got.capacity);
            sattn_kvcache_free(c);
        }
        cfg.capacity = 3, cfg.max_tokens = 100;
        if (tu_check(sattn_kvcache_create(&c, &cfg) == SATTN_OK, "max_tokens growth: create")) {
            for (int t = 0; t < 100; t++) sattn_kvcache_append(c, 1, zeros, NULL, zeros, NULL);
            sattn_kvcache_get_config(c, &got);
            tu_check(got.capacity == 100 && sattn_kvcache_length(c) == 100,
                     "growth stops at max_tokens: capacity %lld", (long long)got.capacity);
            sattn_kvcache_free(c);
        }
    }

    /* with a window W, appends of at most 7: a move keeps W - 1 tokens, and growth stops
       once keep + n and 2 keep fit, so capacity <= 2 max(W - 1 + 7, 2 (W - 1)) (or the
       initial capacity) however long the sequence. And >= 2 (W - 1): the room that makes
       a move of W - 1 rows come at most once per W - 1 appended tokens. */
    const int64_t windows[3] = {1, 4, 64};
    for (int w = 0; w < 3; w++) {
        const int64_t W = windows[w];
        sattn_kvcache_config cfg = {1, 1, 16, 0, SATTN_F16, 1, 0, W};
        sattn_kvcache *c = NULL;
        if (!tu_check(sattn_kvcache_create(&c, &cfg) == SATTN_OK, "window capacity: create")) continue;
        static const int sizes[4] = {1, 3, 7, 2};
        for (int step = 0; sattn_kvcache_length(c) < 20000; step++)
            if (sattn_kvcache_append(c, sizes[step % 4], zeros, NULL, zeros, NULL) != SATTN_OK) break;
        sattn_kvcache_get_config(c, &got);
        int64_t bound = 2 * (W - 1 + 7 > 2 * (W - 1) ? W - 1 + 7 : 2 * (W - 1));
        tu_check(sattn_kvcache_length(c) >= 20000 && got.capacity <= bound && got.capacity >= 2 * (W - 1),
                 "window %lld: capacity %lld after %lld tokens, expected in [%lld, %lld]", (long long)W,
                 (long long)got.capacity, (long long)sattn_kvcache_length(c), (long long)(2 * (W - 1)),
                 (long long)bound);
        sattn_kvcache_free(c);
    }
}

/* ---- errors ---- */

#define EB 2
#define EHKV 2
#define EHQ 4
#define ED 8
#define EDV 6
#define ET 5
#define ESQ 3
#define ENBUF 1024

typedef struct {
    sattn_kvcache *cache;   /* NULL: passes a NULL cache */
    sattn_params p;
    int null_p;
    const void *q;
    void *out;
    float *lse;
} attend_call;

static sattn_status call_attend(const attend_call *a)
{
    return sattn_kvcache_attend(a->cache, a->null_p ? NULL : &a->p, a->q, a->out, a->lse);
}

static void test_errors(void)
{
    static float k[ENBUF], v[ENBUF], q[ENBUF], out[ENBUF], lse[ENBUF], out0[ENBUF], lse0[ENBUF];
    static const float slopes_nan[EHQ] = {0.5f, NAN, 0.25f, 0.125f};
    static const int32_t lens[EB + 1] = {0, 1, 2};
    static const uint8_t maskb[1] = {1};
    tu_rng r;
    tu_seed(&r, 17);
    for (int x = 0; x < ENBUF; x++) {
        k[x] = (float)tu_unif(&r, -1, 1);
        v[x] = (float)tu_unif(&r, -1, 1);
        q[x] = (float)tu_unif(&r, -1, 1);
    }

    /* ---- create ---- */
    for (int e = 0;; e++) {
        sattn_kvcache_config cfg = {EB, EHKV, ED, EDV, SATTN_F32, 0, 0, 0};
        const char *field = NULL;
        int null_out = 0, null_cfg = 0;
        switch (e) {
        case 0: field = "cache", null_out = 1; break;
        case 1: field = "cfg", null_cfg = 1; break;
        case 2: field = "batch", cfg.batch = 0; break;
        case 3: field = "heads_kv", cfg.heads_kv = -1; break;
        case 4: field = "head_dim", cfg.head_dim = 0; break;
        case 5: field = "head_dim", cfg.head_dim = 5000; break;
        case 6: field = "head_dim_v", cfg.head_dim_v = -2; break;
        case 7: field = "dtype", cfg.dtype = (sattn_dtype)7; break;
        case 8: field = "capacity", cfg.capacity = -1; break;
        case 9: field = "max_tokens", cfg.max_tokens = -5; break;
        case 10: field = "window", cfg.window = -1; break;
        case 11: field = "batch", cfg.batch = (int64_t)1 << 20, cfg.heads_kv = (int64_t)1 << 20; break;
        default: break;
        }
        if (!field) break;
        sattn_kvcache *c = (sattn_kvcache *)&cfg; /* must come back NULL */
        char what[64];
        snprintf(what, sizeof what, "create: bad %s (%d)", field, e);
        expect_fail(sattn_kvcache_create(null_out ? NULL : &c, null_cfg ? NULL : &cfg), SATTN_ERR_INVALID,
                    field, what);
        if (!null_out) tu_check(c == NULL, "%s: *cache not NULL", what);
    }

    sattn_kvcache_config cfg = {EB, EHKV, ED, EDV, SATTN_F32, 2, 0, 0};
    sattn_kvcache *c = NULL;
    if (!tu_check(sattn_kvcache_create(&c, &cfg) == SATTN_OK, "errors: create")) return;
    tu_check(sattn_kvcache_append(c, ET, k, NULL, v, NULL) == SATTN_OK, "errors: append");

    attend_call good;
    memset(&good, 0, sizeof good);
    good.cache = c;
    good.p.seq_q = ESQ, good.p.heads_q = EHQ, good.p.dtype = SATTN_F32;
    good.q = q, good.out = out0, good.lse = lse0;
    tu_check(call_attend(&good) == SATTN_OK, "errors: valid attend (%s)", sattn_last_error());
    good.out = out, good.lse = lse;
    const size_t nout = EB * ESQ * EHQ * EDV, nl = EB * EHQ * ESQ;

    /* the cache is untouched: a valid attend gives the same bits as before */
    #define CACHE_UNCHANGED(what)                                                                    \
        do {                                                                                       \
            tu_check(sattn_kvcache_length(c) == ET, "%s: length changed", what);                  \
            tu_check(call_attend(&good) == SATTN_OK && memcmp(out, out0, nout * 4) == 0 &&        \
                         memcmp(lse, lse0, nl * 4) == 0,                                           \
                     "%s: the cache changed", what);                                               \
        } while (0)

    /* ---- attend ---- */
    for (int e = 0;; e++) {
        attend_call a = good;
        const char *field = NULL;
        switch (e) {
        case 0: field = "cache", a.cache = NULL; break;
        case 1: field = "params", a.null_p = 1; break;
        case 2: field = "seq_kv", a.p.seq_kv = ET; break;
        case 3: field = "k_stride", a.p.k_stride[1] = ED; break;
        case 4: field = "v_stride", a.p.v_stride[2] = 1; break;
        case 5: field = "causal", a.p.causal = SATTN_CAUSAL_BOTTOM_RIGHT; break;
        case 6: field = "window_left", a.p.window_left = 2; break;
        case 7: field = "window_right", a.p.window_right = 1; break;
        case 8: field = "seqlens_q", a.p.seqlens_q = lens; break;
        case 9: field = "seqlens_kv", a.p.seqlens_kv = lens; break;
        case 10: field = "cu_seqlens_q", a.p.cu_seqlens_q = lens; break;
        case 11: field = "cu_seqlens_kv", a.p.cu_seqlens_kv = lens; break;
        case 12: field = "bias", a.p.bias = k; break;
        case 13: field = "bias_stride", a.p.bias_stride[3] = 1; break;
        case 14: field = "mask", a.p.mask = maskb; break;
        case 15: field = "mask_stride", a.p.mask_stride[0] = 1; break;
        case 16: field = "dropout_p", a.p.dropout_p = 0.1f; break;
        case 17: field = "seed", a.p.seed = 42; break;
        case 18: field = "dtype", a.p.dtype = SATTN_F16; break;
        case 19: field = "batch", a.p.batch = EB + 1; break;
        case 20: field = "heads_kv", a.p.heads_kv = 1; break;
        case 21: field = "head_dim", a.p.head_dim = ED + 1; break;
        case 22: field = "head_dim_v", a.p.head_dim_v = ED; break;
        case 23: field = "heads_q", a.p.heads_q = 3; break;
        case 24: field = "heads_q", a.p.heads_q = 0; break;
        case 25: field = "seq_q", a.p.seq_q = 0; break;
        case 26: field = "seq_q", a.p.seq_q = ET + 1; break;
        case 27: field = "seq_q", a.p.seq_q = -1; break;
        case 28: field = "scale", a.p.scale = NAN; break;
        case 29: field = "softcap", a.p.softcap = -1.0f; break;
        case 30: field = "alibi_slopes", a.p.alibi_slopes = slopes_nan; break;
        case 31: field = "q_stride", a.p.q_stride[0] = -1; break;
        case 32: field = "o_stride", a.p.o_stride[0] = 1, a.p.o_stride[1] = 1, a.p.o_stride[2] = 1; break;
        case 33: field = "q", a.q = NULL; break;
        case 34: field = "out", a.out = NULL; break;
        case 35: field = "dtype", a.p.dtype = (sattn_dtype)9; break;
        default: break;
        }
        if (!field) break;
        char what[64];
        snprintf(what, sizeof what, "attend: bad %s (%d)", field, e);
        memset(out, TU_SENTINEL, sizeof out);
        memset(lse, TU_SENTINEL, sizeof lse);
        expect_fail(call_attend(&a), SATTN_ERR_INVALID, field, what);
        int untouched = 1;
        for (size_t x = 0; x < sizeof out; x++) untouched &= ((unsigned char *)out)[x] == TU_SENTINEL;
        for (size_t x = 0; x < sizeof lse; x++) untouched &= ((unsigned char *)lse)[x] == TU_SENTINEL;
        tu_check(untouched, "%s: an output was written", what);
        CACHE_UNCHANGED(what);
    }

    /* every shape field given as the cache's is fine, and so is lse NULL */
    {
        attend_call a = good;
        a.p.batch = EB, a.p.heads_kv = EHKV, a.p.head_dim = ED, a.p.head_dim_v = EDV;
        tu_check(call_attend(&a) == SATTN_OK && memcmp(out, out0, nout * 4) == 0, "shape fields given");
        a.lse = NULL;
        tu_check(call_attend(&a) == SATTN_OK && memcmp(out, out0, nout * 4) == 0, "lse NULL");
    }

    /* ---- append ---- */
    for (int e = 0;; e++) {
        sattn_kvcache *ac = c;
        int64_t n = 1, ks[3] = {0, 0, 0}, vs[3] = {0, 0, 0};
        const float *kp = k, *vp = v;
        const char *field = NULL;
        switch (e) {
        case 0: field = "cache", ac = NULL; break;
        case 1: field = "n", n = 0; break;
        case 2: field = "n", n = -3; break;
        case 3: field = "n", n = (int64_t)1 << 40; break;
        case 4: field = "k", kp = NULL; break;
        case 5: field = "v", vp = NULL; break;
        case 6: field = "k_stride", ks[0] = 1, ks[1] = -ED, ks[2] = 1; break;
        case 7: field = "v_stride", vs[2] = -1; break;
        default: break;
        }
        if (!field) break;
        char what[64];
        snprintf(what, sizeof what, "append: bad %s (%d)", field, e);
        expect_fail(sattn_kvcache_append(ac, n, kp, ks, vp, vs), SATTN_ERR_INVALID, field, what);
        CACHE_UNCHANGED(what);
    }
    #undef CACHE_UNCHANGED

    /* an empty cache, and the window's seq_q bound */
    sattn_kvcache_reset(c);
    {
        attend_call a = good;
        a.p.seq_q = 1;
        memset(out, TU_SENTINEL, sizeof out);
        expect_fail(call_attend(&a), SATTN_ERR_INVALID, "seq_q", "attend to an empty cache");
        tu_check(((unsigned char *)out)[0] == TU_SENTINEL, "empty cache: out written");
    }
    sattn_kvcache_free(c);
    {
        sattn_kvcache_config wc = {EB, EHKV, ED, EDV, SATTN_F32, 0, 0, 4};
        if (tu_check(sattn_kvcache_create(&c, &wc) == SATTN_OK, "window cache")) {
            attend_call a = good;
            a.cache = c;
            tu_check(sattn_kvcache_append(c, 3, k, NULL, v, NULL) == SATTN_OK, "window append 3");
            tu_check(sattn_kvcache_append(c, 2, k, NULL, v, NULL) == SATTN_OK, "window append 2");
            a.p.seq_q = 2;
            tu_check(call_attend(&a) == SATTN_OK, "window: seq_q = the last append's 2");
            a.p.seq_q = 3;
            memset(out, TU_SENTINEL, sizeof out);
            expect_fail(call_attend(&a), SATTN_ERR_INVALID, "seq_q", "window: seq_q over the last append");
            tu_check(((unsigned char *)out)[0] == TU_SENTINEL, "window seq_q: out written");
            sattn_kvcache_free(c);
        }
    }
}

int main(void)
{
    tu_begin();
    printf("decoding against one forward (errors as a fraction of the tolerance):\n");
    test_decode();
    test_reset_reuse();
    test_lifetime();
    test_capacity();
    test_errors();
    return tu_summary("test_kvcache");
}
