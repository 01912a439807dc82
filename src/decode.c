/* The forward for few query rows (decode: one new token against a long KV cache):
 * flash-decoding. When the query rows of a kv head's group (group x seq_q) fit one
 * block, the query heads sharing a kv head are stacked into one tile, so K and V are
 * read once per group, in place where the kernels can read them as stored. The keys
 * are cut into chunks whose size depends on the shape only, never on the thread count;
 * each (group, chunk) is one work item, and the chunks' partial results are merged in a
 * fixed order through their log-sum-exp, so the bits do not depend on the thread count.
 *
 * How K and V are read is chosen once per call (decode_plan); a work item then walks
 * its keys in steps: load the queries; for each tile, either a span of fully visible
 * tiles (all of its K, then all of its V) or one tile (scores, score rules, softmax,
 * dropout, values); then finish the rows or keep the partial result for the merge.
 * Measurements behind each choice: BENCHMARKS.md, "The decode path". */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "sattn_internal.h"

#define FEW_ROWS 8     /* up to this many rows: dot products against K as stored */
#define SPLIT_ITEMS 16 /* work items per call: chunks of keys x groups */
#define TOUCH_KEYS 8   /* K and V rows read in groups of this many, each group first read whole */
#define PREFETCH_TILES 2 /* how far ahead rows apart (BSHD) are asked for */
#define SPAN_KEYS 2048 /* the longest span of fully visible keys read as one */

/* ---- the plan: how this call reads K and V ---- */

enum {
    K_PANEL,    /* Kᵀ loaded into a panel, the register-blocked product (more than FEW_ROWS rows) */
    K_IN_PLACE, /* dot products against K as stored (f32, or 16-bit converted in the kernel) */
    K_LOADED,   /* K rows converted into f32 first, then dot products (strides past an int) */
};

typedef struct decode_plan {
    int k_form;     /* K_* */
    int v_in_place; /* V read as stored where no exact product is needed; else loaded into f32 */
    int bf16;       /* SATTN__BF16_*: the form of the table for bf16 K and V, or PLAIN */
    int spans;      /* runs of fully visible tiles read as spans (contiguous rows, no score rule) */
    int touch_k;    /* contiguous K rows read whole, TOUCH_KEYS at a time, before their dot products */
    int touch_v;    /* the same for V */
    int prefetch_k; /* K rows apart: asked for PREFETCH_TILES tiles ahead */
    int prefetch_v;
} decode_plan;

static decode_plan plan_for(const sattn__problem *pr, int64_t rows)
{
    const sattn__kernels *kt = pr->kt;
    const int64_t d = pr->head_dim, dv = pr->head_dim_v;
    /* the kernels take int row strides */
    const int in_place = pr->ks[1] <= INT32_MAX && pr->vs[1] <= INT32_MAX;
    const int few = rows <= FEW_ROWS;
    const int k_rows = pr->ks[1] == d, v_rows = pr->vs[1] == dv; /* contiguous rows */
    decode_plan pl;
    pl.k_form = !few ? K_PANEL : in_place ? K_IN_PLACE : K_LOADED;
    pl.v_in_place = in_place;
    pl.bf16 = SATTN__BF16_PLAIN;
    if (few && in_place && pr->dtype == SATTN_BF16 && d % 32 == 0 && dv % 32 == 0) pl.bf16 = kt->decode_bf16;
    pl.spans = few && in_place && k_rows && v_rows && !pr->has_score_mods && pr->dropout_p == 0;
    /* touching pays for f32 rows and the bf16 dot-product form, not for the kernels that
       convert 16-bit K as they read it */
    pl.touch_k = k_rows && (pr->dtype == SATTN_F32 || pl.bf16 == SATTN__BF16_DOT);
    pl.touch_v = v_rows;
    /* rows apart are not followed by the hardware prefetcher; contiguous rows are */
    pl.prefetch_k = !k_rows;
    pl.prefetch_v = !v_rows;
    return pl;
}

/* ---- per-thread scratch ---- */

typedef struct dec_scratch {
    float *q;     /* (rows, head_dim)       the stacked queries, times scale (pair order: bf16 forms) */
    uint16_t *qh; /* (rows, head_dim)       the queries as stored, for the bf16 dot-product form */
    float *s;     /* (rows, BK)             one tile's scores, then probabilities */
    float *o;     /* (rows, head_dim_v)     unnormalised output accumulator */
    float *mx;    /* (rows)                 running row max */
    float *sum;   /* (rows)                 running row sum of exp(s - mx) */
    float *span;  /* (rows, SPAN_KEYS)      a span's scores; few rows only */
    float *kt;    /* (head_dim, BK)         a loaded Kᵀ panel or K rows */
    float *v;     /* (BK, head_dim_v)       loaded values */
    float *z;     /* (rows, BK)             dropout keep factors */
} dec_scratch;

/* The buffers read and written on every tile come first and sit together: placed a
   block's size apart, on the same cache sets, a cold step was slower. */
static size_t scratch_layout(const sattn__problem *pr, size_t rows, float *base, dec_scratch *w)
{
    size_t d = (size_t)pr->head_dim, dv = (size_t)pr->head_dim_v, off = 0;
    const int few = rows <= FEW_ROWS;
    w->q = sattn__carve(base, &off, rows * d);
    w->s = sattn__carve(base, &off, rows * SATTN__BK);
    w->o = sattn__carve(base, &off, rows * dv);
    w->mx = sattn__carve(base, &off, rows);
    w->sum = sattn__carve(base, &off, rows);
    w->span = few ? sattn__carve(base, &off, rows * SPAN_KEYS) : NULL;
    w->qh = few ? (uint16_t *)sattn__carve(base, &off, (rows * d + 1) / 2) : NULL;
    w->kt = sattn__carve(base, &off, d * SATTN__BK);
    w->v = sattn__carve(base, &off, SATTN__BK * dv);
    w->z = sattn__carve(base, &off, rows * SATTN__BK);
    return off;
}

/* ---- the call ---- */

typedef struct decode_ctx {
    const sattn__problem *pr;
    decode_plan pl;
    const void *q, *k, *v;
    void *out;
    float *lse;
    int64_t chunk_blocks, nchunks, rows; /* rows = group * seq_q: the most rows of an item */
    float *part;                         /* (groups, nchunks, rows, head_dim_v) unnormalised O */
    float *part_mx, *part_sum;           /* (groups, nchunks, rows) */
} decode_ctx;

/* One work item: kv head hk of sequence s, keys [c0, c1). */
typedef struct item {
    sattn__seq s;
    int64_t hk, h0;  /* kv head, first query head of its group */
    int L, rows;     /* query rows per head, stacked rows (group * L) */
    int64_t c0, c1;
} item;

/* Rows of bf16 values as f32 into pair order (back = 0) or out of it (kernels.h). */
static void pair_order(float *x, int rows, int ld, int n, int back)
{
    float t[32];
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < n; c += 32) {
            float *b = x + (int64_t)r * ld + c;
            memcpy(t, b, sizeof t);
            for (int i = 0; i < 16; i++) {
                if (back) b[2 * i] = t[i], b[2 * i + 1] = t[16 + i];
                else b[i] = t[2 * i], b[16 + i] = t[2 * i + 1];
            }
        }
}

/* 1 if some key column of P is 0 in some row while its value row holds NaN or Inf:
   then only the exact product keeps the masked value out. */
static int needs_exact(const float *P, int ldp, int m, int n, const float *V, int64_t ldv, int dv)
{
    for (int j = 0; j < n; j++) {
        int zero = 0;
        for (int r = 0; r < m; r++) zero |= P[(int64_t)r * ldp + j] == 0.0f;
        if (!zero) continue;
        if (sattn__rows_nonfinite(V + j * ldv, dv, 1, dv)) return 1; /* one row: the stride is unused */
    }
    return 0;
}

/* Step 1: the group's query heads stacked into w->q (times scale; pair order for the
   bf16 forms), or as stored into w->qh for the dot-product form (scaled after). */
static void load_queries(const decode_ctx *x, const item *it, const dec_scratch *w)
{
    const sattn__problem *pr = x->pr;
    const int64_t d = pr->head_dim;
    const size_t es = pr->elem_size;
    for (int64_t hl = 0; hl < pr->group; hl++) {
        const char *qp = sattn__at(x->q, sattn__q_elem(&it->s, pr->qs, 0, it->h0 + hl), es);
        if (x->pl.bf16 == SATTN__BF16_DOT)
            for (int i = 0; i < it->L; i++)
                memcpy(w->qh + (hl * it->L + i) * d, qp + i * pr->qs[1] * (int64_t)es, (size_t)d * sizeof(uint16_t));
        else
            sattn__load_rows(pr->kt, w->q + hl * it->L * d, (int)d, qp, pr->qs[1], it->L, (int)d, pr->dtype,
                             pr->scale);
    }
    if (x->pl.bf16 == SATTN__BF16_PAIRS) pair_order(w->q, it->rows, (int)d, (int)d, 0);
}

/* S (rows x nk, row stride lds) = (scale Q)·Kᵀ against nk keys read where they are stored
   (kp), under the plan's K form (not K_PANEL). */
static void scores_in_place(const decode_ctx *x, const dec_scratch *w, int rows, float *S, int lds, const char *kp,
                            int nk)
{
    const sattn__problem *pr = x->pr;
    const sattn__kernels *kt = pr->kt;
    const int d = (int)pr->head_dim, ldk = (int)pr->ks[1];
    const int64_t es = (int64_t)pr->elem_size;
    if (x->pl.bf16 == SATTN__BF16_PAIRS) {
        kt->gemm_nt_bf16p(S, lds, w->q, d, (const uint16_t *)kp, ldk, rows, nk, d);
    } else if (pr->dtype == SATTN_F32 || x->pl.bf16 == SATTN__BF16_DOT) {
        for (int j = 0; j < nk; j += TOUCH_KEYS) {
            int nb = nk - j < TOUCH_KEYS ? nk - j : TOUCH_KEYS;
            const char *kj = kp + j * ldk * es;
            if (x->pl.touch_k) sattn__touch(kj, nb * d * es);
            if (x->pl.bf16 == SATTN__BF16_DOT)
                kt->gemm_nt_bf16dp(S + j, lds, w->qh, d, (const uint16_t *)kj, ldk, rows, nb, d, pr->scale);
            else
                kt->gemm_nt(S + j, lds, w->q, d, (const float *)kj, ldk, rows, nb, d);
        }
    } else {
        kt->gemm_nt_h(S, lds, w->q, d, (const uint16_t *)kp, ldk, rows, nk, d, (int)pr->dtype);
    }
}

/* O += P·V for nk values read where V is stored (vp); exact (f32 V only) keeps NaN or
   Inf in V out where P is 0. TOUCH_KEYS rows at a time, each contiguous group read whole
   first; the kernels add the keys in order, so the groups keep the bits. 16-bit V in
   contiguous rows goes to gemm_h_span where the table prefers it: the same FMAs in the
   same order, the sums kept in registers across the whole span. */
static void values_in_place(const decode_ctx *x, const dec_scratch *w, int rows, const float *P, int lds,
                            const char *vp, int nk, int exact)
{
    const sattn__problem *pr = x->pr;
    const sattn__kernels *kt = pr->kt;
    const int dv = (int)pr->head_dim_v, ldv = (int)pr->vs[1];
    const int64_t es = (int64_t)pr->elem_size;
    const int pairs = x->pl.bf16 != SATTN__BF16_PLAIN;
    if (pr->dtype != SATTN_F32 && kt->span_values && ldv == dv && dv % 64 == 0) {
        kt->gemm_h_span(w->o, dv, P, lds, (const uint16_t *)vp, ldv, rows, dv, nk, (int)pr->dtype, pairs);
        return;
    }
    for (int j = 0; j < nk; j += TOUCH_KEYS) {
        int nb = nk - j < TOUCH_KEYS ? nk - j : TOUCH_KEYS;
        const char *vj = vp + j * ldv * es;
        if (x->pl.touch_v) sattn__touch(vj, nb * dv * es);
        if (pairs)
            kt->gemm_bf16p(w->o, dv, P + j, lds, 1, (const uint16_t *)vj, ldv, rows, dv, nb);
        else if (pr->dtype == SATTN_F32)
            kt->gemm(w->o, dv, P + j, lds, 1, (const float *)vj, ldv, rows, dv, nb, 1, exact);
        else
            kt->gemm_h(w->o, dv, P + j, lds, 1, (const uint16_t *)vj, ldv, rows, dv, nb, 1, (int)pr->dtype);
    }
}

static const char *k_at(const decode_ctx *x, const item *it, int64_t j)
{
    return sattn__at(x->k, sattn__kv_elem(&it->s, x->pr->ks, j, it->hk), x->pr->elem_size);
}
static const char *v_at(const decode_ctx *x, const item *it, int64_t j)
{
    return sattn__at(x->v, sattn__kv_elem(&it->s, x->pr->vs, j, it->hk), x->pr->elem_size);
}
static int tile_keys(const item *it, int64_t j0)
{
    return (int)(it->s.len_kv - j0 < SATTN__BK ? it->s.len_kv - j0 : SATTN__BK);
}

/* Step 2a: fully visible keys [j0, j1) as one span: all of its scores, one softmax step,
   all of its values. */
static void span_step(const decode_ctx *x, const item *it, const dec_scratch *w, int64_t j0, int64_t j1)
{
    const int n = (int)(j1 - j0), dv = (int)x->pr->head_dim_v;
    scores_in_place(x, w, it->rows, w->span, SPAN_KEYS, k_at(x, it, j0), n);
    x->pr->kt->softmax_online(w->span, SPAN_KEYS, it->rows, n, w->mx, w->sum, w->o, dv, dv);
    values_in_place(x, w, it->rows, w->span, SPAN_KEYS, v_at(x, it, j0), n, 0);
}

/* Step 2b: one tile of nk keys from j0, of the given kind. */
static void tile_step(const decode_ctx *x, const item *it, const dec_scratch *w, int64_t j0, int nk,
                      sattn__tile_kind kind)
{
    const sattn__problem *pr = x->pr;
    const sattn__kernels *kt = pr->kt;
    const decode_plan *pl = &x->pl;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v, rows = it->rows;
    const size_t es = pr->elem_size;
    const char *kp = k_at(x, it, j0), *vp = v_at(x, it, j0);

    /* rows apart: ask for a tile ahead */
    const int64_t jn = j0 + PREFETCH_TILES * SATTN__BK;
    if (jn < it->c1) {
        int nn = tile_keys(it, jn);
        if (pl->prefetch_k) sattn__prefetch_rows(k_at(x, it, jn), pr->ks[1] * (int64_t)es, nn, (int64_t)d * (int64_t)es);
        if (pl->prefetch_v)
            sattn__prefetch_rows(v_at(x, it, jn), pr->vs[1] * (int64_t)es, nn, (int64_t)dv * (int64_t)es);
    }

    /* S = (scale Q)·Kᵀ */
    if (pl->k_form == K_PANEL) {
        sattn__load_rows_t(kt, w->kt, SATTN__BK, kp, pr->ks[1], nk, d, pr->dtype);
        kt->gemm(w->s, SATTN__BK, w->q, d, 1, w->kt, SATTN__BK, rows, nk, d, 0, 0);
    } else if (pl->k_form == K_IN_PLACE) {
        scores_in_place(x, w, rows, w->s, SATTN__BK, kp, nk);
    } else {
        sattn__load_rows(kt, w->kt, d, kp, pr->ks[1], nk, d, pr->dtype, 1.0f); /* K rows, not Kᵀ */
        kt->gemm_nt(w->s, SATTN__BK, w->q, d, w->kt, d, rows, nk, d);
    }

    /* only a rule zeroes a weight on purpose: an unmasked tile needs no exact product */
    const int masked = kind == SATTN__TILE_PARTIAL || pr->has_score_mods;
    if (masked)
        for (int64_t hl = 0; hl < pr->group; hl++)
            sattn__tile_scores(pr, &it->s, it->h0 + hl, 0, it->L, j0, nk, kind, w->s + hl * it->L * SATTN__BK,
                               SATTN__BK, NULL);
    kt->softmax_online(w->s, SATTN__BK, rows, nk, w->mx, w->sum, w->o, dv, dv);
    if (pr->dropout_p > 0)
        for (int64_t hl = 0; hl < pr->group; hl++)
            sattn__tile_dropout_apply(pr, &it->s, it->h0 + hl, 0, it->L, j0, nk, w->s + hl * it->L * SATTN__BK,
                                      SATTN__BK, w->z);

    /* O += P·V. A masked tile checks V for NaN or Inf where P has zeros: f32 V in place,
       16-bit V after loading it (into pair order where O is in it). */
    const int f32 = pr->dtype == SATTN_F32;
    if (pl->v_in_place && (f32 || !masked)) {
        const int exact = f32 && masked && needs_exact(w->s, SATTN__BK, rows, nk, (const float *)vp, (int)pr->vs[1], dv);
        values_in_place(x, w, rows, w->s, SATTN__BK, vp, nk, exact);
    } else {
        sattn__load_rows(kt, w->v, dv, vp, pr->vs[1], nk, dv, pr->dtype, 1.0f);
        if (pl->bf16 != SATTN__BF16_PLAIN) pair_order(w->v, nk, dv, dv, 0);
        kt->gemm(w->o, dv, w->s, SATTN__BK, 1, w->v, dv, rows, dv, nk, 1,
                 masked && needs_exact(w->s, SATTN__BK, rows, nk, w->v, dv, dv));
    }
}

/* Step 3: the rows finished (a single chunk) or kept for the merge. */
static void item_end(const decode_ctx *x, const item *it, int64_t g, int64_t ch, const dec_scratch *w)
{
    const sattn__problem *pr = x->pr;
    const int64_t dv = pr->head_dim_v;
    if (x->nchunks == 1) {
        for (int64_t hl = 0; hl < pr->group; hl++)
            sattn__finish_rows(pr, x->out, x->lse, &it->s, it->h0 + hl, 0, it->L, (int)it->s.rows_q,
                               w->o + hl * it->L * dv, w->mx + hl * it->L, w->sum + hl * it->L);
        return;
    }
    const size_t slot = (size_t)(g * x->nchunks + ch) * (size_t)x->rows;
    memcpy(x->part + slot * (size_t)dv, w->o, sizeof(float) * (size_t)it->rows * (size_t)dv);
    memcpy(x->part_mx + slot, w->mx, sizeof(float) * (size_t)it->rows);
    memcpy(x->part_sum + slot, w->sum, sizeof(float) * (size_t)it->rows);
}

static void item_of(const decode_ctx *x, int64_t g, int64_t ch, item *it)
{
    const sattn__problem *pr = x->pr;
    sattn__seq_info(pr, g / pr->heads_kv, &it->s);
    it->hk = g % pr->heads_kv;
    it->h0 = it->hk * pr->group;
    it->L = (int)it->s.len_q;
    it->rows = (int)(pr->group * it->s.len_q);
    it->c0 = ch * x->chunk_blocks * SATTN__BK;
    it->c1 = it->c0 + x->chunk_blocks * SATTN__BK;
    if (it->L > 0) { /* clip the chunk to the keys some row sees */
        int64_t lo, hi, unused;
        sattn__row_range(pr, &it->s, 0, &lo, &unused);
        sattn__row_range(pr, &it->s, it->L - 1, &unused, &hi);
        if (it->c0 < lo / SATTN__BK * SATTN__BK) it->c0 = lo / SATTN__BK * SATTN__BK;
        if (it->c1 > hi) it->c1 = hi;
    }
}

/* Group g (kv head of one sequence) against key chunk ch. */
static void decode_item(const decode_ctx *x, int64_t g, int64_t ch, const dec_scratch *w)
{
    const sattn__problem *pr = x->pr;
    item it;
    item_of(x, g, ch, &it);
    for (int r = 0; r < it.rows; r++) w->mx[r] = -INFINITY, w->sum[r] = 0.0f;
    memset(w->o, 0, sizeof(float) * (size_t)it.rows * (size_t)pr->head_dim_v);
    if (it.L > 0) {
        load_queries(x, &it, w);
        for (int64_t j0 = it.c0; j0 < it.c1;) {
            const int nk = tile_keys(&it, j0);
            sattn__tile_kind kind = sattn__tile_classify(pr, &it.s, 0, it.L, j0, nk);
            if (kind == SATTN__TILE_FULL && x->pl.spans) { /* this tile and the full ones after it */
                int64_t j1 = j0 + nk;
                while (j1 < it.c1 && j1 - j0 < SPAN_KEYS &&
                       sattn__tile_classify(pr, &it.s, 0, it.L, j1, tile_keys(&it, j1)) == SATTN__TILE_FULL)
                    j1 += tile_keys(&it, j1);
                span_step(x, &it, w, j0, j1);
                j0 = j1;
                continue;
            }
            if (kind != SATTN__TILE_EMPTY) tile_step(x, &it, w, j0, nk, kind);
            j0 += nk;
        }
        if (x->pl.bf16 != SATTN__BF16_PLAIN) pair_order(w->o, it.rows, (int)pr->head_dim_v, (int)pr->head_dim_v, 1);
    }
    item_end(x, &it, g, ch, w);
}

/* out = sum_c exp(mx_c - M) O_c / sum_c exp(mx_c - M) sum_c, M = max_c mx_c, chunks in order. */
static void merge_group(const decode_ctx *x, int64_t g, const dec_scratch *w)
{
    const sattn__problem *pr = x->pr;
    const int dv = (int)pr->head_dim_v;
    item it;
    item_of(x, g, 0, &it);
    const size_t base = (size_t)(g * x->nchunks) * (size_t)x->rows;
    for (int r = 0; r < it.rows; r++) {
        float M = -INFINITY, sum = 0.0f;
        for (int64_t ch = 0; ch < x->nchunks; ch++) {
            float m = x->part_mx[base + (size_t)ch * (size_t)x->rows + (size_t)r];
            M = m > M ? m : M;
        }
        float *o = w->o + (size_t)r * (size_t)dv;
        memset(o, 0, sizeof(float) * (size_t)dv);
        if (M != -INFINITY)
            for (int64_t ch = 0; ch < x->nchunks; ch++) {
                size_t at = base + (size_t)ch * (size_t)x->rows + (size_t)r;
                if (x->part_mx[at] == -INFINITY) continue; /* a chunk with nothing visible */
                float f = expf(x->part_mx[at] - M);
                sum += f * x->part_sum[at];
                const float *po = x->part + at * (size_t)dv;
                for (int e = 0; e < dv; e++) o[e] += f * po[e];
            }
        w->mx[r] = M, w->sum[r] = sum;
    }
    for (int64_t hl = 0; hl < pr->group; hl++)
        sattn__finish_rows(pr, x->out, x->lse, &it.s, it.h0 + hl, 0, it.L, (int)it.s.rows_q, w->o + hl * it.L * dv,
                           w->mx + hl * it.L, w->sum + hl * it.L);
}

sattn_status sattn__decode(const sattn__problem *pr, const void *q, const void *k, const void *v, void *out,
                           float *lse, double work)
{
    const int64_t groups = pr->batch * pr->heads_kv;
    const int64_t nkb = (pr->seq_kv + SATTN__BK - 1) / SATTN__BK;
    decode_ctx x = {pr, {0}, q, k, v, out, lse, 8, 1, pr->group * pr->seq_q, NULL, NULL, NULL};
    x.pl = plan_for(pr, x.rows);
    /* about SPLIT_ITEMS work items in all, never chunks of fewer than 8 key blocks: fewer,
       longer items read K and V in longer streams, and 16 keep 16 threads busy */
    if (nkb * groups > SPLIT_ITEMS * 8) x.chunk_blocks = (nkb * groups + SPLIT_ITEMS - 1) / SPLIT_ITEMS;
    x.nchunks = nkb > 0 ? (nkb + x.chunk_blocks - 1) / x.chunk_blocks : 1;
    const int64_t items = groups * x.nchunks;
    if (x.nchunks > 1) {
        size_t n = (size_t)items * (size_t)x.rows;
        size_t bytes = sizeof(float) * n * (size_t)(pr->head_dim_v + 2);
        x.part = malloc(bytes);
        if (!x.part) return sattn__fail_nomem(bytes);
        x.part_mx = x.part + n * (size_t)pr->head_dim_v;
        x.part_sum = x.part_mx + n;
    }
    const int threads = sattn__threads_for(work, items);
    dec_scratch unused;
    size_t stride;
    float *scratch = sattn__scratch_alloc(scratch_layout(pr, (size_t)x.rows, NULL, &unused), threads, &stride);
    if (!scratch) {
        free(x.part);
        return SATTN_ERR_NOMEM;
    }
    sattn__par par;
    sattn__par_begin(&par, threads);
    SATTN__OMP(omp parallel num_threads(threads) if (threads > 1))
    {
        sattn__par_mark mark;
        sattn__par_enter(&par, &mark);
        dec_scratch w;
        scratch_layout(pr, (size_t)x.rows, scratch + (size_t)sattn__thread_id() * stride, &w);
        SATTN__OMP(omp for schedule(dynamic, 1))
        for (int64_t it = 0; it < items; it++) decode_item(&x, it / x.nchunks, it % x.nchunks, &w);
        if (x.nchunks > 1) {
            SATTN__OMP(omp for schedule(static))
            for (int64_t g = 0; g < groups; g++) merge_group(&x, g, &w);
        }
        sattn__par_leave(&par, &mark);
    }
    sattn__par_end(&par);
    sattn__scratch_free(scratch);
    free(x.part);
    return SATTN_OK;
}
