/* Fused attention forward: query blocks x key blocks with an online softmax
 * (FlashAttention), never a seq_q x seq_kv matrix.
 *
 * Two schedules:
 *  - blocks: K and V are packed once per (batch, kv head) into f32 panels, Kᵀ per key
 *    block so that Q·Kᵀ is the kernel's A·B, and reused by every query block of every
 *    query head of the group. Groups are packed in chunks of at most SATTN__PACK_BYTES;
 *    a larger group reads its tiles straight from the inputs. Each (batch, head, query
 *    block) is one work item.
 *  - split (few query rows, e.g. decode): a group's query heads stacked into one tile,
 *    its keys cut into chunks merged through the log-sum-exp (forward_split below).
 * Each work item is owned by one thread and every merge has a fixed order, so results
 * do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "sattn_internal.h"

#define SATTN__PACK_BYTES ((size_t)48 << 20) /* 65536 keys x d=64 pack in 32 MiB */
#define SATTN__FEW_ROWS 8
#define SATTN__SPLIT_ITEMS 16
#define SATTN__TOUCH_KEYS 8 /* the decode path reads K and V rows this many at a time */
#define SATTN__PREFETCH_TILES 2 /* how far ahead the decode path asks for strided K and V rows */
/* The decode path reads runs of fully visible tiles, up to this many keys, as one span:
   all of its K (scores for the whole span), then all of its V. Against tile by tile
   (K and V alternating every 64 keys) a cold decode step (4096 keys, 32/8 heads, d=128)
   measured, side by side: bf16 605-625 -> 515-525 us, f32 855-900 -> 730-735 us; spans of
   512 and 1024 keys were in between. */
#define SATTN__SPAN_KEYS 2048

typedef struct fwd_ctx {
    const sattn__problem *pr;
    const sattn__kernels *kt;
    const void *q, *k, *v;
    void *out;
    float *lse;
    /* Packed panels of groups g0 .. g0+ngroups-1 (group = b * heads_kv + hk), or NULL.
       Key block kb of local group gl starts at pack + (gl * nkb + kb) * block_floats:
       Kᵀ (head_dim, BK), then V (BK, head_dim_v); bad[] flags NaN or Inf in that V. */
    float *pack;
    uint8_t *bad;
    int64_t g0, nkb;
    size_t block_floats;
    double work; /* flops of the call, for its thread count */
} fwd_ctx;

/* Per-thread scratch, in floats. */
typedef struct fwd_scratch {
    float *q;   /* (BQ, head_dim)   the query block, pre-multiplied by scale */
    float *kt;  /* (head_dim, BK)   one key block, transposed */
    float *v;   /* (BK, head_dim_v) one value block */
    float *s;   /* (BQ, BK)         scores, then probabilities */
    float *z;   /* (BQ, BK)         dropout keep factors */
    float *o;   /* (BQ, head_dim_v) unnormalised output accumulator */
    float *mx;  /* (BQ)             running row max */
    float *sum; /* (BQ)             running row sum of exp(s - mx) */
    float *span; /* (rows, SATTN__SPAN_KEYS) the decode path's span scores; NULL past FEW_ROWS */
    uint16_t *qh; /* (rows, head_dim) the decode path's bf16 Q as stored (no scale); likewise */
} fwd_scratch;

/* Lays out one thread's scratch from base (NULL: only measures) for tiles of up to
   `rows` query rows; returns its floats. With fewer rows than a block (the split path:
   decode) the buffers read and written on every tile (q, s, o, mx, sum) come first and
   sit together: placed a block's size apart, on the same cache sets, a cold decode step
   was measured 15% slower. */
static size_t fwd_scratch_layout(const sattn__problem *pr, size_t rows, float *base, fwd_scratch *w)
{
    size_t d = (size_t)pr->head_dim, dv = (size_t)pr->head_dim_v, off = 0;
    if (rows < SATTN__BQ) {
        w->q = sattn__carve(base, &off, rows * d);
        w->s = sattn__carve(base, &off, rows * SATTN__BK);
        w->o = sattn__carve(base, &off, rows * dv);
        w->mx = sattn__carve(base, &off, rows);
        w->sum = sattn__carve(base, &off, rows);
        w->span = rows <= SATTN__FEW_ROWS ? sattn__carve(base, &off, rows * SATTN__SPAN_KEYS) : NULL;
        w->qh = rows <= SATTN__FEW_ROWS ? (uint16_t *)sattn__carve(base, &off, (rows * d + 1) / 2) : NULL;
        w->kt = sattn__carve(base, &off, d * SATTN__BK);
        w->v = sattn__carve(base, &off, SATTN__BK * dv);
        w->z = sattn__carve(base, &off, rows * SATTN__BK);
        return off;
    }
    w->q = sattn__carve(base, &off, SATTN__BQ * d);
    w->kt = sattn__carve(base, &off, d * SATTN__BK);
    w->v = sattn__carve(base, &off, SATTN__BK * dv);
    w->s = sattn__carve(base, &off, SATTN__BQ * SATTN__BK);
    w->z = sattn__carve(base, &off, SATTN__BQ * SATTN__BK);
    w->o = sattn__carve(base, &off, SATTN__BQ * dv);
    w->mx = sattn__carve(base, &off, SATTN__BQ);
    w->sum = sattn__carve(base, &off, SATTN__BQ);
    w->span = NULL;
    w->qh = NULL;
    return off;
}

static size_t fwd_scratch_floats(const sattn__problem *pr, size_t rows)
{
    fwd_scratch unused;
    return fwd_scratch_layout(pr, rows, NULL, &unused);
}

/* ---- key and value panels ---- */

static void pack_block(const fwd_ctx *c, int64_t g, int64_t kb)
{
    const sattn__problem *pr = c->pr;
    const size_t es = pr->elem_size;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v;
    sattn__seq s;
    sattn__seq_info(pr, g / pr->heads_kv, &s);
    const int64_t hk = g % pr->heads_kv, j0 = kb * SATTN__BK;
    if (j0 >= s.len_kv) return;
    const int nk = (int)(s.len_kv - j0 < SATTN__BK ? s.len_kv - j0 : SATTN__BK);
    const size_t idx = (size_t)((g - c->g0) * c->nkb + kb);
    float *kt = c->pack + idx * c->block_floats;
    sattn__load_rows_t(kt, SATTN__BK, sattn__at(c->k, sattn__kv_elem(&s, pr->ks, j0, hk), es),
                       pr->ks[1], nk, d, pr->dtype);
    float *vp = kt + (size_t)d * SATTN__BK;
    sattn__load_rows(vp, dv, sattn__at(c->v, sattn__kv_elem(&s, pr->vs, j0, hk), es), pr->vs[1], nk, dv,
                     pr->dtype, 1.0f);
    c->bad[idx] = (uint8_t)sattn__rows_nonfinite(vp, dv, nk, dv);
}

typedef struct kv_tile {
    const float *kt; /* (head_dim, BK) */
    const float *v;  /* (nk, head_dim_v) */
    int v_bad;       /* V holds NaN or Inf */
} kv_tile;

/* The Kᵀ and V tiles of key rows j0.. (nk) of kv head hk: from the panels, or loaded. */
static kv_tile kv_block(const fwd_ctx *c, const sattn__seq *s, int64_t hk, int64_t j0, int nk,
                        const fwd_scratch *w)
{
    const sattn__problem *pr = c->pr;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v;
    kv_tile t;
    if (c->pack) {
        size_t idx = (size_t)((s->b * pr->heads_kv + hk - c->g0) * c->nkb + j0 / SATTN__BK);
        t.kt = c->pack + idx * c->block_floats;
        t.v = t.kt + (size_t)d * SATTN__BK;
        t.v_bad = c->bad[idx];
        return t;
    }
    const size_t es = pr->elem_size;
    sattn__load_rows_t(w->kt, SATTN__BK, sattn__at(c->k, sattn__kv_elem(s, pr->ks, j0, hk), es),
                       pr->ks[1], nk, d, pr->dtype);
    sattn__load_rows(w->v, dv, sattn__at(c->v, sattn__kv_elem(s, pr->vs, j0, hk), es), pr->vs[1], nk, dv,
                     pr->dtype, 1.0f);
    t.v_bad = sattn__rows_nonfinite(w->v, dv, nk, dv);
    t.kt = w->kt;
    t.v = w->v;
    return t;
}

/* ---- one query block ---- */

/* Rows i0 .. i0+mq-1 of head h: the first mv from their accumulators, out = o / sum and
   lse = mx + log(sum) (o is normalised in place); the rest, padding, zeros and -inf. */
static void finish_rows(const fwd_ctx *c, const sattn__seq *s, int64_t h, int64_t i0, int mv, int mq,
                        float *o, const float *mx, const float *sum)
{
    const sattn__problem *pr = c->pr;
    const int dv = (int)pr->head_dim_v;
    const size_t es = pr->elem_size;
    float *lrow = c->lse ? c->lse + s->lse_row0 + h * s->lse_hstride + i0 : NULL;
    for (int r = 0; r < mv; r++) {
        float *orow = o + (size_t)r * (size_t)dv;
        if (sum[r] > 0) {
            float inv = 1.0f / sum[r]; /* kept weights already carry 1/(1-p) */
            for (int e = 0; e < dv; e++) orow[e] *= inv;
            if (lrow) lrow[r] = mx[r] + logf(sum[r]);
        } else { /* every key masked */
            if (lrow) lrow[r] = -INFINITY;
        }
    }
    if (mq == 0) return; /* a sequence with no rows: out may be NULL (every cu_seqlens_q empty) */
    char *obase = (char *)c->out + sattn__q_elem(s, pr->os, i0, h) * (int64_t)es;
    if (mv > 0) sattn__store_rows(obase, pr->os[1], o, dv, mv, dv, pr->dtype, 1.0f);
    if (mv < mq) {
        sattn__zero_rows(obase + mv * pr->os[1] * (int64_t)es, pr->os[1], mq - mv, dv, pr->dtype);
        if (lrow)
            for (int r = mv; r < mq; r++) lrow[r] = -INFINITY;
    }
}

/* out rows i0 .. i0+mq-1 of head h of sequence s, and their lse. */
static void forward_block(const fwd_ctx *c, const sattn__seq *s, int64_t h, int64_t i0, int mq,
                          const fwd_scratch *w)
{
    const sattn__problem *pr = c->pr;
    const sattn__kernels *kt = c->kt;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v;
    const int64_t hk = h / pr->group;
    const size_t es = pr->elem_size;
    /* rows at or past len_q are padding: zeros, lse = -inf */
    int mv = (int)(s->len_q - i0 < mq ? (s->len_q - i0 > 0 ? s->len_q - i0 : 0) : mq);

    for (int r = 0; r < mv; r++) w->mx[r] = -INFINITY, w->sum[r] = 0.0f;
    memset(w->o, 0, sizeof(float) * (size_t)mv * (size_t)dv);

    if (mv > 0) {
        sattn__load_rows(w->q, d, sattn__at(c->q, sattn__q_elem(s, pr->qs, i0, h), es), pr->qs[1],
                         mv, d, pr->dtype, pr->scale);
        int64_t lo, hi, unused;
        sattn__row_range(pr, s, i0, &lo, &unused);
        sattn__row_range(pr, s, i0 + mv - 1, &unused, &hi);
        for (int64_t j0 = lo / SATTN__BK * SATTN__BK; j0 < hi; j0 += SATTN__BK) {
            int nk = (int)(s->len_kv - j0 < SATTN__BK ? s->len_kv - j0 : SATTN__BK);
            sattn__tile_kind kind = sattn__tile_classify(pr, s, i0, mv, j0, nk);
            if (kind == SATTN__TILE_EMPTY) continue;
            kv_tile t = kv_block(c, s, hk, j0, nk, w);
            /* a partial tile in bands of SATTN__BAND rows, each only up to the last key
               its last row sees (and skipped where its rows see none of the tile): on the
               diagonal tile of a causal mask that leaves out 3/8 of the products. The
               kernels add each row's terms in the same order either way. */
            const int band = kind == SATTN__TILE_PARTIAL ? SATTN__BAND : SATTN__BQ;
            for (int r0 = 0; r0 < mv; r0 += band) {
                const int mb = mv - r0 < band ? mv - r0 : band;
                const int nb = band < SATTN__BQ ? sattn__band_keys(pr, s, i0 + r0, mb, j0, nk) : nk;
                if (nb == 0) continue;
                float *S = w->s + (size_t)r0 * SATTN__BK, *O = w->o + (size_t)r0 * (size_t)dv;
                /* S = (scale Q) · Kᵀ */
                kt->gemm(S, SATTN__BK, w->q + (size_t)r0 * (size_t)d, d, 1, t.kt, SATTN__BK, mb, nb, d, 0, 0);
                if (kind == SATTN__TILE_PARTIAL || pr->has_score_mods)
                    sattn__tile_scores(pr, s, h, i0 + r0, mb, j0, nb, kind, S, SATTN__BK, NULL);
                kt->softmax_online(S, SATTN__BK, mb, nb, w->mx + r0, w->sum + r0, O, dv, dv);
                if (pr->dropout_p > 0)
                    sattn__tile_dropout_apply(pr, s, h, i0 + r0, mb, j0, nb, S, SATTN__BK, w->z);
                /* O += P · V; NaN or Inf in V (masked keys may hold any bits) needs the exact form */
                kt->gemm(O, dv, S, SATTN__BK, 1, t.v, dv, mb, dv, nb, 1, t.v_bad);
            }
        }
    }

    finish_rows(c, s, h, i0, mv, mq, w->o, w->mx, w->sum);
}

/* ---- few query rows: heads stacked, keys split (flash-decoding) ---- */

/* When the query rows of a kv head's group (group x seq_q) fit one block, the query
   heads sharing a kv head are stacked into one tile, so K and V are read once per
   group, in place when stored as f32. The keys are cut into chunks whose size depends
   on the shape only, never on the thread count; each (group, chunk) is one work item,
   and the chunks' partial results are merged in a fixed order through their
   log-sum-exp, so the bits do not depend on the thread count either. */
typedef struct split_ctx {
    const fwd_ctx *c;
    int64_t chunk_blocks, nchunks, rows; /* rows = group * seq_q: a part's row count */
    float *part;                         /* (groups, nchunks, rows, head_dim_v) unnormalised O */
    float *part_mx, *part_sum;           /* (groups, nchunks, rows) */
} split_ctx;

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

/* S (rows x nk, row stride lds) = (scale Q)·Kᵀ for few rows, K read where it is stored
   (kp, row stride fitting an int): dot products against the rows, no transpose. f32
   rows go SATTN__TOUCH_KEYS at a time, each contiguous group first read whole
   (sattn__touch): a cold f32 step measured 20-30% faster with this for K and V together.
   The same for bf16 K under the dot-product form (0-7% faster cold in 7 runs, one a tie), but
   not under the f32 forms of 16-bit K (f16: 5-25% slower), nor for rows apart (BSHD),
   which the tile loop's prefetch asks for and where it measured slower too. */
static void scores_in_place(const fwd_ctx *c, const fwd_scratch *w, int rows, int pairs, float *S, int lds,
                            const char *kp, int nk)
{
    const sattn__problem *pr = c->pr;
    const int d = (int)pr->head_dim, ldk = (int)pr->ks[1];
    const int64_t es = (int64_t)pr->elem_size;
    if (pairs == SATTN__BF16_PAIRS) {
        c->kt->gemm_nt_bf16p(S, lds, w->q, d, (const uint16_t *)kp, ldk, rows, nk, d);
    } else if (pr->dtype == SATTN_F32 || pairs == SATTN__BF16_DOT) {
        for (int j = 0; j < nk; j += SATTN__TOUCH_KEYS) {
            int nb = nk - j < SATTN__TOUCH_KEYS ? nk - j : SATTN__TOUCH_KEYS;
            const char *kj = kp + j * ldk * es;
            if (ldk == d) sattn__touch(kj, nb * d * es);
            if (pairs == SATTN__BF16_DOT)
                c->kt->gemm_nt_bf16dp(S + j, lds, w->qh, d, (const uint16_t *)kj, ldk, rows, nb, d, pr->scale);
            else
                c->kt->gemm_nt(S + j, lds, w->q, d, (const float *)kj, ldk, rows, nb, d);
        }
    } else {
        c->kt->gemm_nt_h(S, lds, w->q, d, (const uint16_t *)kp, ldk, rows, nk, d, (int)pr->dtype);
    }
}

/* O += P·V for nk values read where V is stored (vp); exact (f32 V only) keeps NaN or
   Inf in V out where P is 0. SATTN__TOUCH_KEYS rows at a time, each contiguous group
   first read whole: the kernels walk a row in 64-column panels, half a row (d = 128) at
   a time, and a cold step measured 15-20% faster (f16) with the rows asked for
   together. The kernels add the keys in order, so the groups keep the bits.
   16-bit V in contiguous rows goes to gemm_h_span where the table has it: the same
   groups read whole, but each panel's sums stay in registers across all nk values
   instead of being stored and reloaded every group (the same FMAs in the same order:
   the same bits). Side by side, a decode step warm in L3 (1024 keys) measured 17-20%
   faster for f16 and bf16, a cold one 10-20%; for f32 V the same loop measured 19-31%
   slower cold, so f32 keeps the groups (BENCHMARKS.md). */
static void values_in_place(const fwd_ctx *c, const fwd_scratch *w, int rows, int pairs, const float *P, int lds,
                            const char *vp, int nk, int exact)
{
    const sattn__problem *pr = c->pr;
    const sattn__kernels *kt = c->kt;
    const int dv = (int)pr->head_dim_v, ldv = (int)pr->vs[1];
    const int64_t es = (int64_t)pr->elem_size;
    if (pr->dtype != SATTN_F32 && kt->span_values && ldv == dv && dv % 64 == 0) {
        kt->gemm_h_span(w->o, dv, P, lds, (const uint16_t *)vp, ldv, rows, dv, nk, (int)pr->dtype, pairs != 0);
        return;
    }
    for (int j = 0; j < nk; j += SATTN__TOUCH_KEYS) {
        int nb = nk - j < SATTN__TOUCH_KEYS ? nk - j : SATTN__TOUCH_KEYS;
        const char *vj = vp + j * ldv * es;
        if (ldv == dv) sattn__touch(vj, nb * dv * es);
        if (pairs)
            kt->gemm_bf16p(w->o, dv, P + j, lds, 1, (const uint16_t *)vj, ldv, rows, dv, nb);
        else if (pr->dtype == SATTN_F32)
            kt->gemm(w->o, dv, P + j, lds, 1, (const float *)vj, ldv, rows, dv, nb, 1, exact);
        else
            kt->gemm_h(w->o, dv, P + j, lds, 1, (const uint16_t *)vj, ldv, rows, dv, nb, 1, (int)pr->dtype);
    }
}

static void split_item(const split_ctx *x, int64_t g, int64_t ch, const fwd_scratch *w)
{
    const fwd_ctx *c = x->c;
    const sattn__problem *pr = c->pr;
    const sattn__kernels *kt = c->kt;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v;
    const size_t es = pr->elem_size;
    const int64_t hk = g % pr->heads_kv, h0 = hk * pr->group;
    sattn__seq s;
    sattn__seq_info(pr, g / pr->heads_kv, &s);
    const int L = (int)s.len_q, rows = (int)(pr->group * s.len_q);
    /* K and V are read where they are stored (f32 directly, f16/bf16 converted inside
       the kernels) when their row strides fit the kernels' int strides */
    const int in_place = pr->ks[1] <= INT32_MAX && pr->vs[1] <= INT32_MAX;
    const int few = rows <= SATTN__FEW_ROWS, f32 = pr->dtype == SATTN_F32;
    /* bf16 in pair order where the kernels have it: Q's rows are put in it here (or
       copied as stored, for the dot-product form), O's taken out of it at the end, V
       loaded for a masked tile put in it too */
    int pairs = few && in_place && pr->dtype == SATTN_BF16 && kt->decode_bf16 != SATTN__BF16_PLAIN && d % 32 == 0 &&
                        dv % 32 == 0
                    ? SATTN__BF16_PAIRS
                    : SATTN__BF16_PLAIN;
    if (pairs && kt->decode_bf16 == SATTN__BF16_DOT && w->qh) pairs = SATTN__BF16_DOT;
    /* spans (SATTN__SPAN_KEYS) over contiguous rows when no score rule or dropout needs
       the tile loop (w->span: the scratch was laid out for few rows, rows <= its rows);
       rows apart are asked for a tile ahead instead (below) */
    const int spans = w->span && in_place && pr->ks[1] == d && pr->vs[1] == dv && !pr->has_score_mods &&
                      pr->dropout_p == 0;

    for (int r = 0; r < rows; r++) w->mx[r] = -INFINITY, w->sum[r] = 0.0f;
    memset(w->o, 0, sizeof(float) * (size_t)rows * (size_t)dv);
    if (L > 0) {
        if (pairs == SATTN__BF16_DOT) /* Q·Kᵀ on Q as stored, scaled after: w->q unused */
            for (int64_t hl = 0; hl < pr->group; hl++)
                for (int i = 0; i < L; i++)
                    memcpy(w->qh + (hl * L + i) * d, sattn__at(c->q, sattn__q_elem(&s, pr->qs, i, h0 + hl), es),
                           (size_t)d * sizeof(uint16_t));
        else
            for (int64_t hl = 0; hl < pr->group; hl++)
                sattn__load_rows(w->q + hl * L * d, d, sattn__at(c->q, sattn__q_elem(&s, pr->qs, 0, h0 + hl), es),
                                 pr->qs[1], L, d, pr->dtype, pr->scale);
        if (pairs == SATTN__BF16_PAIRS) pair_order(w->q, rows, d, d, 0);
        int64_t lo, hi, unused;
        sattn__row_range(pr, &s, 0, &lo, &unused);
        sattn__row_range(pr, &s, L - 1, &unused, &hi);
        int64_t c0 = ch * x->chunk_blocks * SATTN__BK, c1 = c0 + x->chunk_blocks * SATTN__BK;
        if (c0 < lo / SATTN__BK * SATTN__BK) c0 = lo / SATTN__BK * SATTN__BK;
        if (c1 > hi) c1 = hi;
        for (int64_t j0 = c0; j0 < c1; j0 += SATTN__BK) {
            int nk = (int)(s.len_kv - j0 < SATTN__BK ? s.len_kv - j0 : SATTN__BK);
            sattn__tile_kind kind = sattn__tile_classify(pr, &s, 0, L, j0, nk);
            if (kind == SATTN__TILE_EMPTY) continue;
            const char *kp = sattn__at(c->k, sattn__kv_elem(&s, pr->ks, j0, hk), es);
            const char *vp = sattn__at(c->v, sattn__kv_elem(&s, pr->vs, j0, hk), es);
            if (spans && kind == SATTN__TILE_FULL) { /* this tile and the full ones after it */
                int64_t j1 = j0 + nk;
                while (j1 < c1 && j1 - j0 < SATTN__SPAN_KEYS) {
                    int nn = (int)(s.len_kv - j1 < SATTN__BK ? s.len_kv - j1 : SATTN__BK);
                    if (sattn__tile_classify(pr, &s, 0, L, j1, nn) != SATTN__TILE_FULL) break;
                    j1 += nn;
                }
                const int n = (int)(j1 - j0);
                scores_in_place(c, w, rows, pairs, w->span, SATTN__SPAN_KEYS, kp, n);
                kt->softmax_online(w->span, SATTN__SPAN_KEYS, rows, n, w->mx, w->sum, w->o, dv, dv);
                values_in_place(c, w, rows, pairs, w->span, SATTN__SPAN_KEYS, vp, n, 0);
                j0 = j1 - SATTN__BK; /* the loop's step: j1 is a tile boundary, or the end */
                continue;
            }
            /* ask for the next tile now where the rows are apart (BSHD: a page apart for
               f32), which the hardware prefetcher does not follow; contiguous rows it
               streams by itself, and asking there was measured 15-20% slower for f16 */
            const int64_t jn = j0 + SATTN__PREFETCH_TILES * SATTN__BK;
            if (jn < c1) {
                int nn = (int)(s.len_kv - jn < SATTN__BK ? s.len_kv - jn : SATTN__BK);
                if (pr->ks[1] != d)
                    sattn__prefetch_rows(sattn__at(c->k, sattn__kv_elem(&s, pr->ks, jn, hk), es),
                                         pr->ks[1] * (int64_t)es, nn, (int64_t)d * (int64_t)es);
                if (pr->vs[1] != dv)
                    sattn__prefetch_rows(sattn__at(c->v, sattn__kv_elem(&s, pr->vs, jn, hk), es),
                                         pr->vs[1] * (int64_t)es, nn, (int64_t)dv * (int64_t)es);
            }
            /* S = (scale Q)·Kᵀ: dot products against K as stored for a few rows (decode);
               past SATTN__FEW_ROWS the register-blocked product on Kᵀ is faster */
            if (rows > SATTN__FEW_ROWS) {
                sattn__load_rows_t(w->kt, SATTN__BK, kp, pr->ks[1], nk, d, pr->dtype);
                kt->gemm(w->s, SATTN__BK, w->q, d, 1, w->kt, SATTN__BK, rows, nk, d, 0, 0);
            } else if (in_place) {
                scores_in_place(c, w, rows, pairs, w->s, SATTN__BK, kp, nk);
            } else {
                sattn__load_rows(w->kt, d, kp, pr->ks[1], nk, d, pr->dtype, 1.0f); /* K rows, not Kᵀ */
                kt->gemm_nt(w->s, SATTN__BK, w->q, d, w->kt, d, rows, nk, d);
            }
            /* only a mask zeroes a weight on purpose: an unmasked tile has no score rules to
               apply and needs no exact product below */
            const int masked = kind == SATTN__TILE_PARTIAL || pr->has_score_mods;
            if (masked)
                for (int64_t hl = 0; hl < pr->group; hl++)
                    sattn__tile_scores(pr, &s, h0 + hl, 0, L, j0, nk, kind, w->s + hl * L * SATTN__BK, SATTN__BK,
                                       NULL);
            kt->softmax_online(w->s, SATTN__BK, rows, nk, w->mx, w->sum, w->o, dv, dv);
            if (pr->dropout_p > 0)
                for (int64_t hl = 0; hl < pr->group; hl++)
                    sattn__tile_dropout_apply(pr, &s, h0 + hl, 0, L, j0, nk, w->s + hl * L * SATTN__BK, SATTN__BK,
                                              w->z);
            /* O += P·V; a masked tile checks V (as f32) where P has zeros: f32 V in place,
               16-bit V loaded (in pair order where O is) */
            if (in_place && (f32 || !masked)) {
                const int exact = f32 && masked &&
                                  needs_exact(w->s, SATTN__BK, rows, nk, (const float *)vp, (int)pr->vs[1], dv);
                values_in_place(c, w, rows, pairs, w->s, SATTN__BK, vp, nk, exact);
            } else {
                sattn__load_rows(w->v, dv, vp, pr->vs[1], nk, dv, pr->dtype, 1.0f);
                if (pairs) pair_order(w->v, nk, dv, dv, 0);
                kt->gemm(w->o, dv, w->s, SATTN__BK, 1, w->v, dv, rows, dv, nk, 1,
                         masked && needs_exact(w->s, SATTN__BK, rows, nk, w->v, dv, dv));
            }
        }
        if (pairs) pair_order(w->o, rows, dv, dv, 1);
    }
    if (x->nchunks == 1) { /* the whole key range: finish here */
        for (int64_t hl = 0; hl < pr->group; hl++)
            finish_rows(c, &s, h0 + hl, 0, L, (int)s.rows_q, w->o + hl * L * dv, w->mx + hl * L, w->sum + hl * L);
        return;
    }
    const size_t slot = (size_t)(g * x->nchunks + ch) * (size_t)x->rows;
    memcpy(x->part + slot * (size_t)dv, w->o, sizeof(float) * (size_t)rows * (size_t)dv);
    memcpy(x->part_mx + slot, w->mx, sizeof(float) * (size_t)rows);
    memcpy(x->part_sum + slot, w->sum, sizeof(float) * (size_t)rows);
}

/* out = sum_c exp(mx_c - M) O_c / sum_c exp(mx_c - M) sum_c, M = max_c mx_c, chunks in order. */
static void split_merge(const split_ctx *x, int64_t g, const fwd_scratch *w)
{
    const fwd_ctx *c = x->c;
    const sattn__problem *pr = c->pr;
    const int dv = (int)pr->head_dim_v;
    const int64_t hk = g % pr->heads_kv, h0 = hk * pr->group;
    sattn__seq s;
    sattn__seq_info(pr, g / pr->heads_kv, &s);
    const int L = (int)s.len_q, rows = (int)(pr->group * s.len_q);
    const size_t base = (size_t)(g * x->nchunks) * (size_t)x->rows;
    for (int r = 0; r < rows; r++) {
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
        finish_rows(c, &s, h0 + hl, 0, L, (int)s.rows_q, w->o + hl * L * dv, w->mx + hl * L, w->sum + hl * L);
}

static sattn_status forward_split(const fwd_ctx *c, int64_t groups, int64_t nkb)
{
    const sattn__problem *pr = c->pr;
    /* about SATTN__SPLIT_ITEMS work items in all, never chunks of fewer than 8 key blocks.
       Fewer, longer items read K and V in longer streams: a cold decode (4096 keys, 8 kv
       heads, bf16) measured 3-8% faster with 16 items than with 32, and 64 items slower
       still; 16 keeps work for up to 16 threads. */
    split_ctx x = {c, 8, 1, pr->group * pr->seq_q, NULL, NULL, NULL};
    if (nkb * groups > SATTN__SPLIT_ITEMS * 8)
        x.chunk_blocks = (nkb * groups + SATTN__SPLIT_ITEMS - 1) / SATTN__SPLIT_ITEMS;
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
    const int threads = sattn__threads_for(c->work, items);
    size_t stride;
    float *scratch = sattn__scratch_alloc(fwd_scratch_floats(pr, (size_t)x.rows), threads, &stride);
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
        fwd_scratch w;
        fwd_scratch_layout(pr, (size_t)x.rows, scratch + (size_t)sattn__thread_id() * stride, &w);
        SATTN__OMP(omp for schedule(dynamic, 1))
        for (int64_t it = 0; it < items; it++) split_item(&x, it / x.nchunks, it % x.nchunks, &w);
        if (x.nchunks > 1) {
            SATTN__OMP(omp for schedule(static))
            for (int64_t g = 0; g < groups; g++) split_merge(&x, g, &w);
        }
        sattn__par_leave(&par, &mark);
    }
    sattn__par_end(&par);
    sattn__scratch_free(scratch);
    free(x.part);
    return SATTN_OK;
}

static sattn_status forward_run(const sattn__problem *prp, const void *q, const void *k, const void *v,
                                void *out, float *lse)
{
    const sattn__problem pr = *prp;
    const sattn_params *p = pr.p;

    const int64_t nqb = (pr.seq_q + SATTN__BQ - 1) / SATTN__BQ;
    const int64_t nkb = (pr.seq_kv + SATTN__BK - 1) / SATTN__BK;
    const int64_t groups = pr.batch * pr.heads_kv;
    const int64_t items_per_group = pr.group * nqb;
    if (groups * items_per_group == 0) return SATTN_OK;

    fwd_ctx c = {&pr, sattn__kernels_get(), q, k, v, out, lse, NULL, NULL, 0, nkb, 0, 0};
    /* flops of the whole call (Q·Kᵀ and P·V), about half under a causal rule */
    c.work = 2.0 * (double)pr.batch * (double)pr.heads_q * (double)pr.seq_q * (double)pr.seq_kv *
             (double)(pr.head_dim + pr.head_dim_v) * (p->causal ? 0.5 : 1.0);
    if (pr.group * pr.seq_q <= SATTN__BQ) return forward_split(&c, groups, nkb);
    c.block_floats = (size_t)SATTN__BK * (size_t)(pr.head_dim + pr.head_dim_v);
    /* Pack when a panel is read by more than one query block and a group fits the cap. */
    size_t group_bytes = (size_t)nkb * c.block_floats * sizeof(float) + (size_t)nkb;
    int64_t chunk = groups;
    if (items_per_group > 1 && nkb > 0 && group_bytes <= SATTN__PACK_BYTES) {
        chunk = (int64_t)(SATTN__PACK_BYTES / group_bytes);
        if (chunk > groups) chunk = groups;
        c.pack = malloc((size_t)chunk * group_bytes);
        if (!c.pack) return sattn__fail_nomem((size_t)chunk * group_bytes);
        c.bad = (uint8_t *)(c.pack + (size_t)(chunk * nkb) * c.block_floats);
    }
    const int threads = sattn__threads_for(c.work, chunk * items_per_group);
    size_t stride;
    float *scratch = sattn__scratch_alloc(fwd_scratch_floats(&pr, SATTN__BQ), threads, &stride);
    if (!scratch) {
        free(c.pack);
        return SATTN_ERR_NOMEM;
    }

    for (int64_t g0 = 0; g0 < groups; g0 += chunk) {
        const int64_t ng = groups - g0 < chunk ? groups - g0 : chunk;
        c.g0 = g0;
        sattn__par par;
        sattn__par_begin(&par, threads);
        SATTN__OMP(omp parallel num_threads(threads) if (threads > 1))
        {
            sattn__par_mark mark;
            sattn__par_enter(&par, &mark);
            if (c.pack) {
                SATTN__OMP(omp for schedule(static))
                for (int64_t it = 0; it < ng * nkb; it++) pack_block(&c, g0 + it / nkb, it % nkb);
            }
            fwd_scratch w;
            fwd_scratch_layout(&pr, SATTN__BQ, scratch + (size_t)sattn__thread_id() * stride, &w);
            /* Each item is computed by one thread alone: any schedule gives the same bits. */
            SATTN__OMP(omp for schedule(dynamic, 1))
            for (int64_t it = 0; it < ng * items_per_group; it++) {
                int64_t g = g0 + it / items_per_group, r = it % items_per_group;
                /* query blocks last to first: under causal masks the long rows go out
                   first and the short ones fill in at the end */
                int64_t h = (g % pr.heads_kv) * pr.group + r / nqb, qb = nqb - 1 - r % nqb;
                sattn__seq s;
                sattn__seq_info(&pr, g / pr.heads_kv, &s);
                int64_t i0 = qb * SATTN__BQ;
                if (i0 >= s.rows_q) continue;
                int mq = (int)(s.rows_q - i0 < SATTN__BQ ? s.rows_q - i0 : SATTN__BQ);
                forward_block(&c, &s, h, i0, mq, &w);
            }
            sattn__par_leave(&par, &mark);
        }
        sattn__par_end(&par);
    }
    sattn__scratch_free(scratch);
    free(c.pack);
    return SATTN_OK;
}

sattn_status sattn_forward(const sattn_params *p, const void *q, const void *k, const void *v,
                           void *out, float *lse)
{
    sattn__problem pr;
    sattn_status st = sattn__prepare(&pr, p, SATTN__FORWARD, q, k, v, out, lse, NULL, NULL, NULL, NULL);
    if (st != SATTN_OK) return st;
    return forward_run(&pr, q, k, v, out, lse);
}

sattn_status sattn_forward_part(const sattn_params *p, const sattn_part *part, const void *q, const void *k,
                                const void *v, void *out, float *lse)
{
    sattn__problem pr;
    sattn_params local;
    sattn_status st = sattn__prepare_part(&pr, &local, p, part, SATTN__FORWARD, q, k, v, out, lse, NULL, NULL,
                                          NULL, NULL);
    if (st != SATTN_OK) return st;
    return forward_run(&pr, q, k, v, out, lse);
}
