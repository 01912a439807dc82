/* Attention weights on request: the softmax weights the fused forward never stores,
 * recomputed tile by tile from q, k and the forward's lse (as the backward does):
 *
 *     S = (scale Q)·Kᵀ, then softcap, ALiBi, bias and every mask (sattn__tile_scores)
 *     P = exp(S - lse)                      masked scores are -inf, so their P is 0
 *
 * No reduction runs over keys, so every (query block, key block) tile is independent.
 * A work item is one tile of one head, or with average one tile of all heads summed
 * in head order. Each output element is written by one item, whose tiling depends on
 * the shape alone: the bits do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "sattn_internal.h"

/* Per-thread scratch, in floats. */
typedef struct wts_scratch {
    float *q;   /* (BQ, head_dim) query block, pre-multiplied by scale */
    float *kt;  /* (head_dim, BK) key block, transposed */
    float *s;   /* (BQ, BK)       scores, then weights */
    float *acc; /* (BQ, BK)       sum over heads (average) */
} wts_scratch;

/* Lays out one thread's scratch from base (NULL: only measures); returns its floats. */
static size_t wts_scratch_layout(const sattn__problem *pr, float *base, wts_scratch *w)
{
    size_t d = (size_t)pr->head_dim, off = 0;
    w->q = sattn__carve(base, &off, SATTN__BQ * d);
    w->kt = sattn__carve(base, &off, d * SATTN__BK);
    w->s = sattn__carve(base, &off, SATTN__BQ * SATTN__BK);
    w->acc = sattn__carve(base, &off, SATTN__BQ * SATTN__BK);
    return off;
}

static size_t wts_scratch_floats(const sattn__problem *pr)
{
    wts_scratch unused;
    return wts_scratch_layout(pr, NULL, &unused);
}

typedef struct wts_ctx {
    const sattn__problem *pr;
    const sattn__kernels *kt;
    const void *q, *k;
    const float *lse;
    int64_t row0, rows;
    int average;
    float *w; /* (batch, heads_q, rows, seq_kv), or (batch, rows, seq_kv) with average */
} wts_ctx;

/* ---- one tile ---- */

/* w->s[0..mv)[0..nk) = P of query rows i0.. of head h against keys j0.. of sequence s,
   with the key block of kv head hk already in w->kt. */
static void tile_weights(const wts_ctx *c, const sattn__seq *s, int64_t h, int64_t i0, int mv,
                         int64_t j0, int nk, sattn__tile_kind kind, const wts_scratch *w)
{
    const sattn__problem *pr = c->pr;
    const int d = (int)pr->head_dim;
    sattn__load_rows(c->kt, w->q, d, sattn__at(c->q, sattn__q_elem(s, pr->qs, i0, h), pr->elem_size), pr->qs[1],
                     mv, d, pr->dtype, pr->scale);
    c->kt->gemm(w->s, SATTN__BK, w->q, d, 1, w->kt, SATTN__BK, mv, nk, d, 0, 0); /* S = (scale Q)·Kᵀ */
    if (kind == SATTN__TILE_PARTIAL || pr->has_score_mods)
        sattn__tile_scores(pr, s, h, i0, mv, j0, nk, kind, w->s, SATTN__BK, NULL);
    /* the lse of rows i0.. is contiguous in both lse layouts */
    c->kt->softmax_recompute(w->s, SATTN__BK, mv, nk, c->lse + s->lse_row0 + h * s->lse_hstride + i0);
}

/* Loads Kᵀ of keys j0.. (nk) of kv head hk into w->kt. */
static void load_keys(const wts_ctx *c, const sattn__seq *s, int64_t hk, int64_t j0, int nk,
                      const wts_scratch *w)
{
    const sattn__problem *pr = c->pr;
    sattn__load_rows_t(c->kt, w->kt, SATTN__BK, sattn__at(c->k, sattn__kv_elem(s, pr->ks, j0, hk), pr->elem_size),
                       pr->ks[1], nk, (int)pr->head_dim, pr->dtype);
}

/* dst[r][c] (row stride ld) = src[r][c] * f for r < mv, c < nk (src NULL: 0), and 0 on
   the rest of the mq x ncols block. */
static void store_tile(float *dst, int64_t ld, const float *src, float f, int mv, int nk, int mq, int ncols)
{
    for (int r = 0; r < mq; r++) {
        float *o = dst + r * ld;
        int c = 0;
        if (src && r < mv)
            for (; c < nk; c++) o[c] = src[(size_t)r * SATTN__BK + (size_t)c] * f;
        for (; c < ncols; c++) o[c] = 0.0f;
    }
}

/* Output rows qb*BQ.. and columns kb*BK.. of sequence b for query head hg, or for the
   mean over all heads when hg < 0. */
static void weights_item(const wts_ctx *c, int64_t b, int64_t hg, int64_t qb, int64_t kb, const wts_scratch *w)
{
    const sattn__problem *pr = c->pr;
    sattn__seq s;
    sattn__seq_info(pr, b, &s);
    const int64_t r0 = qb * SATTN__BQ, j0 = kb * SATTN__BK, i0 = c->row0 + r0;
    const int mq = (int)(c->rows - r0 < SATTN__BQ ? c->rows - r0 : SATTN__BQ);
    const int ncols = (int)(pr->seq_kv - j0 < SATTN__BK ? pr->seq_kv - j0 : SATTN__BK);
    /* rows at or past len_q and keys at or past len_kv are zeros */
    const int mv = (int)(s.len_q - i0 < mq ? (s.len_q - i0 > 0 ? s.len_q - i0 : 0) : mq);
    const int nk = (int)(s.len_kv - j0 < ncols ? (s.len_kv - j0 > 0 ? s.len_kv - j0 : 0) : ncols);
    sattn__tile_kind kind = SATTN__TILE_EMPTY;
    if (mv > 0 && nk > 0) kind = sattn__tile_classify(pr, &s, i0, mv, j0, nk); /* the same for every head */
    const int64_t ld = pr->seq_kv;

    if (hg >= 0) {
        float *dst = c->w + ((b * pr->heads_q + hg) * c->rows + r0) * ld + j0;
        if (kind != SATTN__TILE_EMPTY) {
            load_keys(c, &s, hg / pr->group, j0, nk, w);
            tile_weights(c, &s, hg, i0, mv, j0, nk, kind, w);
        }
        store_tile(dst, ld, kind != SATTN__TILE_EMPTY ? w->s : NULL, 1.0f, mv, nk, mq, ncols);
        return;
    }

    /* mean over the query heads: summed in head order, then divided */
    float *dst = c->w + (b * c->rows + r0) * ld + j0;
    if (kind == SATTN__TILE_EMPTY) {
        store_tile(dst, ld, NULL, 0.0f, mv, nk, mq, ncols);
        return;
    }
    for (int r = 0; r < mv; r++) memset(w->acc + (size_t)r * SATTN__BK, 0, sizeof(float) * (size_t)nk);
    for (int64_t h = 0; h < pr->heads_q; h++) {
        if (h % pr->group == 0) load_keys(c, &s, h / pr->group, j0, nk, w); /* once per kv head */
        tile_weights(c, &s, h, i0, mv, j0, nk, kind, w);
        for (int r = 0; r < mv; r++) {
            float *a = w->acc + (size_t)r * SATTN__BK;
            const float *p = w->s + (size_t)r * SATTN__BK;
            for (int cc = 0; cc < nk; cc++) a[cc] += p[cc];
        }
    }
    const float inv_heads = 1.0f / (float)pr->heads_q;
    store_tile(dst, ld, w->acc, inv_heads, mv, nk, mq, ncols);
}

/* ---- entry ---- */

sattn_status sattn_attention_weights(const sattn_params *p, const void *q, const void *k, const float *lse,
                                     int64_t row0, int64_t rows, int average, float *w)
{
    sattn__problem pr;
    sattn_status st = sattn__prepare(&pr, p, SATTN__WEIGHTS, q, k, NULL, NULL, lse, NULL, NULL, NULL, NULL);
    if (st != SATTN_OK) return st;
    if (row0 < 0) return sattn__fail("row0 must be >= 0 (got %lld)", (long long)row0);
    if (rows < 1) return sattn__fail("rows must be >= 1 (got %lld)", (long long)rows);
    if (rows > pr.seq_q - row0)
        return sattn__fail("row0 + rows must be <= seq_q = %lld (got row0 = %lld, rows = %lld)",
                           (long long)pr.seq_q, (long long)row0, (long long)rows);
    if (w == NULL && pr.seq_kv > 0) return sattn__fail("w is NULL but seq_kv > 0");

    const int64_t nqb = (rows + SATTN__BQ - 1) / SATTN__BQ;
    const int64_t nkb = (pr.seq_kv + SATTN__BK - 1) / SATTN__BK;
    const int64_t nh = average ? 1 : pr.heads_q;
    const int64_t items = pr.batch * nh * nqb * nkb;
    if (items == 0) return SATTN_OK;

    const double work = 2.0 * (double)pr.batch * (double)pr.heads_q * (double)rows * (double)pr.seq_kv *
                        (double)pr.head_dim;
    const int threads = sattn__threads_for(work, items);
    size_t stride;
    float *scratch = sattn__scratch_alloc(wts_scratch_floats(&pr), threads, &stride);
    if (!scratch) return SATTN_ERR_NOMEM;

    const wts_ctx c = {&pr, pr.kt, q, k, lse, row0, rows, average != 0, w};
    sattn__par par;
    sattn__par_begin(&par, threads);
    SATTN__OMP(omp parallel num_threads(threads) if (threads > 1))
    {
        sattn__par_mark mark;
        sattn__par_enter(&par, &mark);
        wts_scratch ws;
        wts_scratch_layout(&pr, scratch + (size_t)sattn__thread_id() * stride, &ws);
        SATTN__OMP(omp for schedule(dynamic, 1))
        for (int64_t it = 0; it < items; it++) {
            int64_t kb = it % nkb, rest = it / nkb;
            int64_t qb = rest % nqb;
            rest /= nqb;
            int64_t hg = average ? -1 : rest % nh;
            weights_item(&c, rest / nh, hg, qb, kb, &ws);
        }
        sattn__par_leave(&par, &mark);
    }
    sattn__par_end(&par);
    sattn__scratch_free(scratch);
    return SATTN_OK;
}
