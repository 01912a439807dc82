/* Fused attention forward: query blocks x key blocks with an online softmax
 * (FlashAttention), never a seq_q x seq_kv matrix.
 *
 * K and V are packed once per (batch, kv head) into f32 panels, Kᵀ per key block so
 * that Q·Kᵀ is the kernel's A·B, and reused by every query block of every query head of
 * the group. Groups are packed in chunks of at most SATTN__PACK_BYTES; a larger group
 * reads its tiles straight from the inputs. Each (batch, head, query block) is one work
 * item, owned by one thread, so results do not depend on the thread count. When a
 * group's query rows fit one block (decode), decode.c takes the call instead.
 *
 * With bf16 products (SATTN_PRODUCTS_BF16, prob->bf16_products) the panels hold the
 * stored bf16 values in the pair forms of the kernels' gemm_dp instead: Kᵀ as pairs of
 * dims, V as pairs of key rows, half the bytes of the f32 panels; Q stays as stored,
 * the scale is applied to the sums, and the weights are rounded to bf16 for P·V. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "sattn_internal.h"

#define SATTN__PACK_BYTES ((size_t)48 << 20) /* 65536 keys x d=64 pack in 32 MiB */
#define SATTN__RUN_TILES 4 /* fully visible tiles computed side by side (full_run) */

typedef struct fwd_ctx {
    const sattn__problem *pr;
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
    /* Without score rules (softcap, ALiBi, bias, mask) the scores are computed in units
       of log2 e (Q times scale log2 e) and the softmax takes exp2 of them: the masks'
       -inf means the same in any unit, and the row max is taken back to natural units
       (times ln 2) before the lse is written. */
    int log2;
    float q_scale; /* scale, times log2 e where log2 */
    void (*softmax)(float *S, int lds, int m, int n, float *mx, float *sum, float *O, int ldo, int dv);
} fwd_ctx;

/* Floats of one key block's bf16 pair panels: Kᵀ as (d2, BK) pairs, V as (BK / 2, dv)
   pairs. */
static size_t pair_block_floats(const sattn__problem *pr)
{
    return (size_t)((pr->head_dim + 1) / 2) * SATTN__BK + (size_t)SATTN__BK / 2 * (size_t)pr->head_dim_v;
}

/* Per-thread scratch, in floats. */
typedef struct fwd_scratch {
    float *q;   /* (BQ, head_dim)   the query block, pre-multiplied by scale */
    float *kt;  /* (head_dim, BK)   one key block, transposed */
    float *v;   /* (BK, head_dim_v) one value block */
    float *s;   /* (BQ, RUN_TILES BK) scores, then probabilities */
    float *z;   /* (BQ, RUN_TILES BK) dropout keep factors */
    float *o;   /* (BQ, head_dim_v) unnormalised output accumulator */
    /* bf16 products only (else NULL): */
    uint16_t *q2;  /* (BQ, 2 d2)       the query block as stored, d2 = ceil(head_dim / 2) */
    uint16_t *p2;  /* (BQ, RUN_TILES BK) the weights rounded to bf16 */
    uint16_t *kv2; /* one key block's pair panels, as pack_block_pairs lays them out */
    float *mx;  /* (BQ)             running row max */
    float *sum; /* (BQ)             running row sum of exp(s - mx) */
} fwd_scratch;

/* Lays out one thread's scratch from base (NULL: only measures); returns its floats. */
static size_t fwd_scratch_layout(const sattn__problem *pr, float *base, fwd_scratch *w)
{
    size_t d = (size_t)pr->head_dim, dv = (size_t)pr->head_dim_v, off = 0;
    w->q = sattn__carve(base, &off, SATTN__BQ * d);
    w->kt = sattn__carve(base, &off, d * SATTN__BK);
    w->v = sattn__carve(base, &off, SATTN__BK * dv);
    w->s = sattn__carve(base, &off, SATTN__BQ * SATTN__RUN_TILES * SATTN__BK);
    w->z = sattn__carve(base, &off, SATTN__BQ * SATTN__RUN_TILES * SATTN__BK);
    w->o = sattn__carve(base, &off, SATTN__BQ * dv);
    w->q2 = w->p2 = w->kv2 = NULL;
    if (pr->bf16_products) { /* two bf16 per float */
        size_t d2 = (d + 1) / 2;
        w->q2 = (uint16_t *)sattn__carve(base, &off, SATTN__BQ * d2);
        w->p2 = (uint16_t *)sattn__carve(base, &off, SATTN__BQ * SATTN__RUN_TILES * SATTN__BK / 2);
        w->kv2 = (uint16_t *)sattn__carve(base, &off, pair_block_floats(pr));
    }
    w->mx = sattn__carve(base, &off, SATTN__BQ);
    w->sum = sattn__carve(base, &off, SATTN__BQ);
    return off;
}

/* ---- key and value panels ---- */

/* The pair panels (kernels.h, gemm_dp) of nk <= BK bf16 key rows k and value rows v (row
   strides ks, vs in elements): kp[p][j] = (k[j][2p], k[j][2p+1]) and vp[p][c] =
   (v[2p][c], v[2p+1][c]), zeros past nk and past head_dim. Returns 1 if V holds NaN or
   Inf. */
static int pack_block_pairs(const sattn__problem *pr, uint16_t *kp, const uint16_t *k, int64_t ks,
                            const uint16_t *v, int64_t vs, int nk)
{
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v, d2 = (d + 1) / 2, whole = d / 2;
    if (nk < SATTN__BK || d % 2) memset(kp, 0, sizeof(uint16_t) * 2 * (size_t)d2 * SATTN__BK);
    /* Kᵀ: a transpose of pairs of dims (moved as the stored bits: every pattern survives) */
    for (int j = 0; j < nk; j++) {
        const uint16_t *row = k + j * ks;
        for (int p = 0; p < whole; p++) {
            uint16_t *to = kp + 2 * ((size_t)p * SATTN__BK + (size_t)j);
            to[0] = row[2 * p], to[1] = row[2 * p + 1];
        }
        if (d % 2) kp[2 * ((size_t)whole * SATTN__BK + (size_t)j)] = row[d - 1];
    }
    /* V: rows 2p and 2p + 1 interleaved, row 2p first in each pair */
    uint16_t *vp = kp + 2 * (size_t)d2 * SATTN__BK;
    unsigned bad = 0;
    for (int j = 0; j < nk; j += 2) {
        const uint16_t *r0 = v + j * vs, *r1 = j + 1 < nk ? r0 + vs : NULL;
        uint16_t *out = vp + (size_t)j * (size_t)dv; /* pair row j / 2 */
        for (int c = 0; c < dv; c++) {
            const uint16_t x0 = r0[c], x1 = r1 ? r1[c] : 0;
            out[2 * c] = x0, out[2 * c + 1] = x1;
            bad |= ((x0 & 0x7f80u) == 0x7f80u) | ((x1 & 0x7f80u) == 0x7f80u); /* exponent all ones */
        }
    }
    return bad != 0;
}

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
    if (pr->bf16_products) {
        c->bad[idx] = (uint8_t)pack_block_pairs(
            pr, (uint16_t *)kt, (const uint16_t *)c->k + sattn__kv_elem(&s, pr->ks, j0, hk), pr->ks[1],
            (const uint16_t *)c->v + sattn__kv_elem(&s, pr->vs, j0, hk), pr->vs[1], nk);
        return;
    }
    sattn__load_rows_t(pr->kt, kt, SATTN__BK, sattn__at(c->k, sattn__kv_elem(&s, pr->ks, j0, hk), es),
                       pr->ks[1], nk, d, pr->dtype);
    float *vp = kt + (size_t)d * SATTN__BK;
    sattn__load_rows(pr->kt, vp, dv, sattn__at(c->v, sattn__kv_elem(&s, pr->vs, j0, hk), es), pr->vs[1], nk, dv,
                     pr->dtype, 1.0f);
    c->bad[idx] = (uint8_t)sattn__rows_nonfinite(vp, dv, nk, dv);
}

typedef struct kv_tile {
    const float *kt;  /* (head_dim, BK) */
    const float *v;   /* (nk, head_dim_v) */
    const uint16_t *k2, *v2; /* with bf16 products instead: the pair panels */
    int v_bad;        /* V holds NaN or Inf */
} kv_tile;

/* The Kᵀ and V tiles of key rows j0.. (nk) of kv head hk: from the panels, or loaded. */
static kv_tile kv_block(const fwd_ctx *c, const sattn__seq *s, int64_t hk, int64_t j0, int nk,
                        const fwd_scratch *w)
{
    const sattn__problem *pr = c->pr;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v;
    kv_tile t;
    const size_t pair_k = 2 * (size_t)((d + 1) / 2) * SATTN__BK; /* bf16 of the Kᵀ pairs */
    if (c->pack) {
        size_t idx = (size_t)((s->b * pr->heads_kv + hk - c->g0) * c->nkb + j0 / SATTN__BK);
        t.kt = c->pack + idx * c->block_floats;
        t.v = t.kt + (size_t)d * SATTN__BK;
        t.k2 = (const uint16_t *)t.kt;
        t.v2 = t.k2 + pair_k;
        t.v_bad = c->bad[idx];
        return t;
    }
    if (pr->bf16_products) {
        t.v_bad = pack_block_pairs(pr, w->kv2, (const uint16_t *)c->k + sattn__kv_elem(s, pr->ks, j0, hk), pr->ks[1],
                                   (const uint16_t *)c->v + sattn__kv_elem(s, pr->vs, j0, hk), pr->vs[1], nk);
        t.k2 = w->kv2;
        t.v2 = w->kv2 + pair_k;
        t.kt = t.v = NULL;
        return t;
    }
    t.k2 = t.v2 = NULL;
    const size_t es = pr->elem_size;
    sattn__load_rows_t(pr->kt, w->kt, SATTN__BK, sattn__at(c->k, sattn__kv_elem(s, pr->ks, j0, hk), es),
                       pr->ks[1], nk, d, pr->dtype);
    sattn__load_rows(pr->kt, w->v, dv, sattn__at(c->v, sattn__kv_elem(s, pr->vs, j0, hk), es), pr->vs[1], nk, dv,
                     pr->dtype, 1.0f);
    t.v_bad = sattn__rows_nonfinite(w->v, dv, nk, dv);
    t.kt = w->kt;
    t.v = w->v;
    return t;
}

/* ---- one query block ---- */

void sattn__finish_rows(const sattn__problem *pr, void *out, float *lse, const sattn__seq *s, int64_t h, int64_t i0,
                        int mv, int mq, float *o, const float *mx, const float *sum)
{
    const int dv = (int)pr->head_dim_v;
    const size_t es = pr->elem_size;
    float *lrow = lse ? lse + s->lse_row0 + h * s->lse_hstride + i0 : NULL;
    if (lrow)
        for (int r = 0; r < mv; r++) lrow[r] = sum[r] > 0 ? mx[r] + logf(sum[r]) : -INFINITY; /* every key masked */
    if (mq == 0) return; /* a sequence with no rows: out may be NULL (every cu_seqlens_q empty) */
    char *obase = (char *)out + sattn__q_elem(s, pr->os, i0, h) * (int64_t)es;
    /* out = o / sum, the division folded into the store (kept weights already carry
       1/(1-p)); a row with every key masked has o = 0 and sum = 0 */
    for (int r = 0; r < mv; r++)
        pr->kt->store_row(obase + r * pr->os[1] * (int64_t)es, o + (size_t)r * (size_t)dv, dv, (int)pr->dtype,
                          sum[r] > 0 ? 1.0f / sum[r] : 1.0f);
    if (mv < mq) {
        sattn__zero_rows(obase + mv * pr->os[1] * (int64_t)es, pr->os[1], mq - mv, dv, pr->dtype);
        if (lrow)
            for (int r = mv; r < mq; r++) lrow[r] = -INFINITY;
    }
}

/* One step of the online softmax for rows r0 .. r0+mb-1 of the block (query rows
   i0 + r0 ..) of head h against nt key tiles side by side from key j0 (tile u: t[u],
   nks[u] keys), in S's columns u BK ..: S = (scale Q) · Kᵀ tile by tile, the score
   rules of kind, the softmax step, dropout, then O += P · V tile by tile (the exact form
   where V holds NaN or Inf: masked keys may hold any bits). The kernels add each row's
   terms in the same order whatever r0 and mb. */
static void block_step(const fwd_ctx *c, const sattn__seq *s, int64_t h, int64_t i0, int r0, int mb, int64_t j0,
                       const kv_tile *t, const int *nks, int nt, sattn__tile_kind kind, const fwd_scratch *w)
{
    const sattn__problem *pr = c->pr;
    const sattn__kernels *kt = pr->kt;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v, lds = SATTN__RUN_TILES * SATTN__BK;
    const int d2 = (d + 1) / 2;
    float *S = w->s + (size_t)r0 * (size_t)lds, *O = w->o + (size_t)r0 * (size_t)dv;
    int n = 0;
    for (int u = 0; u < nt; u++) {
        if (pr->bf16_products)
            kt->gemm_dp(S + u * SATTN__BK, lds, w->q2 + (size_t)r0 * 2 * (size_t)d2, 2 * d2, t[u].k2, SATTN__BK, mb,
                        nks[u], d2, 0, c->q_scale, 0);
        else
            kt->gemm(S + u * SATTN__BK, lds, w->q + (size_t)r0 * (size_t)d, d, 1, t[u].kt, SATTN__BK, mb, nks[u], d,
                     0, 0);
        n += nks[u];
    }
    if (kind == SATTN__TILE_PARTIAL || pr->has_score_mods)
        sattn__tile_scores(pr, s, h, i0 + r0, mb, j0, n, kind, S, lds, NULL);
    c->softmax(S, lds, mb, n, w->mx + r0, w->sum + r0, O, dv, dv);
    if (pr->dropout_p > 0) sattn__tile_dropout_apply(pr, s, h, i0 + r0, mb, j0, n, S, lds, w->z);
    if (pr->bf16_products) {
        /* the weights rounded to bf16 (a pass of its own: rounding inside the softmax's
           exp loop was slower, BENCHMARKS.md); only the run's last tile can be short, so
           an odd n pads one weight at its end */
        uint16_t *P = w->p2 + (size_t)r0 * (size_t)lds;
        for (int r = 0; r < mb; r++) {
            kt->store_row(P + (size_t)r * lds, S + (size_t)r * lds, n, SATTN_BF16, 1.0f);
            if (n % 2) P[(size_t)r * lds + n] = 0;
        }
        for (int u = 0; u < nt; u++)
            kt->gemm_dp(O, dv, P + u * SATTN__BK, lds, t[u].v2, dv, mb, dv, (nks[u] + 1) / 2, 1, 1.0f, t[u].v_bad);
        return;
    }
    for (int u = 0; u < nt; u++)
        kt->gemm(O, dv, S + u * SATTN__BK, lds, 1, t[u].v, dv, mb, dv, nks[u], 1, t[u].v_bad);
}

/* The fully visible tiles from j0 (before hi) that rows i0 .. i0+mv-1 of kv head hk take
   as one run, up to SATTN__RUN_TILES of them, from the packed panels, into t and nks;
   returns how many (at least the tile at j0, which the caller found fully visible). A
   run's scores sit side by side in one S, so that each row pays its softmax step's fixed
   costs (the max and sum reductions, the rescale of O) once per run, not per tile. */
static int full_run(const fwd_ctx *c, const sattn__seq *s, int64_t hk, int64_t i0, int mv, int64_t j0, int64_t hi,
                    kv_tile *t, int *nks, const fwd_scratch *w)
{
    int nt = 0;
    for (int64_t j = j0; nt < SATTN__RUN_TILES && j < hi; j += SATTN__BK) {
        const int nk = (int)(s->len_kv - j < SATTN__BK ? s->len_kv - j : SATTN__BK);
        if (nt > 0 &&
            (nks[nt - 1] < SATTN__BK || sattn__tile_classify(c->pr, s, i0, mv, j, nk) != SATTN__TILE_FULL))
            break;
        t[nt] = kv_block(c, s, hk, j, nk, w);
        nks[nt++] = nk;
    }
    return nt;
}

/* out rows i0 .. i0+mq-1 of head h of sequence s, and their lse. */
static void forward_block(const fwd_ctx *c, const sattn__seq *s, int64_t h, int64_t i0, int mq,
                          const fwd_scratch *w)
{
    const sattn__problem *pr = c->pr;
    const int d = (int)pr->head_dim, dv = (int)pr->head_dim_v;
    const int64_t hk = h / pr->group;
    const size_t es = pr->elem_size;
    /* rows at or past len_q are padding: zeros, lse = -inf */
    int mv = (int)(s->len_q - i0 < mq ? (s->len_q - i0 > 0 ? s->len_q - i0 : 0) : mq);

    for (int r = 0; r < mv; r++) w->mx[r] = -INFINITY, w->sum[r] = 0.0f;
    memset(w->o, 0, sizeof(float) * (size_t)mv * (size_t)dv);

    if (mv > 0) {
        if (pr->bf16_products) { /* as stored, one zero column past an odd head_dim */
            const int ld2 = 2 * ((d + 1) / 2);
            const uint16_t *q = (const uint16_t *)c->q + sattn__q_elem(s, pr->qs, i0, h);
            for (int r = 0; r < mv; r++) {
                memcpy(w->q2 + (size_t)r * ld2, q + r * pr->qs[1], sizeof(uint16_t) * (size_t)d);
                if (d % 2) w->q2[(size_t)r * ld2 + d] = 0;
            }
        } else
            sattn__load_rows(pr->kt, w->q, d, sattn__at(c->q, sattn__q_elem(s, pr->qs, i0, h), es), pr->qs[1],
                             mv, d, pr->dtype, c->q_scale);
        int64_t lo, hi, unused;
        sattn__row_range(pr, s, i0, &lo, &unused);
        sattn__row_range(pr, s, i0 + mv - 1, &unused, &hi);
        for (int64_t j0 = lo / SATTN__BK * SATTN__BK; j0 < hi;) {
            const int nk = (int)(s->len_kv - j0 < SATTN__BK ? s->len_kv - j0 : SATTN__BK);
            const sattn__tile_kind kind = sattn__tile_classify(pr, s, i0, mv, j0, nk);
            kv_tile t[SATTN__RUN_TILES];
            int nks[SATTN__RUN_TILES];
            if (kind == SATTN__TILE_FULL) { /* a run of full tiles from the panels, or this one loaded */
                int nt = 1;
                if (c->pack) nt = full_run(c, s, hk, i0, mv, j0, hi, t, nks, w);
                else t[0] = kv_block(c, s, hk, j0, nk, w), nks[0] = nk;
                block_step(c, s, h, i0, 0, mv, j0, t, nks, nt, kind, w);
                for (int u = 0; u < nt; u++) j0 += nks[u];
                continue;
            }
            if (kind == SATTN__TILE_PARTIAL) {
                /* in bands of SATTN__BAND rows, each only up to the last key its last row
                   sees (and skipped where its rows see none of the tile): on the diagonal
                   tile of a causal mask that leaves out 3/8 of the products */
                t[0] = kv_block(c, s, hk, j0, nk, w);
                for (int r0 = 0; r0 < mv; r0 += SATTN__BAND) {
                    const int mb = mv - r0 < SATTN__BAND ? mv - r0 : SATTN__BAND;
                    const int nb = sattn__band_keys(pr, s, i0 + r0, mb, j0, nk);
                    if (nb > 0) block_step(c, s, h, i0, r0, mb, j0, t, &nb, 1, kind, w);
                }
            }
            j0 += SATTN__BK;
        }
    }

    if (c->log2)
        for (int r = 0; r < mv; r++) w->mx[r] *= 0.693147180559945309f; /* ln 2: back to natural units */
    sattn__finish_rows(pr, c->out, c->lse, s, h, i0, mv, mq, w->o, w->mx, w->sum);
}

static sattn_status forward_run(const sattn__problem *prp, const void *q, const void *k, const void *v,
                                void *out, float *lse)
{
    const sattn__problem pr = *prp;

    const int64_t nqb = (pr.seq_q + SATTN__BQ - 1) / SATTN__BQ;
    const int64_t nkb = (pr.seq_kv + SATTN__BK - 1) / SATTN__BK;
    const int64_t groups = pr.batch * pr.heads_kv;
    const int64_t items_per_group = pr.group * nqb;
    if (groups * items_per_group == 0) return SATTN_OK;

    fwd_ctx c = {&pr, q, k, v, out, lse, NULL, NULL, 0, nkb, 0, 0, 0, pr.scale, pr.kt->softmax_online};
    if (!pr.has_score_mods) {
        c.log2 = 1;
        c.q_scale = pr.scale * 1.44269504088896341f; /* log2 e */
        c.softmax = pr.kt->softmax_online_log2;
    }
    /* flops of the whole call (Q·Kᵀ and P·V), about half under a causal rule */
    c.work = 2.0 * (double)pr.batch * (double)pr.heads_q * (double)pr.seq_q * (double)pr.seq_kv *
             (double)(pr.head_dim + pr.head_dim_v) * (pr.causal ? 0.5 : 1.0);
    if (pr.group * pr.seq_q <= SATTN__BQ) return sattn__decode(&pr, q, k, v, out, lse, c.work);
    c.block_floats = pr.bf16_products ? pair_block_floats(&pr) : (size_t)SATTN__BK * (size_t)(pr.head_dim + pr.head_dim_v);
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
    fwd_scratch unused;
    size_t stride;
    float *scratch = sattn__scratch_alloc(fwd_scratch_layout(&pr, NULL, &unused), threads, &stride);
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
            fwd_scratch_layout(&pr, scratch + (size_t)sattn__thread_id() * stride, &w);
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
