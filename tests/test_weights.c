/* test_weights: sattn_attention_weights against an independent computation of the
 * softmax weights.
 *
 * The oracle: the reference forward (double precision, tests/ref) with a one-hot V,
 * head_dim_v = seq_kv and v[b,j,hk,:] = e_j, returns out[b,i,h,:] = P[i,:], the weights
 * of every key, computed in double by code that shares nothing with the library. The
 * library's weights are computed from q, k and the lse of the library's own
 * sattn_forward, as a user would call them.
 *
 *   - every mask kind alone and together: none, causal top-left / bottom-right, window,
 *     bool mask (dense and broadcast), bias (with -inf), ALiBi, softcap, seqlens_q /
 *     seqlens_kv padding, cu_seqlens packed batches, GQA / MQA, dropout (ignored);
 *   - every layout: packed, BSHD, BHSD, padded strides, broadcast batch; f16 / bf16;
 *     odd head dims; odd sizes 1, 7, 63, 65, 257 on seq_q and seq_kv;
 *   - row0 / rows sub-ranges, the head average, rows summing to 1;
 *   - fully masked rows (all 0, never NaN), NaN stored in padding, extreme logits;
 *   - bit-identical results for 1, 2, 3 threads;
 *   - every bad argument: SATTN_ERR_INVALID, a message naming it, w untouched.
 *
 * Tolerances. The weights are f32 values in [0, 1]: w = exp(s - lse), with the score
 * s computed in f32 from the same stored inputs the reference reads (f16 / bf16 inputs
 * are rounded once, on storage, for both) and lse the forward's f32 lse. An error of
 * ds in s and dl in lse gives |dw| = w |ds - dl|. With |q|, |k| <= 1, head_dim <= 65
 * and scores of a few units, ds and dl are a few f32 roundings of numbers below ~20,
 * ~1e-6 at most (measured: 2e-7): TOL_ABS = 1e-5 absolute. At large scores each
 * rounding costs |s| 2^-24 (6e-4 at |s| = 1e4), so the bound adds 4 |lse| 2^-24 w
 * (lse is the size of the leading scores): negligible at ordinary scores, it covers
 * the extreme-logit cases. The same bound holds for every dtype: the math is f32.
 * Where the reference weight is exactly 0 (a masked key, a padding row or key, a
 * fully masked row), the library's must be exactly 0.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define TOL_ABS 1e-5
#define TOL_LSE (4.0 * 0x1p-24)

/* Largest errors seen, for the summary: per dtype, and the extreme-logit cases apart. */
static double g_max_abs[4], g_worst[4], g_max_sum_err[2];
static int g_extreme; /* the cases running are the extreme-logit ones */
static long g_masked_rows, g_compared;

/* ---- the oracle ---- */

typedef struct {
    const tu_case *c;
    float *lse;   /* the library forward's lse */
    double *rw;   /* reference weights: packed (q rows, heads_q, seq_kv), q rows as in out */
    double *rlse; /* reference lse, in the library's lse layout */
} oracle;

/* Row of query i of sequence b on the packed seq axis of the reference output. */
static int64_t q_row(const sattn_params *p, int64_t b, int64_t i)
{
    return p->cu_seqlens_q ? (int64_t)p->cu_seqlens_q[b] + i : b * p->seq_q + i;
}

static int64_t kv_row(const sattn_params *p, int64_t b, int64_t j)
{
    return p->cu_seqlens_kv ? (int64_t)p->cu_seqlens_kv[b] + j : b * p->seq_kv + j;
}

/* Runs the library forward for its lse and the reference forward with a one-hot V. */
static int oracle_init(oracle *o, const tu_case *c, const char *label)
{
    const sattn_params *p = &c->p;
    size_t es = (size_t)sattn_ref_dtype_size(p->dtype);
    memset(o, 0, sizeof *o);
    o->c = c;
    o->lse = tu_alloc_sentinel((size_t)(c->nlse + 1) * sizeof(float));
    void *out = tu_alloc_sentinel((size_t)(c->to.count + 1) * es);
    sattn_status st = sattn_forward(p, c->q, c->k, c->v, out, o->lse);
    free(out);
    if (!tu_check(st == SATTN_OK, "%s: sattn_forward returned %d (%s)", label, (int)st, sattn_last_error()))
        return 0;

    const int64_t H = p->heads_q, S = p->seq_kv, hkv = sattn_ref_heads_kv(p);
    const int64_t nq = p->cu_seqlens_q ? p->cu_seqlens_q[p->batch] : p->batch * p->seq_q;
    const int64_t nk = p->cu_seqlens_kv ? p->cu_seqlens_kv[p->batch] : p->batch * p->seq_kv;
    o->rw = tu_alloc_f64(nq * H * S);
    o->rlse = tu_alloc_f64(c->nlse);
    if (S == 0)
        return 1;

    /* V = one-hot over the keys, packed (kv rows, heads_kv, seq_kv): out = P */
    sattn_params pr = *p;
    pr.head_dim_v = S;
    memset(pr.v_stride, 0, sizeof pr.v_stride);
    memset(pr.o_stride, 0, sizeof pr.o_stride);
    pr.dropout_p = 0.0f; /* the weights are those before dropout */
    void *v1 = calloc((size_t)(nk * hkv * S) + 1, es); /* 0 has all-zero bits in every dtype */
    if (!v1)
        abort();
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t j = 0; j < sattn_ref_rows_kv(p, b); j++)
            for (int64_t hk = 0; hk < hkv; hk++)
                sattn_ref_store(p->dtype, v1, (kv_row(p, b, j) * hkv + hk) * S + j, 1.0f);
    int rc = sattn_ref_forward(&pr, c->q, c->k, v1, o->rw, o->rlse);
    free(v1);
    return tu_check(rc == 0, "%s: the reference refused the case", label);
}

static void oracle_free(oracle *o)
{
    free(o->lse);
    free(o->rw);
    free(o->rlse);
}

/* Reference P[i][j] of sequence b, head h: 0 for rows past the sequence's rows. */
static double ref_w(const oracle *o, int64_t b, int64_t h, int64_t i, int64_t j)
{
    const sattn_params *p = &o->c->p;
    if (i >= sattn_ref_rows_q(p, b))
        return 0.0;
    return o->rw[(q_row(p, b, i) * p->heads_q + h) * p->seq_kv + j];
}

static double ref_lse(const oracle *o, int64_t b, int64_t h, int64_t i)
{
    const sattn_params *p = &o->c->p;
    if (i >= sattn_ref_rows_q(p, b))
        return -INFINITY;
    return o->rlse[sattn_ref_lse_index(p, b, h, i)];
}

/* The tolerance of one weight (see the top of the file). */
static double allowed_w(double w, double lse)
{
    return TOL_ABS + TOL_LSE * (isfinite(lse) ? fabs(lse) : 0.0) * w;
}

/* ---- one call against the oracle ---- */

/* sattn_attention_weights for rows row0 .. row0+rows-1 against the oracle: every
   element within its tolerance, exact zeros where the reference is 0, no NaN, nothing
   written past the end; without average, every row with a visible key sums to 1.
   Returns the number of fully masked or padding (b, h, row) seen (reference lse -inf). */
static long check_range(const oracle *o, const char *label, int64_t row0, int64_t rows, int average)
{
    const tu_case *c = o->c;
    const sattn_params *p = &c->p;
    const int64_t H = p->heads_q, S = p->seq_kv, nh = average ? 1 : H;
    const int64_t n = p->batch * nh * rows * S;
    float *w = tu_alloc_sentinel((size_t)n * sizeof(float));
    sattn_status st = sattn_attention_weights(p, c->q, c->k, o->lse, row0, rows, average, w);
    if (!tu_check(st == SATTN_OK, "%s: rows %lld+%lld average %d: returned %d (%s)", label, (long long)row0,
                  (long long)rows, average, (int)st, sattn_last_error())) {
        free(w);
        return 0;
    }
    long bad = 0, masked = 0;
    double max_abs = 0.0, worst = 0.0, max_sum_err = 0.0;
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t hg = 0; hg < nh; hg++)
            for (int64_t r = 0; r < rows; r++) {
                const int64_t i = row0 + r;
                const float *wr = w + ((b * nh + hg) * rows + r) * S;
                double sum = 0.0;
                for (int64_t j = 0; j < S; j++) {
                    double ref = 0.0, allowed = 0.0;
                    if (average) {
                        for (int64_t h = 0; h < H; h++) {
                            double x = ref_w(o, b, h, i, j);
                            ref += x;
                            allowed += allowed_w(x, ref_lse(o, b, h, i));
                        }
                        ref /= (double)H;
                        allowed = allowed / (double)H + (double)H * 0x1p-24 * ref; /* the f32 head sum */
                    } else {
                        ref = ref_w(o, b, hg, i, j);
                        allowed = allowed_w(ref, ref_lse(o, b, hg, i));
                    }
                    double lib = wr[j], err = fabs(lib - ref);
                    int ok = isfinite(lib) && err <= allowed && (ref != 0.0 || lib == 0.0);
                    if (isfinite(err) && err > max_abs)
                        max_abs = err;
                    if (isfinite(err) && err / allowed > worst)
                        worst = err / allowed;
                    if (!ok && bad++ < 4)
                        printf("    %s: w[b=%lld,%s=%lld,i=%lld,j=%lld] lib % .9g ref % .9g |err| %.3g allowed %.3g\n",
                               label, (long long)b, average ? "avg" : "h", (long long)hg, (long long)i, (long long)j,
                               lib, ref, err, allowed);
                    sum += lib;
                }
                if (average)
                    continue;
                double lse = ref_lse(o, b, hg, i);
                if (lse == -INFINITY) {
                    masked++;
                    continue;
                }
                /* w = exp(s - lse) with lse the log of the same row's sum: the row sums to
                   1 up to the error of one weight relative to itself */
                double err = fabs(sum - 1.0), lim = TOL_ABS + TOL_LSE * fabs(lse);
                if (err > max_sum_err)
                    max_sum_err = err;
                if (!(err <= lim) && bad++ < 4)
                    printf("    %s: row b=%lld h=%lld i=%lld sums to %.9g, not 1 (allowed %.3g)\n", label,
                           (long long)b, (long long)hg, (long long)i, sum, lim);
            }
    const unsigned char *tail = (const unsigned char *)(w + n);
    int tail_ok = 1;
    for (int x = 0; x < 16; x++)
        tail_ok &= tail[x] == TU_SENTINEL;
    tu_check(tail_ok, "%s: rows %lld+%lld: written past the end of w", label, (long long)row0, (long long)rows);
    tu_check(bad == 0, "%s: rows %lld+%lld average %d: %ld bad; max|err| %.3g, worst err/allowed %.3g", label,
             (long long)row0, (long long)rows, average, bad, max_abs, worst);
    if (bad)
        printf("    in case %s\n", tu_case_str(c));
    int dt = g_extreme ? 3 : (int)p->dtype;
    if (max_abs > g_max_abs[dt])
        g_max_abs[dt] = max_abs;
    if (worst > g_worst[dt])
        g_worst[dt] = worst;
    if (max_sum_err > g_max_sum_err[g_extreme])
        g_max_sum_err[g_extreme] = max_sum_err;
    g_compared += n;
    free(w);
    return masked;
}

/* The whole case: all rows and a few sub-ranges (the last row, one crossing a query
   block boundary, one in the middle), each per head and averaged. Returns the fully
   masked or padding rows seen over all rows, per head. */
static long check_case(const tu_case *c, const char *label)
{
    oracle o;
    long masked = 0;
    const int64_t sq = c->p.seq_q;
    if (oracle_init(&o, c, label) && sq > 0) {
        int64_t ranges[4][2] = {{0, sq}, {sq - 1, 1}, {sq / 3, (sq + 1) / 2}, {0, 0}};
        int nr = 3;
        if (sq > 70)
            ranges[nr][0] = 60, ranges[nr][1] = 10, nr++;
        for (int x = 0; x < nr; x++) {
            long m = check_range(&o, label, ranges[x][0], ranges[x][1], 0);
            if (x == 0)
                masked = m;
            check_range(&o, label, ranges[x][0], ranges[x][1], 1);
        }
    }
    oracle_free(&o);
    g_masked_rows += masked;
    return masked;
}

static long run_spec(const tu_spec *s, const char *label)
{
    tu_case c;
    if (tu_case_init(&c, s) != 0) {
        tu_check(0, "%s: case allocation failed", label);
        return 0;
    }
    long m = check_case(&c, label);
    tu_case_free(&c);
    return m;
}

/* ---- every mask kind, layout and dtype ---- */

static void test_features(void)
{
    for (int dt = 0; dt < 3; dt++) {
        char label[128];
        tu_spec s;
#define RUN(name)                                                              \
    do {                                                                       \
        s.dtype = (sattn_dtype)dt;                                             \
        snprintf(label, sizeof label, "%s (dtype %d)", name, dt);              \
        run_spec(&s, label);                                                   \
    } while (0)

        s = tu_spec_basic(33, 47, 16), s.heads_q = 2, s.batch = 2;
        RUN("no mask");
        s = tu_spec_basic(70, 90, 8), s.causal = SATTN_CAUSAL_TOP_LEFT;
        RUN("causal top-left, seq_q < seq_kv");
        s = tu_spec_basic(90, 70, 8), s.causal = SATTN_CAUSAL_TOP_LEFT;
        RUN("causal top-left, seq_q > seq_kv");
        s = tu_spec_basic(70, 130, 8), s.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
        RUN("causal bottom-right, seq_q < seq_kv");
        s = tu_spec_basic(100, 70, 8), s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.heads_q = 2;
        RUN("causal bottom-right, seq_q > seq_kv (masked rows)");
        s = tu_spec_basic(80, 150, 8), s.window_left = 20, s.window_right = 5;
        RUN("window left and right");
        s = tu_spec_basic(130, 130, 8), s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.window_left = 40;
        RUN("local causal (bottom-right + window_left)");
        s = tu_spec_basic(66, 200, 8), s.window_right = 3;
        RUN("window right only");
        s = tu_spec_basic(40, 75, 8), s.batch = 2, s.heads_q = 3, s.mask = 1, s.mask_zero = 0.3;
        RUN("bool mask, dense");
        s = tu_spec_basic(40, 75, 8), s.batch = 2, s.heads_q = 3, s.mask = 2, s.mask_zero = 0.4;
        s.data_seed = 7;
        RUN("bool mask, random broadcast axes");
        s = tu_spec_basic(40, 75, 8), s.batch = 2, s.heads_q = 3, s.mask = 3, s.mask_bcast = 0x3, s.mask_zero = 0.3;
        RUN("bool mask broadcast over batch and heads");
        s = tu_spec_basic(40, 75, 8), s.batch = 2, s.heads_q = 2, s.mask = 3, s.mask_bcast = 0x4, s.mask_zero = 0.3;
        RUN("bool mask broadcast over query rows");
        s = tu_spec_basic(40, 75, 8), s.batch = 2, s.heads_q = 2, s.bias = 1, s.bias_neginf = 0.2;
        s.bias_scale = 3.0;
        RUN("bias with -inf entries");
        s = tu_spec_basic(40, 75, 8), s.batch = 2, s.heads_q = 2, s.bias = 2, s.bias_neginf = 0.1;
        s.data_seed = 3;
        RUN("bias, random broadcast axes");
        s = tu_spec_basic(50, 90, 8), s.heads_q = 4, s.alibi = 1;
        RUN("ALiBi");
        s = tu_spec_basic(90, 50, 8), s.heads_q = 4, s.alibi = 1, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
        s.data_seed = 2;
        RUN("ALiBi, bottom-right causal, seq_q > seq_kv");
        s = tu_spec_basic(50, 90, 16), s.heads_q = 2, s.softcap = 2.0f, s.qk_scale = 3.0;
        RUN("softcap");
        s = tu_spec_basic(70, 90, 8), s.batch = 3, s.heads_q = 2, s.seqlens_q = 1, s.seqlens_kv = 1;
        RUN("seqlens_q and seqlens_kv padding");
        s = tu_spec_basic(70, 90, 8), s.batch = 3, s.heads_q = 2, s.seqlens_q = 1, s.seqlens_kv = 1;
        s.nan_pad = 1, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.data_seed = 4;
        RUN("padding holding NaN / Inf");
        s = tu_spec_basic(70, 90, 8), s.batch = 3, s.heads_q = 2, s.cu_q = 1, s.cu_kv = 1;
        s.cu_garbage_stride = 1, s.lq = TU_PADDED, s.lk = TU_PADDED;
        RUN("cu_seqlens packed batch");
        s = tu_spec_basic(70, 90, 8), s.batch = 3, s.heads_q = 2, s.cu_q = 1, s.cu_kv = 1;
        s.seqlens_q = 1, s.seqlens_kv = 1, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.nan_pad = 1, s.data_seed = 5;
        RUN("cu_seqlens + seqlens + causal + NaN padding");
        s = tu_spec_basic(70, 90, 8), s.batch = 2, s.heads_q = 2, s.cu_q = 1;
        RUN("cu_seqlens_q only");
        s = tu_spec_basic(70, 90, 8), s.batch = 2, s.heads_q = 2, s.cu_kv = 1, s.causal = SATTN_CAUSAL_TOP_LEFT;
        RUN("cu_seqlens_kv only");
        s = tu_spec_basic(45, 80, 8), s.heads_q = 6, s.heads_kv = 2, s.causal = SATTN_CAUSAL_TOP_LEFT;
        s.bias = 3, s.bias_bcast = 0x1;
        RUN("GQA 6/2 with a per-head bias");
        s = tu_spec_basic(45, 80, 8), s.heads_q = 4, s.heads_kv = 1, s.mask = 2, s.mask_zero = 0.3;
        RUN("MQA 4/1 with a mask");
        s = tu_spec_basic(60, 70, 16), s.batch = 2, s.heads_q = 2, s.lq = TU_BHSD, s.lk = TU_BHSD;
        RUN("BHSD");
        s = tu_spec_basic(60, 70, 16), s.batch = 2, s.heads_q = 4, s.heads_kv = 2, s.lq = TU_BSHD;
        s.lk = TU_PADDED, s.lv = TU_BHSD, s.lo = TU_PADDED;
        RUN("BSHD q, padded k");
        s = tu_spec_basic(60, 70, 16), s.batch = 2, s.heads_q = 2, s.lq = TU_BCAST_BATCH, s.lk = TU_BCAST_BATCH;
        RUN("batch broadcast q and k");
        s = tu_spec_basic(40, 50, 7), s.heads_q = 2, s.head_dim_v = 5;
        RUN("head_dim 7, head_dim_v 5");
        s = tu_spec_basic(40, 50, 1), s.heads_q = 2;
        RUN("head_dim 1");
        s = tu_spec_basic(40, 50, 65), s.heads_q = 2, s.causal = SATTN_CAUSAL_TOP_LEFT;
        RUN("head_dim 65");
        s = tu_spec_basic(70, 90, 8), s.heads_q = 2, s.dropout_p = 0.3f, s.seed = 99, s.causal = SATTN_CAUSAL_TOP_LEFT;
        RUN("dropout in the forward (weights are before dropout)");
        s = tu_spec_basic(5, 200, 16), s.heads_q = 4, s.heads_kv = 2;
        RUN("few query rows (the forward's split path)");
        s = tu_spec_basic(1, 300, 16), s.heads_q = 2, s.alibi = 1, s.bias = 1;
        RUN("one query row (decode)");
        s = tu_spec_basic(130, 160, 8), s.batch = 2, s.heads_q = 4, s.heads_kv = 2, s.lq = TU_PADDED;
        s.lk = TU_BHSD, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.window_left = 50, s.window_right = 7;
        s.seqlens_q = 1, s.seqlens_kv = 1, s.mask = 2, s.mask_zero = 0.2, s.bias = 2, s.bias_neginf = 0.05;
        s.alibi = 1, s.softcap = 4.0f, s.data_seed = 11;
        RUN("everything at once");
#undef RUN
    }
}

/* ---- odd sizes ---- */

static void test_sizes(void)
{
    static const int64_t sizes[5] = {1, 7, 63, 65, 257};
    int n = 0;
    for (int a = 0; a < 5; a++)
        for (int bsz = 0; bsz < 5; bsz++, n++) {
            tu_spec s = tu_spec_basic(sizes[a], sizes[bsz], n % 2 ? 8 : 5);
            s.heads_q = 2;
            s.heads_kv = n % 3 == 0 ? 1 : 2;
            s.causal = (sattn_causal)(n % 3);
            s.alibi = n % 4 == 1;
            s.mask = n % 5 == 2 ? 2 : 0, s.mask_zero = 0.2;
            s.dtype = (sattn_dtype)(n % 3);
            s.data_seed = (uint64_t)(100 + n);
            char label[96];
            snprintf(label, sizeof label, "seq_q %lld seq_kv %lld", (long long)sizes[a], (long long)sizes[bsz]);
            run_spec(&s, label);
        }
}

/* ---- fully masked rows ---- */

static void test_masked_rows(void)
{
    struct {
        const char *label;
        tu_spec s;
    } cs[5];
    for (int x = 0; x < 5; x++)
        cs[x].s = tu_spec_basic(20, 30, 8), cs[x].s.batch = 2, cs[x].s.heads_q = 2;
    cs[0].label = "every mask entry 0", cs[0].s.mask = 1, cs[0].s.mask_zero = 1.0;
    cs[1].label = "every bias entry -inf", cs[1].s.bias = 1, cs[1].s.bias_neginf = 1.0;
    cs[2].label = "half the mask rows empty", cs[2].s.mask = 3, cs[2].s.mask_bcast = 0x8;
    cs[2].s.mask_zero = 0.5;
    cs[3].label = "bottom-right causal, seq_q > seq_kv", cs[3].s.seq_q = 50;
    cs[3].s.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
    cs[4].label = "window_right 1, seq_q > seq_kv", cs[4].s.seq_q = 40, cs[4].s.seq_kv = 10;
    cs[4].s.window_right = 1;
    for (int x = 0; x < 5; x++) {
        long m = run_spec(&cs[x].s, cs[x].label);
        tu_check(m > 0, "%s: the case was meant to have fully masked rows (found none)", cs[x].label);
    }

    /* seqlens_kv = 0 for every sequence: every row masked, w all 0 */
    tu_spec s = tu_spec_basic(20, 30, 8);
    s.batch = 2;
    tu_case c;
    tu_case_init(&c, &s);
    int32_t zeros[2] = {0, 0};
    c.p.seqlens_kv = zeros;
    long m = check_case(&c, "seqlens_kv = 0");
    tu_check(m == 2 * 20, "seqlens_kv = 0: %ld masked rows, expected 40", m);
    tu_case_free(&c);
}

/* ---- extreme logits ---- */

/* q and k hold small integers (and 100), the scale is a power of two and the bias holds
   integers, so every score is exact in f32 and the reference sees the same scores; the
   lse (~1e4) is where f32 rounds, and the tolerance's |lse| term covers it. */
static void extreme_case(const char *label, int via_bias, double sign, sattn_dtype dt)
{
    tu_case c;
    tu_extreme_case_init(&c, via_bias, sign, dt);
    check_case(&c, label);
    tu_case_free(&c);
}

static void test_extreme_logits(void)
{
    g_extreme = 1;
    tu_for_each_extreme_case(extreme_case);
    g_extreme = 0;
}

/* ---- thread count ---- */

static void test_threads(void)
{
    tu_spec s = tu_spec_basic(150, 200, 16);
    s.batch = 2, s.heads_q = 4, s.heads_kv = 2;
    s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.window_left = 90;
    s.bias = 2, s.mask = 2, s.mask_zero = 0.1, s.alibi = 1, s.softcap = 5.0f, s.seqlens_q = 1;
    tu_case c;
    tu_case_init(&c, &s);
    float *lse = tu_alloc_sentinel((size_t)(c.nlse + 1) * sizeof(float));
    void *out = tu_alloc_sentinel((size_t)(c.to.count + 1) * sizeof(float));
    sattn_status st = sattn_forward(&c.p, c.q, c.k, c.v, out, lse);
    tu_check(st == SATTN_OK, "threads: forward returned %d (%s)", (int)st, sattn_last_error());
    const int64_t row0 = 10, rows = 130;
    const size_t n = (size_t)(s.batch * s.heads_q * rows * s.seq_kv);
    int saved = sattn_get_num_threads();
    for (int average = 0; average < 2; average++) {
        float *first = NULL;
        static const int counts[4] = {1, 2, 3, 3}; /* the last: a repeated call */
        for (int t = 0; t < 4; t++) {
            float *w = tu_alloc_sentinel(n * sizeof(float));
            sattn_set_num_threads(counts[t]);
            st = sattn_attention_weights(&c.p, c.q, c.k, lse, row0, rows, average, w);
            tu_check(st == SATTN_OK, "threads %d: returned %d (%s)", counts[t], (int)st, sattn_last_error());
            size_t m = average ? n / (size_t)s.heads_q : n;
            if (!first)
                first = w;
            else {
                tu_check(memcmp(first, w, m * sizeof(float)) == 0,
                         "threads %d, average %d: bits differ from 1 thread", counts[t], average);
                free(w);
            }
        }
        free(first);
    }
    sattn_set_num_threads(saved);
    free(lse);
    free(out);
    tu_case_free(&c);
}

/* ---- errors ---- */

/* The call fails with SATTN_ERR_INVALID, a message containing name, and w untouched. */
static void expect_invalid(const char *what, const char *name, const sattn_params *p, const void *q,
                           const void *k, const float *lse, int64_t row0, int64_t rows, int average,
                           float *w, size_t wbytes)
{
    if (w)
        memset(w, TU_SENTINEL, wbytes);
    sattn_status st = sattn_attention_weights(p, q, k, lse, row0, rows, average, w);
    const char *msg = sattn_last_error();
    tu_check(st == SATTN_ERR_INVALID, "%s: returned %d, expected SATTN_ERR_INVALID", what, (int)st);
    tu_check(strstr(msg, name) != NULL, "%s: message \"%s\" does not name %s", what, msg, name);
    int untouched = 1;
    for (size_t x = 0; w && x < wbytes; x++)
        untouched &= ((const unsigned char *)w)[x] == TU_SENTINEL;
    tu_check(untouched, "%s: w was written", what);
}

static void test_errors(void)
{
    tu_spec s = tu_spec_basic(10, 12, 8);
    s.batch = 2, s.heads_q = 2, s.bias = 1, s.alibi = 1, s.seqlens_q = 1;
    tu_case c;
    tu_case_init(&c, &s);
    float *lse = tu_alloc_sentinel((size_t)(c.nlse + 1) * sizeof(float));
    void *out = tu_alloc_sentinel((size_t)(c.to.count + 1) * sizeof(float));
    tu_check(sattn_forward(&c.p, c.q, c.k, c.v, out, lse) == SATTN_OK, "errors: forward failed");
    const size_t wbytes = sizeof(float) * (size_t)(2 * 2 * 10 * 12);
    float *w = tu_alloc_sentinel(wbytes);
    const sattn_params *p = &c.p;
    sattn_params b;

    tu_check(sattn_attention_weights(p, c.q, c.k, lse, 0, 10, 0, w) == SATTN_OK, "errors: the valid call fails (%s)",
             sattn_last_error());
    expect_invalid("NULL params", "params is NULL", NULL, c.q, c.k, lse, 0, 10, 0, w, wbytes);
    expect_invalid("NULL q", "q is NULL", p, NULL, c.k, lse, 0, 10, 0, w, wbytes);
    expect_invalid("NULL k", "k is NULL", p, c.q, NULL, lse, 0, 10, 0, w, wbytes);
    expect_invalid("NULL lse", "lse is NULL", p, c.q, c.k, NULL, 0, 10, 0, w, wbytes);
    expect_invalid("NULL w", "w is NULL", p, c.q, c.k, lse, 0, 10, 0, NULL, 0);
    expect_invalid("row0 < 0", "row0", p, c.q, c.k, lse, -1, 5, 0, w, wbytes);
    expect_invalid("rows = 0", "rows", p, c.q, c.k, lse, 0, 0, 0, w, wbytes);
    expect_invalid("rows < 0", "rows", p, c.q, c.k, lse, 2, -3, 1, w, wbytes);
    expect_invalid("row0 + rows > seq_q", "seq_q", p, c.q, c.k, lse, 4, 7, 0, w, wbytes);
    expect_invalid("row0 = seq_q", "row0", p, c.q, c.k, lse, 10, 1, 1, w, wbytes);

    b = *p, b.batch = 0;
    expect_invalid("batch 0", "batch", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    b = *p, b.seq_kv = -1;
    expect_invalid("seq_kv < 0", "seq_kv", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    b = *p, b.heads_kv = 3;
    expect_invalid("heads_q not a multiple of heads_kv", "heads_kv", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    b = *p, b.head_dim = 0;
    expect_invalid("head_dim 0", "head_dim", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    b = *p, b.dtype = (sattn_dtype)7;
    expect_invalid("bad dtype", "dtype", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    b = *p, b.scale = NAN;
    expect_invalid("NaN scale", "scale", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    b = *p, b.softcap = -1.0f;
    expect_invalid("negative softcap", "softcap", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    b = *p, b.dropout_p = 1.0f;
    expect_invalid("dropout_p 1", "dropout_p", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    b = *p, b.causal = (sattn_causal)5;
    expect_invalid("bad causal", "causal", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    b = *p, b.q_stride[1] = -4;
    expect_invalid("negative q stride", "q_stride", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    b = *p, b.k_stride[2] = -1;
    expect_invalid("negative k stride", "k_stride", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    b = *p, b.bias_stride[3] = -1;
    expect_invalid("negative bias stride", "bias_stride", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    uint8_t mask1 = 1;
    b = *p, b.mask = &mask1, b.mask_stride[0] = -2;
    expect_invalid("negative mask stride", "mask_stride", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    float slopes[2] = {0.5f, NAN};
    b = *p, b.alibi_slopes = slopes;
    expect_invalid("NaN ALiBi slope", "alibi_slopes", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    int32_t bad_len[2] = {3, 11};
    b = *p, b.seqlens_q = bad_len;
    expect_invalid("seqlens_q over seq_q", "seqlens_q", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    int32_t bad_kv[2] = {-1, 4};
    b = *p, b.seqlens_kv = bad_kv;
    expect_invalid("negative seqlens_kv", "seqlens_kv", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    int32_t cu_dec[3] = {0, 6, 4};
    b = *p, b.cu_seqlens_q = cu_dec;
    expect_invalid("decreasing cu_seqlens_q", "cu_seqlens_q", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);
    int32_t cu_long[3] = {0, 13, 20};
    b = *p, b.cu_seqlens_kv = cu_long;
    expect_invalid("cu_seqlens_kv length over seq_kv", "cu_seqlens_kv", &b, c.q, c.k, lse, 0, 1, 0, w, wbytes);

    /* valid corner calls: nothing to attend (seq_kv = 0) writes nothing and needs no w;
       a packed batch of empty sequences needs no q or lse and gives zeros; v and out
       play no part, so an o_stride that would overlap itself is no error */
    b = *p, b.seq_kv = 0, b.seqlens_kv = NULL, b.bias = NULL;
    tu_check(sattn_attention_weights(&b, c.q, NULL, lse, 0, 10, 0, NULL) == SATTN_OK,
             "seq_kv = 0 with w NULL fails (%s)", sattn_last_error());
    int32_t cu_empty[3] = {0, 0, 0};
    b = *p, b.cu_seqlens_q = cu_empty, b.seqlens_q = NULL;
    memset(w, TU_SENTINEL, wbytes);
    tu_check(sattn_attention_weights(&b, NULL, c.k, NULL, 0, 10, 0, w) == SATTN_OK,
             "empty packed batch with q and lse NULL fails (%s)", sattn_last_error());
    int zero = 1;
    for (size_t x = 0; x < wbytes / sizeof(float); x++)
        zero &= w[x] == 0.0f;
    tu_check(zero, "empty packed batch: w is not all 0");
    b = *p, b.o_stride[0] = b.o_stride[1] = b.o_stride[2] = 1;
    tu_check(sattn_attention_weights(&b, c.q, c.k, lse, 0, 10, 1, w) == SATTN_OK,
             "an unused o_stride is rejected (%s)", sattn_last_error());

    free(w);
    free(lse);
    free(out);
    tu_case_free(&c);
}

int main(void)
{
    tu_begin();
    test_errors();
    test_features();
    test_sizes();
    test_masked_rows();
    test_extreme_logits();
    test_threads();
    static const char *names[4] = {"f32", "f16", "bf16", "extreme logits, all dtypes"};
    for (int dt = 0; dt < 4; dt++)
        printf("weights, %s: max|err| %.3g, worst err/allowed %.3g (allowed %.0e + 4 |lse| 2^-24 w)\n", names[dt],
               g_max_abs[dt], g_worst[dt], TOL_ABS);
    printf("largest |row sum - 1| %.3g (extreme logits %.3g); %ld weights compared; %ld fully masked or padding"
           " rows\n", g_max_sum_err[0], g_max_sum_err[1], g_compared, g_masked_rows);
    return tu_summary("test_weights");
}
