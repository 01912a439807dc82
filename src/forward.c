/* Fused attention forward: query blocks x key blocks with an online softmax
 * (FlashAttention), never a seq_q x seq_kv matrix. Each (batch, head, query block)
 * is one work item owned by one thread, so results do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "sattn_internal.h"

/* Per-thread scratch, in floats. */
typedef struct fwd_scratch {
    float *q;   /* (BQ, head_dim)   the query block, pre-multiplied by scale */
    float *k;   /* (BK, head_dim)   one key block */
    float *v;   /* (BK, head_dim_v) one value block */
    float *s;   /* (BQ, BK)         scores, then probabilities */
    float *z;   /* (BQ, BK)         dropout keep factors */
    float *o;   /* (BQ, head_dim_v) unnormalised output accumulator */
    float *mx;  /* (BQ)             running row max */
    float *sum; /* (BQ)             running row sum of exp(s - mx) */
} fwd_scratch;

static size_t fwd_scratch_floats(const sattn__problem *pr)
{
    size_t d = (size_t)pr->head_dim, dv = (size_t)pr->head_dim_v;
    return SATTN__BQ * d + SATTN__BK * d + SATTN__BK * dv + 2 * SATTN__BQ * SATTN__BK +
           SATTN__BQ * dv + 2 * SATTN__BQ + 8 * 16; /* 16-float alignment slack per piece */
}

static float *carve(float **at, size_t n)
{
    float *r = *at;
    *at += (n + 15) & ~(size_t)15;
    return r;
}

static fwd_scratch fwd_scratch_carve(const sattn__problem *pr, float *base)
{
    size_t d = (size_t)pr->head_dim, dv = (size_t)pr->head_dim_v;
    fwd_scratch w;
    w.q = carve(&base, SATTN__BQ * d);
    w.k = carve(&base, SATTN__BK * d);
    w.v = carve(&base, SATTN__BK * dv);
    w.s = carve(&base, SATTN__BQ * SATTN__BK);
    w.z = carve(&base, SATTN__BQ * SATTN__BK);
    w.o = carve(&base, SATTN__BQ * dv);
    w.mx = carve(&base, SATTN__BQ);
    w.sum = carve(&base, SATTN__BQ);
    return w;
}

/* out rows i0 .. i0+mq-1 of head h of sequence s, and their lse. */
static void forward_block(const sattn__problem *pr, const sattn__kernels *kt, const sattn__seq *s,
                          int64_t h, int64_t i0, int mq, const void *q, const void *k,
                          const void *v, void *out, float *lse, const fwd_scratch *w)
{
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v;
    const int64_t hk = h / pr->group;
    const size_t es = pr->elem_size;
    /* rows at or past len_q are padding: zeros, lse = -inf */
    int mv = (int)(s->len_q - i0 < mq ? (s->len_q - i0 > 0 ? s->len_q - i0 : 0) : mq);

    for (int r = 0; r < mv; r++) w->mx[r] = -INFINITY, w->sum[r] = 0.0f;
    memset(w->o, 0, sizeof(float) * (size_t)mv * (size_t)dv);

    if (mv > 0) {
        sattn__load_rows(w->q, d, sattn__at(q, sattn__q_elem(s, pr->qs, i0, h), es), pr->qs[1], mv,
                         d, pr->dtype, pr->scale);
        int64_t lo, hi, unused;
        sattn__row_range(pr, s, i0, &lo, &unused);
        sattn__row_range(pr, s, i0 + mv - 1, &unused, &hi);
        for (int64_t j0 = lo / SATTN__BK * SATTN__BK; j0 < hi; j0 += SATTN__BK) {
            int nk = (int)(s->len_kv - j0 < SATTN__BK ? s->len_kv - j0 : SATTN__BK);
            sattn__tile_kind kind = sattn__tile_classify(pr, s, i0, mv, j0, nk);
            if (kind == SATTN__TILE_EMPTY) continue;
            sattn__load_rows(w->k, d, sattn__at(k, sattn__kv_elem(s, pr->ks, j0, hk), es),
                             pr->ks[1], nk, d, pr->dtype, 1.0f);
            sattn__load_rows(w->v, dv, sattn__at(v, sattn__kv_elem(s, pr->vs, j0, hk), es),
                             pr->vs[1], nk, dv, pr->dtype, 1.0f);
            kt->gemm_nt(w->s, SATTN__BK, w->q, d, w->k, d, mv, nk, d);
            if (kind == SATTN__TILE_PARTIAL || pr->has_score_mods)
                sattn__tile_scores(pr, s, h, i0, mv, j0, nk, kind, w->s, SATTN__BK, NULL);
            kt->softmax_online(w->s, SATTN__BK, mv, nk, w->mx, w->sum, w->o, dv, dv);
            if (pr->dropout_p > 0) {
                sattn__tile_dropout(pr, s, h, i0, mv, j0, nk, w->z, SATTN__BK);
                for (int r = 0; r < mv; r++)
                    for (int c = 0; c < nk; c++) w->s[r * SATTN__BK + c] *= w->z[r * SATTN__BK + c];
            }
            kt->gemm_nn_acc(w->o, dv, w->s, SATTN__BK, w->v, dv, mv, dv, nk);
        }
    }

    /* normalise: out = o / sum; lse = mx + log(sum) */
    float *lrow = lse ? lse + s->lse_row0 + h * s->lse_hstride + i0 : NULL;
    for (int r = 0; r < mv; r++) {
        float *orow = w->o + (size_t)r * (size_t)dv;
        if (w->sum[r] > 0) {
            float inv = 1.0f / w->sum[r]; /* kept weights already carry 1/(1-p) */
            for (int c = 0; c < dv; c++) orow[c] *= inv;
            if (lrow) lrow[r] = w->mx[r] + logf(w->sum[r]);
        } else { /* every key masked */
            if (lrow) lrow[r] = -INFINITY;
        }
    }
    char *obase = (char *)out + sattn__q_elem(s, pr->os, i0, h) * (int64_t)es;
    if (mv > 0) sattn__store_rows(obase, pr->os[1], w->o, dv, mv, dv, pr->dtype, 1.0f);
    if (mv < mq) {
        sattn__zero_rows(obase + mv * pr->os[1] * (int64_t)es, pr->os[1], mq - mv, dv, pr->dtype);
        if (lrow)
            for (int r = mv; r < mq; r++) lrow[r] = -INFINITY;
    }
}

sattn_status sattn_forward(const sattn_params *p, const void *q, const void *k, const void *v,
                           void *out, float *lse)
{
    sattn__problem pr;
    sattn_status st = sattn__prepare(&pr, p, SATTN__FORWARD, q, k, v, out, lse, NULL, NULL, NULL, NULL);
    if (st != SATTN_OK) return st;
    const sattn__kernels *kt = sattn__kernels_get();

    const int64_t nqb = (pr.seq_q + SATTN__BQ - 1) / SATTN__BQ;
    const int64_t items = pr.batch * pr.heads_q * nqb;
    if (items == 0) return SATTN_OK;
    int threads = sattn__threads();
    if (threads > items) threads = (int)items;

    size_t stride;
    float *scratch = sattn__scratch_alloc(fwd_scratch_floats(&pr), threads, &stride);
    if (!scratch) return SATTN_ERR_NOMEM;

    /* Each item is computed by one thread alone: any schedule gives the same bits. */
    SATTN__OMP(omp parallel for num_threads(threads) schedule(dynamic, 1))
    for (int64_t it = 0; it < items; it++) {
        int64_t qb = it % nqb, bh = it / nqb;
        int64_t h = bh % pr.heads_q, b = bh / pr.heads_q;
        sattn__seq s;
        sattn__seq_info(&pr, b, &s);
        int64_t i0 = qb * SATTN__BQ;
        if (i0 >= s.rows_q) continue;
        int mq = (int)(s.rows_q - i0 < SATTN__BQ ? s.rows_q - i0 : SATTN__BQ);
        fwd_scratch w = fwd_scratch_carve(&pr, scratch + (size_t)sattn__thread_id() * stride);
        forward_block(&pr, kt, &s, h, i0, mq, q, k, v, out, lse, &w);
    }
    sattn__scratch_free(scratch);
    return SATTN_OK;
}
