/* Fused attention backward (FlashAttention-2), recomputing the probabilities from the
 * forward's lse instead of storing them:
 *
 *     P   = exp(S - lse)                         forward: out = P·V / (1 - p) kept
 *     dV += (P ∘ Z)ᵀ · dO                        Z = dropout keep factor (0 or 1/(1-p))
 *     dP  = (dO · Vᵀ) ∘ Z
 *     D   = rowsum(dO ∘ out)                     = rowsum(P ∘ dP)
 *     dS  = P ∘ (dP - D)                         (∘ (1 - tanh²) under softcap)
 *     dK += dSᵀ · Q·scale,   dQ += dS · K·scale
 *
 * Deterministic without float atomics, in one of two schedules that give the same bits:
 *  - fused, when there are enough (batch, kv head) groups to share among the threads:
 *    a thread owns a whole group, walks its key blocks once and sums dK, dV per key
 *    block and dQ per query block in private f32 accumulators;
 *  - two passes otherwise: pass 1 gives every (batch, kv head, key block) to one
 *    thread for dK, dV; pass 2 gives every (batch, head, query block) to one thread,
 *    which recomputes the tiles for dQ.
 * Both sum every gradient over the same tiles in the same order with the same
 * kernel calls, so which one runs (it depends on the thread count) does not show. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "sattn_internal.h"

#define SATTN__GROUP_BYTES ((size_t)24 << 20)

typedef struct bwd_scratch {
    float *q, *dout, *dq;    /* (BQ, head_dim), (BQ, head_dim_v), (BQ, head_dim) */
    float *kt, *vt;          /* (head_dim, BK), (head_dim_v, BK): the key block transposed */
    float *k;                /* (BK, head_dim) the key block, for dQ */
    float *dk, *dv;          /* (BK, head_dim), (BK, head_dim_v) */
    float *p;                /* (BQ, BK) probabilities */
    float *dp;               /* (BQ, BK) dP, then dS */
    float *pz;               /* (BQ, BK) P ∘ Z */
    float *z;                /* (BQ, BK) dropout keep factors */
    float *t;                /* (BQ, BK) tanh(s / softcap) */
} bwd_scratch;

/* Lays out one thread's scratch from base (NULL: only measures); returns its floats. */
static size_t bwd_scratch_layout(const sattn__problem *pr, float *base, bwd_scratch *w)
{
    size_t d = (size_t)pr->head_dim, dv = (size_t)pr->head_dim_v, t = SATTN__BQ * SATTN__BK, off = 0;
    w->q = sattn__carve(base, &off, SATTN__BQ * d);
    w->dout = sattn__carve(base, &off, SATTN__BQ * dv);
    w->dq = sattn__carve(base, &off, SATTN__BQ * d);
    w->kt = sattn__carve(base, &off, d * SATTN__BK);
    w->vt = sattn__carve(base, &off, dv * SATTN__BK);
    w->k = sattn__carve(base, &off, SATTN__BK * d);
    w->dk = sattn__carve(base, &off, SATTN__BK * d);
    w->dv = sattn__carve(base, &off, SATTN__BK * dv);
    w->p = sattn__carve(base, &off, t);
    w->dp = sattn__carve(base, &off, t);
    w->pz = sattn__carve(base, &off, t);
    w->z = sattn__carve(base, &off, t);
    w->t = sattn__carve(base, &off, t);
    return off;
}

static size_t bwd_scratch_floats(const sattn__problem *pr)
{
    bwd_scratch unused;
    return bwd_scratch_layout(pr, NULL, &unused);
}

typedef struct bwd_args {
    const sattn__problem *pr;
    const sattn__kernels *kt;
    const void *q, *k, *v, *out, *dout;
    const float *lse;
    float *dsum; /* D, laid out like lse */
    void *dq, *dk, *dv;
} bwd_args;

/* The query side of a tile: scale·Q (mq, head_dim), dO (mq, head_dim_v), lse and D
   (mq), rows ld_q / ld_o apart. Loaded into scratch, or pointing into a group's panels. */
typedef struct qside {
    const float *q, *dout, *lse, *dd;
} qside;

/* The tile shared by both passes: P and dS for query rows i0.. (mq) of head h against
   key rows j0.. (nk), with the query side x and w->kt, w->vt loaded.
   Leaves P in w->p, P ∘ Z in w->pz (when dropout is on) and dS in w->dp. */
static void tile_grad(const bwd_args *a, const sattn__seq *s, int64_t h, int64_t i0, int mq,
                      int64_t j0, int nk, sattn__tile_kind kind, const qside *x, const bwd_scratch *w)
{
    const sattn__problem *pr = a->pr;
    const sattn__kernels *kt = a->kt;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v, ld = SATTN__BK;
    kt->gemm(w->p, ld, x->q, d, 1, w->kt, ld, mq, nk, d, 0, 0);                /* S = (scale Q)·Kᵀ */
    if (kind == SATTN__TILE_PARTIAL || pr->has_score_mods)
        sattn__tile_scores(pr, s, h, i0, mq, j0, nk, kind, w->p, ld, w->t);
    kt->softmax_recompute(w->p, ld, mq, nk, x->lse);
    kt->gemm(w->dp, ld, x->dout, dv, 1, w->vt, ld, mq, nk, dv, 0, 0);          /* dP = dO·Vᵀ */
    if (pr->dropout_p > 0) {
        sattn__tile_dropout(pr, s, h, i0, mq, j0, nk, w->z, ld);
        for (int r = 0; r < mq; r++)
            for (int c = 0; c < nk; c++) {
                w->pz[r * ld + c] = w->p[r * ld + c] * w->z[r * ld + c];
                w->dp[r * ld + c] *= w->z[r * ld + c];
            }
    }
    kt->softmax_grad(w->dp, ld, w->p, ld, mq, nk, x->dd);
    if (pr->softcap > 0) /* d(cap * tanh(x / cap)) / dx = 1 - tanh² */
        for (int r = 0; r < mq; r++)
            for (int c = 0; c < nk; c++) {
                float th = w->t[r * ld + c];
                w->dp[r * ld + c] *= 1.0f - th * th;
            }
}

/* The query side of rows r0.. of x: a band of a partial tile. */
static qside band_side(const qside *x, int r0, int d, int dv)
{
    qside b = {x->q + (size_t)r0 * (size_t)d, x->dout + (size_t)r0 * (size_t)dv, x->lse + r0, x->dd + r0};
    return b;
}

/* Loads query rows i0.. of head h with everything the tile needs. */
static qside load_query_side(const bwd_args *a, const sattn__seq *s, int64_t h, int64_t i0, int mq,
                             const bwd_scratch *w)
{
    const sattn__problem *pr = a->pr;
    const size_t es = pr->elem_size;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v;
    sattn__load_rows(a->kt, w->q, d, sattn__at(a->q, sattn__q_elem(s, pr->qs, i0, h), es), pr->qs[1], mq,
                     d, pr->dtype, pr->scale);
    sattn__load_rows(a->kt, w->dout, dv, sattn__at(a->dout, sattn__q_elem(s, pr->os, i0, h), es),
                     pr->os[1], mq, dv, pr->dtype, 1.0f);
    int64_t li = s->lse_row0 + h * s->lse_hstride + i0;
    qside x = {w->q, w->dout, a->lse + li, a->dsum + li}; /* lse and D are contiguous already */
    return x;
}

/* The fused schedule's private buffers for one group (its query heads hk·group ..):
   the query side packed once, and the dQ accumulator. */
typedef struct group_buf {
    float *q;    /* (group, len_q, head_dim)   scale·Q */
    float *dout; /* (group, len_q, head_dim_v) */
    float *dq;   /* (group, len_q, head_dim)   dS·K summed over key blocks */
} group_buf;

/* Loads Kᵀ and Vᵀ of key rows j0.. of kv head hk, and K itself if want_k (returning 1
   if K holds NaN or Inf). */
static int load_key_side(const bwd_args *a, const sattn__seq *s, int64_t hk, int64_t j0, int nk,
                         int want_k, const bwd_scratch *w)
{
    const sattn__problem *pr = a->pr;
    const size_t es = pr->elem_size;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v;
    const void *k = sattn__at(a->k, sattn__kv_elem(s, pr->ks, j0, hk), es);
    sattn__load_rows_t(a->kt, w->kt, SATTN__BK, k, pr->ks[1], nk, d, pr->dtype);
    sattn__load_rows_t(a->kt, w->vt, SATTN__BK, sattn__at(a->v, sattn__kv_elem(s, pr->vs, j0, hk), es),
                       pr->vs[1], nk, dv, pr->dtype);
    if (!want_k) return 0;
    sattn__load_rows(a->kt, w->k, d, k, pr->ks[1], nk, d, pr->dtype, 1.0f);
    return sattn__rows_nonfinite(w->k, d, nk, d);
}

static int clamp_rows(int64_t len, int64_t i0, int rows)
{
    int64_t n = len - i0;
    return n <= 0 ? 0 : (n < rows ? (int)n : rows);
}

/* ---- pass 0: D = rowsum(dO ∘ out) ---- */

/* Σ x[c] y[c] in double (each product exact), in four chains of sums held in registers:
   the one chain this replaced, its accumulator live across the row loads' calls, was
   kept in memory, a store-to-load round trip per term. */
static double dot_f64(const float *x, const float *y, int n)
{
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int c = 0;
    for (; c + 4 <= n; c += 4) {
        a0 += (double)x[c] * y[c];
        a1 += (double)x[c + 1] * y[c + 1];
        a2 += (double)x[c + 2] * y[c + 2];
        a3 += (double)x[c + 3] * y[c + 3];
    }
    for (; c < n; c++) a0 += (double)x[c] * y[c];
    return (a0 + a1) + (a2 + a3);
}

static void dsum_rows(const bwd_args *a, const sattn__seq *s, int64_t h)
{
    const sattn__problem *pr = a->pr;
    const size_t es = pr->elem_size;
    const int dv = (int)pr->head_dim_v;
    float o[64], g[64];
    for (int64_t i = 0; i < s->len_q; i++) {
        const int64_t e = sattn__q_elem(s, pr->os, i, h);
        /* rows apart (a head apart in BSHD), as sattn__load_rows asks for them */
        if (pr->os[1] != dv && i + SATTN__PREFETCH_ROWS < s->len_q) {
            const int64_t ahead = sattn__q_elem(s, pr->os, i + SATTN__PREFETCH_ROWS, h);
            sattn__prefetch_rows(sattn__at(a->out, ahead, es), 0, 1, dv * (int64_t)es);
            sattn__prefetch_rows(sattn__at(a->dout, ahead, es), 0, 1, dv * (int64_t)es);
        }
        double acc = 0; /* once per row: exactness is cheap here */
        for (int c0 = 0; c0 < dv; c0 += 64) {
            int n = dv - c0 < 64 ? dv - c0 : 64;
            sattn__load_rows(a->kt, o, n, sattn__at(a->out, e + c0, es), 0, 1, n, pr->dtype, 1.0f);
            sattn__load_rows(a->kt, g, n, sattn__at(a->dout, e + c0, es), 0, 1, n, pr->dtype, 1.0f);
            acc += dot_f64(o, g, n);
        }
        a->dsum[s->lse_row0 + h * s->lse_hstride + i] = (float)acc;
    }
}

/* ---- pass 1: dK, dV for key rows j0.. of kv head hk ---- */

/* With gb (the fused schedule) it reads the query side from the group's panels and
   also adds dS·K into the group's dQ accumulator. */
static void dkdv_block(const bwd_args *a, const sattn__seq *s, int64_t hk, int64_t j0, int rows,
                       const group_buf *gb, const bwd_scratch *w)
{
    const sattn__problem *pr = a->pr;
    const sattn__kernels *kt = a->kt;
    const size_t es = pr->elem_size;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v;
    const int nk = clamp_rows(s->len_kv, j0, rows);
    char *dk = (char *)a->dk + sattn__kv_elem(s, pr->ks, j0, hk) * (int64_t)es;
    char *dvp = (char *)a->dv + sattn__kv_elem(s, pr->vs, j0, hk) * (int64_t)es;

    if (nk > 0) {
        memset(w->dk, 0, sizeof(float) * (size_t)nk * (size_t)d);
        memset(w->dv, 0, sizeof(float) * (size_t)nk * (size_t)dv);
        int loaded = 0; /* k, v are read only if some query sees them (k may be NULL when seq_q = 0) */
        int k_bad = 0;
        for (int64_t h = hk * pr->group; h < (hk + 1) * pr->group; h++)
            for (int64_t i0 = 0; i0 < s->len_q; i0 += SATTN__BQ) {
                int mq = clamp_rows(s->len_q, i0, SATTN__BQ);
                sattn__tile_kind kind = sattn__tile_classify(pr, s, i0, mq, j0, nk);
                if (kind == SATTN__TILE_EMPTY) continue;
                if (!loaded) k_bad = load_key_side(a, s, hk, j0, nk, gb != NULL, w), loaded = 1;
                const int64_t row = (h - hk * pr->group) * s->len_q + i0; /* in the group's panels */
                qside x;
                if (gb) {
                    int64_t li = s->lse_row0 + h * s->lse_hstride + i0;
                    x.q = gb->q + row * d, x.dout = gb->dout + row * dv;
                    x.lse = a->lse + li, x.dd = a->dsum + li;
                } else {
                    x = load_query_side(a, s, h, i0, mq, w);
                }
                /* a partial tile in bands (SATTN__BAND), each up to the last key it sees */
                const int band = kind == SATTN__TILE_PARTIAL ? SATTN__BAND : SATTN__BQ;
                for (int r0 = 0; r0 < mq; r0 += band) {
                    const int mb = mq - r0 < band ? mq - r0 : band;
                    const int nb = band < SATTN__BQ ? sattn__band_keys(pr, s, i0 + r0, mb, j0, nk) : nk;
                    if (nb == 0) continue;
                    const qside xb = band_side(&x, r0, d, dv);
                    tile_grad(a, s, h, i0 + r0, mb, j0, nb, kind, &xb, w);
                    const float *pz = pr->dropout_p > 0 ? w->pz : w->p;
                    /* dV += (P∘Z)ᵀ·dO, dK += dSᵀ·(scale Q): A transposed through its strides */
                    kt->gemm(w->dv, dv, pz, 1, SATTN__BK, xb.dout, dv, nb, dv, mb, 1, 0);
                    kt->gemm(w->dk, d, w->dp, 1, SATTN__BK, xb.q, d, nb, d, mb, 1, 0);
                    if (gb) /* the same call as pass 2's, on the same band, in the same order */
                        kt->gemm(gb->dq + (row + r0) * d, d, w->dp, SATTN__BK, 1, w->k, d, mb, d, nb, 1, k_bad);
                }
            }
        sattn__store_rows(a->kt, dk, pr->ks[1], w->dk, d, nk, d, pr->dtype, 1.0f);
        sattn__store_rows(a->kt, dvp, pr->vs[1], w->dv, dv, nk, dv, pr->dtype, 1.0f);
    }
    if (nk < rows) { /* padding keys get zero gradient */
        sattn__zero_rows(dk + nk * pr->ks[1] * (int64_t)es, pr->ks[1], rows - nk, d, pr->dtype);
        sattn__zero_rows(dvp + nk * pr->vs[1] * (int64_t)es, pr->vs[1], rows - nk, dv, pr->dtype);
    }
}

/* ---- pass 2: dQ for query rows i0.. of head h ---- */

static void dq_block(const bwd_args *a, const sattn__seq *s, int64_t h, int64_t i0, int rows,
                     const bwd_scratch *w)
{
    const sattn__problem *pr = a->pr;
    const sattn__kernels *kt = a->kt;
    const size_t es = pr->elem_size;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v;
    const int mq = clamp_rows(s->len_q, i0, rows);
    char *dq = (char *)a->dq + sattn__q_elem(s, pr->qs, i0, h) * (int64_t)es;

    if (mq > 0) {
        memset(w->dq, 0, sizeof(float) * (size_t)mq * (size_t)d);
        qside x = load_query_side(a, s, h, i0, mq, w);
        int64_t lo, hi, unused;
        sattn__row_range(pr, s, i0, &lo, &unused);
        sattn__row_range(pr, s, i0 + mq - 1, &unused, &hi);
        for (int64_t j0 = lo / SATTN__BK * SATTN__BK; j0 < hi; j0 += SATTN__BK) {
            int nk = clamp_rows(s->len_kv, j0, SATTN__BK);
            sattn__tile_kind kind = sattn__tile_classify(pr, s, i0, mq, j0, nk);
            if (kind == SATTN__TILE_EMPTY) continue;
            int k_bad = load_key_side(a, s, h / pr->group, j0, nk, 1, w);
            const int band = kind == SATTN__TILE_PARTIAL ? SATTN__BAND : SATTN__BQ;
            for (int r0 = 0; r0 < mq; r0 += band) { /* as in pass 1 */
                const int mb = mq - r0 < band ? mq - r0 : band;
                const int nb = band < SATTN__BQ ? sattn__band_keys(pr, s, i0 + r0, mb, j0, nk) : nk;
                if (nb == 0) continue;
                const qside xb = band_side(&x, r0, d, dv);
                tile_grad(a, s, h, i0 + r0, mb, j0, nb, kind, &xb, w);
                /* dQ += dS·K; NaN or Inf in K needs the exact form */
                kt->gemm(w->dq + (size_t)r0 * (size_t)d, d, w->dp, SATTN__BK, 1, w->k, d, mb, d, nb, 1, k_bad);
            }
        }
        sattn__store_rows(a->kt, dq, pr->qs[1], w->dq, d, mq, d, pr->dtype, pr->scale);
    }
    if (mq < rows)
        sattn__zero_rows(dq + mq * pr->qs[1] * (int64_t)es, pr->qs[1], rows - mq, d, pr->dtype);
}

/* ---- fused: everything of one (batch, kv head) group ---- */

static void group_fused(const bwd_args *a, int64_t g, float *buf, const bwd_scratch *w)
{
    const sattn__problem *pr = a->pr;
    const size_t es = pr->elem_size;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v;
    const int64_t hk = g % pr->heads_kv;
    sattn__seq s;
    sattn__seq_info(pr, g / pr->heads_kv, &s);
    const size_t rows = (size_t)(pr->group * s.len_q);
    group_buf gb = {buf, buf + rows * (size_t)d, buf + rows * (size_t)(d + dv)};
    for (int64_t hl = 0; hl < pr->group; hl++) {
        int64_t h = hk * pr->group + hl;
        for (int64_t i0 = 0; i0 < s.len_q; i0 += SATTN__BQ) { /* the loads pass 1 would make */
            int mq = clamp_rows(s.len_q, i0, SATTN__BQ);
            sattn__load_rows(a->kt, gb.q + (hl * s.len_q + i0) * d, d, sattn__at(a->q, sattn__q_elem(&s, pr->qs, i0, h), es),
                             pr->qs[1], mq, d, pr->dtype, pr->scale);
            sattn__load_rows(a->kt, gb.dout + (hl * s.len_q + i0) * dv, dv,
                             sattn__at(a->dout, sattn__q_elem(&s, pr->os, i0, h), es), pr->os[1], mq, dv,
                             pr->dtype, 1.0f);
        }
    }
    memset(gb.dq, 0, sizeof(float) * rows * (size_t)d);
    for (int64_t j0 = 0; j0 < s.rows_kv; j0 += SATTN__BK)
        dkdv_block(a, &s, hk, j0, clamp_rows(s.rows_kv, j0, SATTN__BK), &gb, w);
    /* no query rows: dq may be NULL (seq_q = 0), and there is nothing to store */
    for (int64_t hl = 0; s.rows_q > 0 && hl < pr->group; hl++) {
        int64_t h = hk * pr->group + hl;
        char *dq = (char *)a->dq + sattn__q_elem(&s, pr->qs, 0, h) * (int64_t)es;
        /* stored block by block, as pass 2 does */
        for (int64_t i0 = 0; i0 < s.len_q; i0 += SATTN__BQ)
            sattn__store_rows(a->kt, dq + i0 * pr->qs[1] * (int64_t)es, pr->qs[1],
                              gb.dq + (hl * s.len_q + i0) * d, d, clamp_rows(s.len_q, i0, SATTN__BQ), d,
                              pr->dtype, pr->scale);
        if (s.len_q < s.rows_q)
            sattn__zero_rows(dq + s.len_q * pr->qs[1] * (int64_t)es, pr->qs[1],
                             (int)(s.rows_q - s.len_q), d, pr->dtype);
    }
}

static sattn_status backward_run(const sattn__problem *prp, const void *q, const void *k, const void *v,
                                 const void *out, const float *lse, const void *dout, void *dq, void *dk,
                                 void *dv)
{
    const sattn__problem pr = *prp;

    const int64_t nqb = (pr.seq_q + SATTN__BQ - 1) / SATTN__BQ;
    const int64_t nkb = (pr.seq_kv + SATTN__BK - 1) / SATTN__BK;
    const int64_t items_kv = pr.batch * pr.heads_kv * nkb;
    const int64_t items_q = pr.batch * pr.heads_q * nqb;
    const int64_t items = items_kv > items_q ? items_kv : items_q;
    if (items == 0) return SATTN_OK;
    /* flops: 2.5 forwards (five products instead of two), about half under a causal rule */
    const double work = 5.0 * (double)pr.batch * (double)pr.heads_q * (double)pr.seq_q * (double)pr.seq_kv *
                        (double)(pr.head_dim + pr.head_dim_v) * (pr.causal ? 0.5 : 1.0);
    const int threads = sattn__threads_for(work, items);

    /* The fused schedule needs groups for every thread and, per thread, a group's query
       side and dQ accumulator, (group, seq_q, 2 head_dim + head_dim_v), of at most
       SATTN__GROUP_BYTES. */
    const int64_t groups = pr.batch * pr.heads_kv;
    const size_t group_floats = (size_t)(pr.group * pr.seq_q * (2 * pr.head_dim + pr.head_dim_v));
    const int fused = groups >= threads && group_floats * sizeof(float) <= SATTN__GROUP_BYTES &&
                      (groups % threads == 0 || groups >= 4 * (int64_t)threads);

    /* D has the lse's layout. */
    size_t nd = (size_t)pr.heads_q * (size_t)(pr.cu_seqlens_q ? pr.total_q : pr.batch * pr.seq_q);
    float *dsum = malloc(sizeof(float) * (nd ? nd : 1));
    if (!dsum) return sattn__fail_nomem(sizeof(float) * nd);
    size_t stride;
    float *scratch = sattn__scratch_alloc(bwd_scratch_floats(&pr) + (fused ? group_floats : 0), threads,
                                          &stride);
    if (!scratch) {
        free(dsum);
        return SATTN_ERR_NOMEM;
    }

    bwd_args a = {&pr, pr.kt, q, k, v, out, dout, lse, dsum, dq, dk, dv};
    const int64_t bh_q = pr.batch * pr.heads_q;

    sattn__par par;
    sattn__par_begin(&par, threads);
    SATTN__OMP(omp parallel num_threads(threads) if (threads > 1))
    {
        sattn__par_mark mark;
        sattn__par_enter(&par, &mark);
        bwd_scratch w;
        float *mine = scratch + (size_t)sattn__thread_id() * stride;
        float *panels = mine + bwd_scratch_layout(&pr, mine, &w); /* the fused schedule's panels */

        SATTN__OMP(omp for schedule(dynamic, 1))
        for (int64_t it = 0; it < bh_q; it++) {
            sattn__seq s;
            sattn__seq_info(&pr, it / pr.heads_q, &s);
            dsum_rows(&a, &s, it % pr.heads_q);
        }

        if (fused) {
            SATTN__OMP(omp for schedule(dynamic, 1))
            for (int64_t g = 0; g < groups; g++) group_fused(&a, g, panels, &w);
        } else {
        SATTN__OMP(omp for schedule(dynamic, 1))
        for (int64_t it = 0; it < items_kv; it++) {
            int64_t kb = it % nkb, bh = it / nkb;
            sattn__seq s;
            sattn__seq_info(&pr, bh / pr.heads_kv, &s);
            int64_t j0 = kb * SATTN__BK;
            if (j0 >= s.rows_kv) continue;
            int rows = (int)(s.rows_kv - j0 < SATTN__BK ? s.rows_kv - j0 : SATTN__BK);
            dkdv_block(&a, &s, bh % pr.heads_kv, j0, rows, NULL, &w);
        }

        SATTN__OMP(omp for schedule(dynamic, 1))
        for (int64_t it = 0; it < items_q; it++) {
            int64_t qb = it % nqb, bh = it / nqb;
            sattn__seq s;
            sattn__seq_info(&pr, bh / pr.heads_q, &s);
            int64_t i0 = qb * SATTN__BQ;
            if (i0 >= s.rows_q) continue;
            int rows = (int)(s.rows_q - i0 < SATTN__BQ ? s.rows_q - i0 : SATTN__BQ);
            dq_block(&a, &s, bh % pr.heads_q, i0, rows, &w);
        }
        }
        sattn__par_leave(&par, &mark);
    }
    sattn__par_end(&par);
    sattn__scratch_free(scratch);
    free(dsum);
    return SATTN_OK;
}

sattn_status sattn_backward(const sattn_params *p, const void *q, const void *k, const void *v,
                            const void *out, const float *lse, const void *dout, void *dq,
                            void *dk, void *dv)
{
    sattn__problem pr;
    sattn_status st = sattn__prepare(&pr, p, SATTN__BACKWARD, q, k, v, out, lse, dout, dq, dk, dv);
    if (st != SATTN_OK) return st;
    return backward_run(&pr, q, k, v, out, lse, dout, dq, dk, dv);
}

sattn_status sattn_backward_part(const sattn_params *p, const sattn_part *part, const void *q, const void *k,
                                 const void *v, const void *out, const float *lse, const void *dout, void *dq,
                                 void *dk, void *dv)
{
    sattn__problem pr;
    sattn_params local;
    sattn_status st = sattn__prepare_part(&pr, &local, p, part, SATTN__BACKWARD, q, k, v, out, lse, dout, dq,
                                          dk, dv);
    if (st != SATTN_OK) return st;
    return backward_run(&pr, q, k, v, out, lse, dout, dq, dk, dv);
}
