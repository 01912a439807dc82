/* Sequence-parallel attention over MPI: ring and Ulysses (include/sattn_sp.h).
 *
 * Data flow of a call:
 *   1. check the arguments on every rank, allocate every buffer, fingerprint the
 *      parameters; one Allreduce agrees on the status (and finds differing fields),
 *      so a refusal is collective and no rank is left waiting in a transfer;
 *   2. convert this rank's shards into packed f32 buffers [batch][rows][heads][dim];
 *   3. ring or Ulysses, calling sattn_forward_part / sattn_backward_part with the
 *      global positions of the rows at hand;
 *   4. a second Allreduce agrees that every rank's kernels succeeded (out of memory
 *      inside a kernel), and only then are the outputs written (rounded once).
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sattn_sp.h"
#include "../convert.h"

/* ---- errors and measurement ---- */

#define MSG_LEN 512
static _Thread_local char sp_msg[MSG_LEN];
static sattn_sp_stats sp_stats;
static sattn_sp_bench sp_bench = SATTN_SP_BENCH_OFF;

const char *sattn_sp_last_error(void) { return sp_msg; }
void sattn_sp_get_stats(sattn_sp_stats *s)
{
    if (s) *s = sp_stats;
}
void sattn_sp_set_bench_mode(sattn_sp_bench mode) { sp_bench = mode; }

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static sattn_status fail(sattn_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sp_msg, sizeof sp_msg, fmt, ap);
    va_end(ap);
    return st;
}

/* ---- the problem as this rank sees it ---- */

/* Rows of one rank's shard: one chunk (contiguous) or two (zigzag), each at a global
   start, at a local row offset. */
typedef struct {
    int n;
    int64_t start[2], len[2], off[2];
} shard_map;

static void shard_of(sattn_sp_shard shard, int64_t seq, int P, int x, shard_map *m)
{
    if (shard == SATTN_SP_CONTIGUOUS) {
        int64_t n = seq / P;
        m->n = 1, m->start[0] = x * n, m->len[0] = n, m->off[0] = 0;
    } else {
        int64_t c = seq / (2 * P);
        m->n = 2;
        m->start[0] = x * c, m->len[0] = c, m->off[0] = 0;
        m->start[1] = (2 * (int64_t)P - 1 - x) * c, m->len[1] = c, m->off[1] = c;
    }
}

typedef struct {
    MPI_Comm comm;
    int P, rank;
    sattn_sp_method method;
    sattn_sp_shard shard;
    const sattn_params *p;
    int64_t B, Sq, Skv, Hq, Hkv, d, dv;
    int64_t nq, nkv;              /* rows of this rank's shards */
    int64_t qs[3], ks[3], vs[3], os[3]; /* resolved strides of the user's shards */
    double t_compute, t_wait;
    int64_t bytes, messages, computed, skipped, peak;
    sattn_status kernel_status;   /* the first failure of a kernel call on this rank */
    char kernel_msg[MSG_LEN];
} sp_ctx;

static double now(void) { return MPI_Wtime(); }

/* ---- checks ---- */

static sattn_status resolve(const char *name, const int64_t in[3], int64_t out[3], int64_t rows, int64_t heads,
                            int64_t dim)
{
    if (in[0] == 0 && in[1] == 0 && in[2] == 0) {
        out[2] = dim, out[1] = heads * dim, out[0] = rows * heads * dim;
        return SATTN_OK;
    }
    for (int a = 0; a < 3; a++) {
        if (in[a] < 0) return fail(SATTN_ERR_INVALID, "%s[%d] must be >= 0 (got %lld)", name, a, (long long)in[a]);
        out[a] = in[a];
    }
    return SATTN_OK;
}

/* A written tensor must not overlap itself: sorted by stride, each axis of extent > 1
   steps past what the inner axes span. */
static sattn_status no_overlap(const char *name, const int64_t st[3], const int64_t ext[3], int64_t dim)
{
    int64_t s[4] = {1, 0, 0, 0}, e[4] = {dim, 0, 0, 0};
    int n = 1;
    for (int a = 0; a < 3; a++) {
        if (ext[a] == 0) return SATTN_OK;
        if (ext[a] > 1) s[n] = st[a], e[n] = ext[a], n++;
    }
    for (int x = 1; x < n; x++)
        for (int y = x; y > 0 && s[y] < s[y - 1]; y--) {
            int64_t ts = s[y], te = e[y];
            s[y] = s[y - 1], e[y] = e[y - 1], s[y - 1] = ts, e[y - 1] = te;
        }
    int64_t span = 0;
    for (int x = 0; x < n; x++) {
        if (x > 0 && s[x] <= span)
            return fail(SATTN_ERR_INVALID, "%s lays out its shard so that it overlaps itself", name);
        if (s[x] > (INT64_MAX - span) / (e[x] > 1 ? e[x] - 1 : 1))
            return fail(SATTN_ERR_INVALID, "%s: the strides reach past an int64 offset", name);
        span += s[x] * (e[x] - 1);
    }
    return SATTN_OK;
}

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *c = data;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

/* Fingerprints of the fields every rank must agree on, one per field, and their names. */
enum { FP_METHOD, FP_SHAPE, FP_DTYPE, FP_SCALE, FP_CAUSAL, FP_WINDOW, FP_SEQLENS_Q, FP_SEQLENS_KV, FP_ALIBI,
       FP_SOFTCAP, FP_DROPOUT, FP_N };
static const char *fp_name[FP_N] = {"method or shard", "the shape (batch, seq_q, seq_kv, heads, head dims)",
                                    "dtype", "scale", "causal", "window_left / window_right",
                                    "seqlens_q", "seqlens_kv", "alibi_slopes", "softcap",
                                    "dropout_p or seed"};

static void fingerprint(const sp_ctx *c, uint64_t fp[FP_N])
{
    const sattn_params *p = c->p;
    const uint64_t h0 = 0xcbf29ce484222325ull;
    int32_t ms[2] = {(int32_t)c->method, (int32_t)c->shard};
    int64_t shape[7] = {p->batch, p->seq_q, p->seq_kv, p->heads_q, c->Hkv, p->head_dim, c->dv};
    fp[FP_METHOD] = fnv(h0, ms, sizeof ms);
    fp[FP_SHAPE] = fnv(h0, shape, sizeof shape);
    fp[FP_DTYPE] = fnv(h0, &p->dtype, sizeof p->dtype);
    fp[FP_SCALE] = fnv(h0, &p->scale, sizeof p->scale);
    fp[FP_CAUSAL] = fnv(h0, &p->causal, sizeof p->causal);
    int64_t w[2] = {p->window_left > 0 ? p->window_left : 0, p->window_right > 0 ? p->window_right : 0};
    fp[FP_WINDOW] = fnv(h0, w, sizeof w);
    fp[FP_SEQLENS_Q] = p->seqlens_q ? fnv(h0 + 1, p->seqlens_q, sizeof(int32_t) * (size_t)p->batch) : h0;
    fp[FP_SEQLENS_KV] = p->seqlens_kv ? fnv(h0 + 1, p->seqlens_kv, sizeof(int32_t) * (size_t)p->batch) : h0;
    fp[FP_ALIBI] = p->alibi_slopes ? fnv(h0 + 1, p->alibi_slopes, sizeof(float) * (size_t)p->heads_q) : h0;
    fp[FP_SOFTCAP] = fnv(h0, &p->softcap, sizeof p->softcap);
    float dp = p->dropout_p;
    uint64_t seed = dp > 0 ? p->seed : 0;
    fp[FP_DROPOUT] = fnv(fnv(h0, &dp, sizeof dp), &seed, sizeof seed);
}

static sattn_status check_local(sp_ctx *c, int backward, const void *q, const void *k, const void *v,
                                const void *out, const float *lse, const void *dout, const void *dq,
                                const void *dk, const void *dv)
{
    const sattn_params *p = c->p;
    if (c->method != SATTN_SP_RING && c->method != SATTN_SP_ULYSSES)
        return fail(SATTN_ERR_INVALID, "method must be SATTN_SP_RING or SATTN_SP_ULYSSES (got %d)", (int)c->method);
    if (c->shard != SATTN_SP_CONTIGUOUS && c->shard != SATTN_SP_ZIGZAG)
        return fail(SATTN_ERR_INVALID, "shard must be SATTN_SP_CONTIGUOUS or SATTN_SP_ZIGZAG (got %d)", (int)c->shard);
    if (p->bias || p->mask)
        return fail(SATTN_ERR_UNSUPPORTED, "bias and mask are not supported across ranks: each is seq_q x seq_kv "
                                           "per head, which a rank holding seq / P rows cannot be given");
    if (p->cu_seqlens_q || p->cu_seqlens_kv)
        return fail(SATTN_ERR_UNSUPPORTED, "cu_seqlens_q / cu_seqlens_kv are not supported across ranks (a packed "
                                           "batch's sequence boundaries would have to be mapped onto the shards): "
                                           "use batch with seqlens_q / seqlens_kv");
    if (p->batch < 1 || p->heads_q < 1 || p->head_dim < 1 || p->head_dim > 4096 || p->head_dim_v < 0 ||
        p->head_dim_v > 4096 || p->heads_kv < 0 || p->seq_q < 0 || p->seq_kv < 0 || p->seq_q > INT32_MAX ||
        p->seq_kv > INT32_MAX || p->batch > INT32_MAX || p->heads_q > INT32_MAX)
        return fail(SATTN_ERR_INVALID, "batch, heads_q, head_dim >= 1, head dims <= 4096, seq_q, seq_kv in "
                                       "[0, 2^31): got batch %lld heads_q %lld head_dim %lld seq_q %lld seq_kv %lld",
                    (long long)p->batch, (long long)p->heads_q, (long long)p->head_dim, (long long)p->seq_q,
                    (long long)p->seq_kv);
    if (c->Hq % c->Hkv != 0)
        return fail(SATTN_ERR_INVALID, "heads_q (%lld) must be a multiple of heads_kv (%lld)", (long long)c->Hq,
                    (long long)c->Hkv);
    if (p->dtype != SATTN_F32 && p->dtype != SATTN_F16 && p->dtype != SATTN_BF16)
        return fail(SATTN_ERR_INVALID, "dtype must be SATTN_F32, SATTN_F16 or SATTN_BF16 (got %d)", (int)p->dtype);
    const int64_t div = c->shard == SATTN_SP_ZIGZAG ? 2 * (int64_t)c->P : c->P;
    if (p->seq_q % div || p->seq_kv % div)
        return fail(SATTN_ERR_INVALID, "seq_q (%lld) and seq_kv (%lld) must divide by %lld (%s over %d ranks)",
                    (long long)p->seq_q, (long long)p->seq_kv, (long long)div,
                    c->shard == SATTN_SP_ZIGZAG ? "2P: zigzag" : "P: contiguous", c->P);
    if (c->method == SATTN_SP_ULYSSES && c->Hq % c->P)
        return fail(SATTN_ERR_INVALID, "Ulysses splits the query heads: heads_q (%lld) must divide by the %d ranks",
                    (long long)c->Hq, c->P);
    if (!isfinite(p->scale)) return fail(SATTN_ERR_INVALID, "scale must be finite (got %g)", (double)p->scale);
    if (!(p->softcap >= 0) || !isfinite(p->softcap))
        return fail(SATTN_ERR_INVALID, "softcap must be finite and >= 0 (got %g)", (double)p->softcap);
    if (!(p->dropout_p >= 0 && p->dropout_p < 1))
        return fail(SATTN_ERR_INVALID, "dropout_p must be in [0, 1) (got %g)", (double)p->dropout_p);
    if (p->causal != SATTN_CAUSAL_NONE && p->causal != SATTN_CAUSAL_TOP_LEFT && p->causal != SATTN_CAUSAL_BOTTOM_RIGHT)
        return fail(SATTN_ERR_INVALID, "causal must be SATTN_CAUSAL_NONE, _TOP_LEFT or _BOTTOM_RIGHT (got %d)",
                    (int)p->causal);
    for (int64_t b = 0; b < c->B; b++) {
        if (p->seqlens_q && (p->seqlens_q[b] < 0 || p->seqlens_q[b] > p->seq_q))
            return fail(SATTN_ERR_INVALID, "seqlens_q[%lld] must be in [0, %lld] (got %d)", (long long)b,
                        (long long)p->seq_q, p->seqlens_q[b]);
        if (p->seqlens_kv && (p->seqlens_kv[b] < 0 || p->seqlens_kv[b] > p->seq_kv))
            return fail(SATTN_ERR_INVALID, "seqlens_kv[%lld] must be in [0, %lld] (got %d)", (long long)b,
                        (long long)p->seq_kv, p->seqlens_kv[b]);
    }
    if (p->alibi_slopes)
        for (int64_t h = 0; h < c->Hq; h++)
            if (!isfinite(p->alibi_slopes[h]))
                return fail(SATTN_ERR_INVALID, "alibi_slopes[%lld] must be finite", (long long)h);
    sattn_status st;
    if ((st = resolve("q_stride", p->q_stride, c->qs, c->nq, c->Hq, c->d)) != SATTN_OK) return st;
    if ((st = resolve("k_stride", p->k_stride, c->ks, c->nkv, c->Hkv, c->d)) != SATTN_OK) return st;
    if ((st = resolve("v_stride", p->v_stride, c->vs, c->nkv, c->Hkv, c->dv)) != SATTN_OK) return st;
    if ((st = resolve("o_stride", p->o_stride, c->os, c->nq, c->Hq, c->dv)) != SATTN_OK) return st;
    const int64_t eq[3] = {c->B, c->nq, c->Hq}, ekv[3] = {c->B, c->nkv, c->Hkv};
    if ((st = no_overlap("out (o_stride)", c->os, eq, c->dv)) != SATTN_OK) return st;
    if (backward) {
        if ((st = no_overlap("dq (q_stride)", c->qs, eq, c->d)) != SATTN_OK) return st;
        if ((st = no_overlap("dk (k_stride)", c->ks, ekv, c->d)) != SATTN_OK) return st;
        if ((st = no_overlap("dv (v_stride)", c->vs, ekv, c->dv)) != SATTN_OK) return st;
    }
    const int hq = c->nq > 0, hkv = c->nkv > 0;
    if ((hq && (!q || !out)) || (hkv && (!k || !v)))
        return fail(SATTN_ERR_INVALID, "q, k, v and out may be NULL only for an empty shard");
    if (backward && ((hq && (!lse || !dout || !dq)) || (hkv && (!dk || !dv))))
        return fail(SATTN_ERR_INVALID, "the backward needs lse, dout, dq (and dk, dv for a non-empty key shard)");
    /* one MPI message carries at most INT_MAX elements */
    const int64_t block = c->B * c->nkv * c->Hkv * (c->d + c->dv);
    const int64_t a2a = c->B * (c->Sq > c->Skv ? c->Sq : c->Skv) / c->P * c->Hq * (c->d + 2 * c->dv + 1) / c->P;
    if (block > INT_MAX || a2a > INT_MAX)
        return fail(SATTN_ERR_INVALID, "a shard's message would hold over 2^31 floats: use more ranks");
    return SATTN_OK;
}

/* Status codes in agreement order: the larger wins. */
static int code_of(sattn_status st)
{
    return st == SATTN_OK ? 0 : st == SATTN_ERR_NOMEM ? 1 : st == SATTN_ERR_UNSUPPORTED ? 2 : 3;
}
static sattn_status status_of(int code)
{
    static const sattn_status s[4] = {SATTN_OK, SATTN_ERR_NOMEM, SATTN_ERR_UNSUPPORTED, SATTN_ERR_INVALID};
    return s[code];
}

/* Every rank learns the worst status and the first failing rank's message; with fp
   given, also whether the fingerprints differ (which field first). */
static sattn_status agree(sp_ctx *c, sattn_status mine, const uint64_t *fp)
{
    uint64_t v[1 + 2 * FP_N], w[1 + 2 * FP_N];
    int n = 1;
    v[0] = (uint64_t)code_of(mine);
    if (fp)
        for (int f = 0; f < FP_N; f++) v[n++] = fp[f], v[n++] = ~fp[f];
    MPI_Allreduce(v, w, n, MPI_UINT64_T, MPI_MAX, c->comm);
    int code = (int)w[0];
    if (code == 0 && fp)
        for (int f = 0; f < FP_N; f++)
            if (w[1 + 2 * f] != ~w[2 + 2 * f]) {
                fail(SATTN_ERR_INVALID, "the ranks were given different %s: every rank must describe the same "
                                        "whole problem", fp_name[f]);
                return SATTN_ERR_INVALID;
            }
    if (code == 0) return SATTN_OK;
    int me = mine != SATTN_OK ? c->rank : c->P, first;
    MPI_Allreduce(&me, &first, 1, MPI_INT, MPI_MIN, c->comm);
    char msg[MSG_LEN];
    snprintf(msg, sizeof msg, "%s", sp_msg);
    MPI_Bcast(msg, MSG_LEN, MPI_CHAR, first, c->comm);
    msg[MSG_LEN - 1] = 0;
    if (c->rank != first) fail(SATTN_ERR_INVALID, "rank %d refused: %s", first, msg);
    return status_of(code);
}

/* ---- buffers ---- */

typedef struct {
    void *ptr[24];
    int n;
    int64_t bytes;
    int failed;
} arena;

static float *take(sp_ctx *c, arena *a, int64_t floats)
{
    size_t bytes = sizeof(float) * (size_t)(floats > 0 ? floats : 1);
    float *p = malloc(bytes);
    if (!p) {
        if (!a->failed) fail(SATTN_ERR_NOMEM, "out of memory: %zu bytes for a sequence-parallel buffer", bytes);
        a->failed = 1;
        return NULL;
    }
    a->ptr[a->n++] = p;
    a->bytes += (int64_t)bytes;
    if (a->bytes > c->peak) c->peak = a->bytes;
    return p;
}
static void arena_free(arena *a)
{
    for (int i = 0; i < a->n; i++) free(a->ptr[i]);
    a->n = 0;
}

/* ---- shards in and out: strided p->dtype <-> packed f32 [B][rows][H][dim] ---- */

static float load1(const void *base, int64_t e, sattn_dtype dt)
{
    if (dt == SATTN_F32) return ((const float *)base)[e];
    uint16_t h = ((const uint16_t *)base)[e];
    return dt == SATTN_F16 ? sattn__f16_to_f32(h) : sattn__bf16_to_f32(h);
}

static void gather(float *dst, const void *src, const int64_t st[3], int64_t B, int64_t rows, int64_t H,
                   int64_t dim, sattn_dtype dt)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t h = 0; h < H; h++) {
                float *o = dst + ((b * rows + i) * H + h) * dim;
                int64_t e = b * st[0] + i * st[1] + h * st[2];
                if (dt == SATTN_F32) memcpy(o, (const float *)src + e, sizeof(float) * (size_t)dim);
                else
                    for (int64_t x = 0; x < dim; x++) o[x] = load1(src, e + x, dt);
            }
}

static void scatter(void *dst, const int64_t st[3], const float *src, int64_t B, int64_t rows, int64_t H,
                    int64_t dim, sattn_dtype dt)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t h = 0; h < H; h++) {
                const float *s = src + ((b * rows + i) * H + h) * dim;
                int64_t e = b * st[0] + i * st[1] + h * st[2];
                if (dt == SATTN_F32) memcpy((float *)dst + e, s, sizeof(float) * (size_t)dim);
                else if (dt == SATTN_F16)
                    for (int64_t x = 0; x < dim; x++) ((uint16_t *)dst)[e + x] = sattn__f32_to_f16(s[x]);
                else
                    for (int64_t x = 0; x < dim; x++) ((uint16_t *)dst)[e + x] = sattn__f32_to_bf16(s[x]);
            }
}

/* ---- the mask rules at global positions: may rows [qs, qs+qn) see keys [ks, ks+kn)? ---- */

static int64_t side(int64_t w) { return w <= 0 ? 0 : w < ((int64_t)1 << 34) ? w : ((int64_t)1 << 34); }

static int block_visible(const sattn_params *p, int64_t qs, int64_t qn, int64_t ks, int64_t kn)
{
    if (qn == 0 || kn == 0) return 0;
    const int64_t wl = side(p->window_left), wr = side(p->window_right);
    for (int64_t b = 0; b < p->batch; b++) {
        int64_t Lq = p->seqlens_q ? p->seqlens_q[b] : p->seq_q, Lk = p->seqlens_kv ? p->seqlens_kv[b] : p->seq_kv;
        int64_t i0 = qs, i1 = (qs + qn < Lq ? qs + qn : Lq) - 1, ke = ks + kn < Lk ? ks + kn : Lk;
        if (i1 < i0 || ke <= ks) continue;
        /* [lo, hi) of the first row and of the last: both ends grow with the row */
        int64_t lo = 0, hi = Lk, d0 = i0 + Lk - Lq, d1 = i1 + Lk - Lq;
        if (p->causal == SATTN_CAUSAL_TOP_LEFT && i1 + 1 < hi) hi = i1 + 1;
        if (p->causal == SATTN_CAUSAL_BOTTOM_RIGHT && d1 + 1 < hi) hi = d1 + 1;
        if (wl > 0 && d0 - wl > lo) lo = d0 - wl;
        if (wr > 0 && d1 + wr + 1 < hi) hi = d1 + wr + 1;
        if (hi > lo && lo < ke && hi > ks) return 1;
    }
    return 0;
}

/* ---- merging partial results ---- */

/* Rows [off, off+rows) of the accumulators O (B, n, H, dv) and L (B, H, n) absorb a
   part's Op (laid out as O) and Lp (B, H, rows):
       l = log(exp(L) + exp(Lp)),  O = exp(L - l) O + exp(Lp - l) Op */
static void merge(float *O, float *L, const float *Op, const float *Lp, int64_t B, int64_t n, int64_t H,
                  int64_t dv, int64_t off, int64_t rows)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < rows; i++) {
                const float lp = Lp[(b * H + h) * rows + i];
                if (lp == -INFINITY) continue; /* nothing visible in this part */
                float *la = L + (b * H + h) * n + off + i;
                float *oa = O + ((b * n + off + i) * H + h) * dv;
                const float *op = Op + ((b * n + off + i) * H + h) * dv;
                if (*la == -INFINITY) {
                    memcpy(oa, op, sizeof(float) * (size_t)dv);
                    *la = lp;
                    continue;
                }
                const float m = *la > lp ? *la : lp;
                const float l = m + logf(expf(*la - m) + expf(lp - m));
                const float fa = expf(*la - l), fp = expf(lp - l);
                for (int64_t e = 0; e < dv; e++) oa[e] = fa * oa[e] + fp * op[e];
                *la = l;
            }
}

/* The packed strides of a (B, n, H, dim) buffer. */
static void packed(int64_t st[3], int64_t n, int64_t H, int64_t dim)
{
    st[0] = n * H * dim, st[1] = H * dim, st[2] = dim;
}

static void kernel_failed(sp_ctx *c, sattn_status st)
{
    if (c->kernel_status == SATTN_OK) {
        c->kernel_status = st;
        snprintf(c->kernel_msg, sizeof c->kernel_msg, "%s", sattn_last_error());
    }
}

/* dst rows [off, off+rows) += src's, both (B, n, H, dim). */
static void add_rows(float *dst, const float *src, int64_t B, int64_t n, int64_t H, int64_t dim, int64_t off,
                     int64_t rows)
{
    for (int64_t b = 0; b < B; b++) {
        const int64_t at = (b * n + off) * H * dim, cnt = rows * H * dim;
        for (int64_t x = 0; x < cnt; x++) dst[at + x] += src[at + x];
    }
}

/* ---- ring ---- */

typedef struct {
    float *Q, *O, *L;    /* this rank's queries, output and lse accumulators (f32) */
    float *Op, *Lp;      /* one part's output and lse (B, Hq, rows) */
    float *kv[2];        /* K (B, nkv, Hkv, d) then V (B, nkv, Hkv, dv): the block at hand, the next */
    /* backward */
    float *DO;           /* dout (B, nq, Hq, dv) */
    float *DQ, *DQt;     /* dq accumulator and one part's dq */
    float *DKVs, *DKVt;  /* one step's dK, dV of the block at hand, and one part's */
    float *dkv_send[2], *dkv_recv;
} ring_bufs;

/* Lets MPI move the transfers in flight. MPI moves a large message between processes
   of one machine only inside MPI calls (shared-memory copies in pieces), so the ring
   asks it to progress between kernel calls. Per-head calls, to ask more often, cost
   more than the transfer time they could hide (BENCHMARKS.md), so there is one call
   per part. */
static void poke(int nreq, MPI_Request *req)
{
    int done;
    MPI_Status st[5];
    if (nreq > 0) MPI_Testall(nreq, req, &done, st);
}

/* Query chunks (this rank's) against the key chunks of the block from rank src, one
   kernel call per (query chunk, key chunk) pair: forward (parts merged into O, L) or
   backward (shares added to DQ and DKVs; lse_in the whole rows' lse, (B, Hq, nq)). */
static void ring_parts(sp_ctx *c, ring_bufs *r, const float *kv, int src, const float *lse_in, int nreq,
                       MPI_Request *req)
{
    const sattn_params *p = c->p;
    const int backward = lse_in != NULL;
    shard_map mq, mk;
    shard_of(c->shard, c->Sq, c->P, c->rank, &mq);
    shard_of(c->shard, c->Skv, c->P, src, &mk);
    const int64_t Hq = c->Hq, Hkv = c->Hkv, d = c->d, dv = c->dv;
    sattn_params lp = *p;
    lp.dtype = SATTN_F32;
    packed(lp.q_stride, c->nq, Hq, d);
    packed(lp.k_stride, c->nkv, Hkv, d);
    packed(lp.v_stride, c->nkv, Hkv, dv);
    packed(lp.o_stride, c->nq, Hq, dv);
    const int64_t kfl = c->B * c->nkv * Hkv * d;
    const float *K = kv, *V = kv + kfl;
    for (int a = 0; a < mq.n; a++)
        for (int b = 0; b < mk.n; b++) {
            if (!block_visible(p, mq.start[a], mq.len[a], mk.start[b], mk.len[b])) {
                c->skipped++;
                continue;
            }
            c->computed++;
            if (c->kernel_status != SATTN_OK || sp_bench == SATTN_SP_BENCH_COMM_ONLY) continue;
            const double t0 = now();
            const int64_t qo = mq.off[a], ko = mk.off[b], rows = mq.len[a];
            sattn_part part = {mq.start[a], rows, mk.start[b], mk.len[b], 0};
            const float *q = r->Q + qo * Hq * d, *k = K + ko * Hkv * d, *v = V + ko * Hkv * dv;
            sattn_status st;
            if (!backward) {
                st = sattn_forward_part(&lp, &part, q, k, v, r->Op + qo * Hq * dv, r->Lp);
                if (st == SATTN_OK) merge(r->O, r->L, r->Op, r->Lp, c->B, c->nq, Hq, dv, qo, rows);
            } else {
                for (int64_t bh = 0; bh < c->B * Hq; bh++) /* these rows' lse, packed for the call */
                    memcpy(r->Lp + bh * rows, lse_in + bh * c->nq + qo, sizeof(float) * (size_t)rows);
                float *DKt = r->DKVt, *DVt = r->DKVt + kfl;
                st = sattn_backward_part(&lp, &part, q, k, v, r->O + qo * Hq * dv, r->Lp, r->DO + qo * Hq * dv,
                                         r->DQt + qo * Hq * d, DKt + ko * Hkv * d, DVt + ko * Hkv * dv);
                if (st == SATTN_OK) {
                    add_rows(r->DQ, r->DQt, c->B, c->nq, Hq, d, qo, rows);
                    add_rows(r->DKVs, DKt, c->B, c->nkv, Hkv, d, ko, mk.len[b]);
                    add_rows(r->DKVs + kfl, DVt, c->B, c->nkv, Hkv, dv, ko, mk.len[b]);
                }
            }
            if (st != SATTN_OK) kernel_failed(c, st);
            c->t_compute += now() - t0;
            poke(nreq, req);
        }
}

/* Starts step t's transfers: the block at hand (cur) to the next rank, the next block
   into nxt from the previous one. Returns the two requests' count. */
static int pass_block(sp_ctx *c, float *cur, float *nxt, MPI_Request req[2])
{
    const int64_t block = c->B * c->nkv * c->Hkv * (c->d + c->dv);
    MPI_Irecv(nxt, (int)block, MPI_FLOAT, (c->rank + c->P - 1) % c->P, 1, c->comm, &req[0]);
    MPI_Isend(cur, (int)block, MPI_FLOAT, (c->rank + 1) % c->P, 1, c->comm, &req[1]);
    c->bytes += block * (int64_t)sizeof(float);
    c->messages++;
    return 2;
}

static void wait_all(sp_ctx *c, int n, MPI_Request *req)
{
    const double t0 = now();
    MPI_Status st[2]; /* n <= 2; a real array rather than MPI_STATUSES_IGNORE, which gcc 12's
                         access checks take for a zero-size region inside MPICH's mpi.h */
    MPI_Waitall(n, req, st);
    c->t_wait += now() - t0;
}

/* Forward: at step t this rank holds the K/V block of rank r - t, sends it on to r + 1
   and receives the next from r - 1 while it computes. */
static void ring_forward(sp_ctx *c, ring_bufs *r)
{
    const int P = c->P;
    const int comm = P > 1 && sp_bench != SATTN_SP_BENCH_NO_COMM;
    for (int t = 0; t < P; t++) {
        const int src = (c->rank - t + P) % P;
        float *cur = r->kv[comm ? t & 1 : 0];
        MPI_Request req[2];
        const int nreq = comm && t < P - 1 ? pass_block(c, cur, r->kv[(t + 1) & 1], req) : 0;
        ring_parts(c, r, cur, src, NULL, nreq, req);
        if (nreq) wait_all(c, nreq, req);
    }
}

/* Backward: K/V blocks travel as in the forward; behind them, each block's dK/dV
   accumulator: at step t this rank adds its share for block r - t to the accumulator
   received from r - 1 and sends it to r + 1; after P steps every accumulator has
   visited every rank and arrives home (block r from rank r - 1). The sum for a block
   runs in the fixed order of the ranks from its owner on. */
static void ring_backward(sp_ctx *c, ring_bufs *r, const float *lse_in)
{
    const int P = c->P, next = (c->rank + 1) % P, prev = (c->rank + P - 1) % P;
    const int64_t block = c->B * c->nkv * c->Hkv * (c->d + c->dv);
    const int comm = P > 1 && sp_bench != SATTN_SP_BENCH_NO_COMM;
    MPI_Request dreq[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL}; /* dK/dV: the send, the receive */
    MPI_Request sends[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    for (int t = 0; t < P; t++) {
        const int src = (c->rank - t + P) % P;
        float *cur = r->kv[comm ? t & 1 : 0];
        MPI_Request req[2];
        const int nreq = comm && t < P - 1 ? pass_block(c, cur, r->kv[(t + 1) & 1], req) : 0;
        memset(r->DKVs, 0, sizeof(float) * (size_t)block);
        /* every transfer in flight progresses between the kernel calls */
        MPI_Request all[5] = {nreq ? req[0] : MPI_REQUEST_NULL, nreq ? req[1] : MPI_REQUEST_NULL, dreq[1], sends[0],
                              sends[1]};
        ring_parts(c, r, cur, src, lse_in, 5, all);
        if (nreq) req[0] = all[0], req[1] = all[1];
        dreq[1] = all[2], sends[0] = all[3], sends[1] = all[4];
        /* the accumulator for block src: what ranks src .. r - 1 added, plus this share */
        float *out = r->dkv_send[t & 1];
        if (comm) {
            if (sends[t & 1] != MPI_REQUEST_NULL) wait_all(c, 1, &sends[t & 1]); /* its buffer is reused */
            if (t > 0) {
                wait_all(c, 1, &dreq[1]);
                const double t0 = now();
                for (int64_t x = 0; x < block; x++) out[x] = r->dkv_recv[x] + r->DKVs[x];
                c->t_compute += now() - t0;
            } else {
                memcpy(out, r->DKVs, sizeof(float) * (size_t)block);
            }
            MPI_Isend(out, (int)block, MPI_FLOAT, next, 2, c->comm, &sends[t & 1]);
            MPI_Irecv(r->dkv_recv, (int)block, MPI_FLOAT, prev, 2, c->comm, &dreq[1]);
            c->bytes += block * (int64_t)sizeof(float);
            c->messages++;
        } else if (t == 0) {
            memcpy(r->dkv_recv, r->DKVs, sizeof(float) * (size_t)block);
        } else {
            for (int64_t x = 0; x < block; x++) r->dkv_recv[x] += r->DKVs[x];
        }
        if (nreq) wait_all(c, nreq, req);
    }
    if (comm) { /* this rank's own block, complete */
        wait_all(c, 1, &dreq[1]);
        wait_all(c, 2, sends);
    }
}

/* ---- Ulysses ---- */

/* The kv heads rank x needs for its query heads [x hn, (x + 1) hn): a range when the
   query heads cover whole groups or lie in one, else one copy per query head (a kv
   head shared by two ranks' heads goes to both). Returns their count (the same on every
   rank); kvmap[j] is the global kv head of local kv head j. */
static int64_t ulysses_kv_heads(const sp_ctx *c, int x, int64_t *kvmap)
{
    const int64_t hn = c->Hq / c->P, g = c->Hq / c->Hkv;
    if (hn % g == 0) {
        for (int64_t j = 0; j < hn / g; j++) kvmap[j] = x * hn / g + j;
        return hn / g;
    }
    if (g % hn == 0) {
        kvmap[0] = x * hn / g;
        return 1;
    }
    for (int64_t j = 0; j < hn; j++) kvmap[j] = (x * hn + j) / g;
    return hn;
}

/* dst (B, n, hc, dim) = heads heads[0 .. hc) of src (B, n, H, dim) */
static float *pick_heads(float *dst, const float *src, int64_t B, int64_t n, int64_t H, int64_t dim,
                         const int64_t *heads, int64_t hc)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hc; j++)
                memcpy(dst + ((b * n + i) * hc + j) * dim, src + ((b * n + i) * H + heads[j]) * dim,
                       sizeof(float) * (size_t)dim);
    return dst + B * n * hc * dim;
}

/* Rows of rank y's shard (B, n, Hs, dim), in shard order, to and from their global
   rows of (B, S, Hs, dim). to_global: shard -> global; else global -> shard. */
static void shard_rows(float *global, float *local, const shard_map *m, int64_t B, int64_t S, int64_t n,
                       int64_t Hs, int64_t dim, int to_global)
{
    const int64_t row = Hs * dim;
    for (int64_t b = 0; b < B; b++)
        for (int ch = 0; ch < m->n; ch++) {
            float *g = global + (b * S + m->start[ch]) * row, *l = local + (b * n + m->off[ch]) * row;
            size_t bytes = sizeof(float) * (size_t)(m->len[ch] * row);
            if (to_global) memcpy(g, l, bytes);
            else memcpy(l, g, bytes);
        }
}

/* The lse's (B, Hs, S) <-> a shard's (B, Hs, n). */
static void shard_lse(float *global, float *local, const shard_map *m, int64_t B, int64_t S, int64_t n,
                      int64_t Hs, int to_global)
{
    for (int64_t bh = 0; bh < B * Hs; bh++)
        for (int ch = 0; ch < m->n; ch++) {
            float *g = global + bh * S + m->start[ch], *l = local + bh * n + m->off[ch];
            size_t bytes = sizeof(float) * (size_t)m->len[ch];
            if (to_global) memcpy(g, l, bytes);
            else memcpy(l, g, bytes);
        }
}

static void alltoall(sp_ctx *c, float *send, float *recv, int64_t count)
{
    const double t0 = now();
    if (sp_bench != SATTN_SP_BENCH_NO_COMM)
        MPI_Alltoall(send, (int)count, MPI_FLOAT, recv, (int)count, MPI_FLOAT, c->comm);
    else
        memcpy(recv, send, sizeof(float) * (size_t)(count * c->P)); /* the same bytes moved, locally */
    c->t_wait += now() - t0;
    c->bytes += count * (int64_t)(c->P - 1) * (int64_t)sizeof(float);
    c->messages++;
}

typedef struct {
    float *Q, *K, *V, *O, *L, *DO;     /* this rank's shards, f32: (B, n, H, dim), L (B, Hq, nq) */
    float *DQ, *DK, *DV;               /* backward results, shard layout */
    float *send, *recv;                /* all-to-all buffers */
    float *Qh, *Kh, *Vh, *Oh, *Lh, *DOh, *DQh, *DKh, *DVh; /* the whole sequence, this rank's heads */
    int64_t hn, hkv;
} uly_bufs;

static void ulysses(sp_ctx *c, uly_bufs *u, int backward)
{
    const int P = c->P;
    const int64_t B = c->B, nq = c->nq, nkv = c->nkv, d = c->d, dv = c->dv, hn = u->hn, hkv = u->hkv;
    int64_t kvmap[4096 + 1], qheads[4096 + 1];
    /* ---- to the head split: per destination x, its heads of every row of this shard ---- */
    const int64_t cnt_in = B * nq * hn * (d + (backward ? 2 * dv + 1 : 0)) + B * nkv * hkv * (d + dv);
    double t0 = now();
    for (int x = 0; x < P; x++) {
        float *s = u->send + x * cnt_in;
        for (int64_t j = 0; j < hn; j++) qheads[j] = x * hn + j;
        ulysses_kv_heads(c, x, kvmap);
        s = pick_heads(s, u->Q, B, nq, c->Hq, d, qheads, hn);
        s = pick_heads(s, u->K, B, nkv, c->Hkv, d, kvmap, hkv);
        s = pick_heads(s, u->V, B, nkv, c->Hkv, dv, kvmap, hkv);
        if (backward) {
            s = pick_heads(s, u->O, B, nq, c->Hq, dv, qheads, hn);
            s = pick_heads(s, u->DO, B, nq, c->Hq, dv, qheads, hn);
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < hn; j++, s += nq)
                    memcpy(s, u->L + (b * c->Hq + x * hn + j) * nq, sizeof(float) * (size_t)nq);
        }
    }
    c->t_compute += now() - t0;
    alltoall(c, u->send, u->recv, cnt_in);
    t0 = now();
    for (int y = 0; y < P; y++) { /* rank y's rows to their global places */
        shard_map mq, mk;
        shard_of(c->shard, c->Sq, P, y, &mq);
        shard_of(c->shard, c->Skv, P, y, &mk);
        float *s = u->recv + y * cnt_in;
        shard_rows(u->Qh, s, &mq, B, c->Sq, nq, hn, d, 1), s += B * nq * hn * d;
        shard_rows(u->Kh, s, &mk, B, c->Skv, nkv, hkv, d, 1), s += B * nkv * hkv * d;
        shard_rows(u->Vh, s, &mk, B, c->Skv, nkv, hkv, dv, 1), s += B * nkv * hkv * dv;
        if (backward) {
            shard_rows(u->Oh, s, &mq, B, c->Sq, nq, hn, dv, 1), s += B * nq * hn * dv;
            shard_rows(u->DOh, s, &mq, B, c->Sq, nq, hn, dv, 1), s += B * nq * hn * dv;
            shard_lse(u->Lh, s, &mq, B, c->Sq, nq, hn, 1);
        }
    }
    /* ---- one attention over the whole sequence, heads [rank hn, (rank + 1) hn) ---- */
    sattn_params lp = *c->p;
    lp.dtype = SATTN_F32;
    lp.heads_q = hn, lp.heads_kv = hkv;
    memset(lp.q_stride, 0, sizeof lp.q_stride), memset(lp.k_stride, 0, sizeof lp.k_stride);
    memset(lp.v_stride, 0, sizeof lp.v_stride), memset(lp.o_stride, 0, sizeof lp.o_stride);
    sattn_part all = {0, c->Sq, 0, c->Skv, (int64_t)c->rank * hn};
    sattn_status st = SATTN_OK;
    if (sp_bench != SATTN_SP_BENCH_COMM_ONLY) {
        if (!backward) st = sattn_forward_part(&lp, &all, u->Qh, u->Kh, u->Vh, u->Oh, u->Lh);
        else st = sattn_backward_part(&lp, &all, u->Qh, u->Kh, u->Vh, u->Oh, u->Lh, u->DOh, u->DQh, u->DKh, u->DVh);
    }
    if (st != SATTN_OK) kernel_failed(c, st);
    /* ---- back to the sequence split: per destination y, its rows of these heads ---- */
    const int64_t cnt_out = backward ? B * nq * hn * d + B * nkv * hkv * (d + dv) : B * nq * hn * (dv + 1);
    for (int y = 0; y < P; y++) {
        shard_map mq, mk;
        shard_of(c->shard, c->Sq, P, y, &mq);
        shard_of(c->shard, c->Skv, P, y, &mk);
        float *s = u->send + y * cnt_out;
        if (!backward) {
            shard_rows(u->Oh, s, &mq, B, c->Sq, nq, hn, dv, 0), s += B * nq * hn * dv;
            shard_lse(u->Lh, s, &mq, B, c->Sq, nq, hn, 0);
        } else {
            shard_rows(u->DQh, s, &mq, B, c->Sq, nq, hn, d, 0), s += B * nq * hn * d;
            shard_rows(u->DKh, s, &mk, B, c->Skv, nkv, hkv, d, 0), s += B * nkv * hkv * d;
            shard_rows(u->DVh, s, &mk, B, c->Skv, nkv, hkv, dv, 0);
        }
    }
    c->t_compute += now() - t0;
    alltoall(c, u->send, u->recv, cnt_out);
    t0 = now();
    if (backward) {
        memset(u->DK, 0, sizeof(float) * (size_t)(B * nkv * c->Hkv * d));
        memset(u->DV, 0, sizeof(float) * (size_t)(B * nkv * c->Hkv * dv));
    }
    for (int x = 0; x < P; x++) { /* rank x's heads, in rank order */
        const float *s = u->recv + x * cnt_out;
        if (!backward) {
            for (int64_t b = 0; b < B; b++)
                for (int64_t i = 0; i < nq; i++, s += hn * dv)
                    memcpy(u->O + ((b * nq + i) * c->Hq + x * hn) * dv, s, sizeof(float) * (size_t)(hn * dv));
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < hn; j++, s += nq)
                    memcpy(u->L + (b * c->Hq + x * hn + j) * nq, s, sizeof(float) * (size_t)nq);
        } else {
            for (int64_t b = 0; b < B; b++)
                for (int64_t i = 0; i < nq; i++, s += hn * d)
                    memcpy(u->DQ + ((b * nq + i) * c->Hq + x * hn) * d, s, sizeof(float) * (size_t)(hn * d));
            ulysses_kv_heads(c, x, kvmap);
            const int64_t dims[2] = {d, dv};
            float *dst[2] = {u->DK, u->DV};
            for (int t = 0; t < 2; t++) /* a kv head several ranks used: their shares summed in rank order */
                for (int64_t b = 0; b < B; b++)
                    for (int64_t i = 0; i < nkv; i++)
                        for (int64_t j = 0; j < hkv; j++, s += dims[t]) {
                            float *o = dst[t] + ((b * nkv + i) * c->Hkv + kvmap[j]) * dims[t];
                            for (int64_t e = 0; e < dims[t]; e++) o[e] += s[e];
                        }
        }
    }
    c->t_compute += now() - t0;
}

/* ---- entry points ---- */

/* Common start: the communicator, the resolved sizes, the local checks. */
static sattn_status begin(sp_ctx *c, MPI_Comm comm, sattn_sp_method method, sattn_sp_shard shard,
                          const sattn_params *p)
{
    memset(c, 0, sizeof *c);
    c->comm = comm;
    c->method = method;
    c->shard = shard;
    c->p = p;
    MPI_Comm_size(comm, &c->P);
    MPI_Comm_rank(comm, &c->rank);
    if (!p) return fail(SATTN_ERR_INVALID, "params is NULL");
    c->B = p->batch, c->Sq = p->seq_q, c->Skv = p->seq_kv, c->Hq = p->heads_q;
    c->Hkv = p->heads_kv ? p->heads_kv : p->heads_q;
    c->d = p->head_dim, c->dv = p->head_dim_v ? p->head_dim_v : p->head_dim;
    c->nq = c->P > 0 ? c->Sq / c->P : 0, c->nkv = c->P > 0 ? c->Skv / c->P : 0;
    if (c->Hkv < 1 || c->Hkv > INT32_MAX)
        return fail(SATTN_ERR_INVALID, "heads_kv must be >= 1, or 0 for heads_q (got %lld)", (long long)p->heads_kv);
    if (method == SATTN_SP_ULYSSES && c->Hq / (c->P > 0 ? c->P : 1) > 4096)
        return fail(SATTN_ERR_INVALID, "Ulysses: at most 4096 query heads per rank (heads_q %lld over %d ranks)",
                    (long long)c->Hq, c->P);
    return SATTN_OK;
}

static void finish_stats(const sp_ctx *c, double t0)
{
    sp_stats.total_s = now() - t0;
    sp_stats.compute_s = c->t_compute;
    sp_stats.wait_s = c->t_wait;
    sp_stats.bytes_sent = c->bytes;
    sp_stats.messages_sent = c->messages;
    sp_stats.parts_computed = c->computed;
    sp_stats.parts_skipped = c->skipped;
    sp_stats.peak_bytes = c->peak;
}

/* The kernels' outcome, agreed: a rank whose kernel failed (out of memory) says so. */
static sattn_status agree_kernels(sp_ctx *c)
{
    if (c->kernel_status != SATTN_OK) fail(c->kernel_status, "%s", c->kernel_msg);
    return agree(c, c->kernel_status, NULL);
}

static sattn_status sp_run(MPI_Comm comm, sattn_sp_method method, sattn_sp_shard shard, const sattn_params *p,
                           int backward, const void *q, const void *k, const void *v, void *out, float *lse,
                           const float *lse_in, const void *dout, void *dq, void *dk, void *dv)
{
    memset(&sp_stats, 0, sizeof sp_stats);
    sp_msg[0] = 0;
    if (comm == MPI_COMM_NULL) return fail(SATTN_ERR_INVALID, "comm is MPI_COMM_NULL");
    const double t0 = now();
    sp_ctx c;
    arena a = {{0}, 0, 0, 0};
    /* the call's own communicator: its messages can never match the caller's */
    MPI_Comm own;
    MPI_Comm_dup(comm, &own);
    sattn_status st = begin(&c, own, method, shard, p);
    if (st == SATTN_OK)
        st = check_local(&c, backward, q, k, v, out, backward ? lse_in : lse, dout, dq, dk, dv);
    uint64_t fp[FP_N] = {0};
    const int64_t B = c.B, nq = c.nq, nkv = c.nkv, Hq = c.Hq, Hkv = c.Hkv, d = c.d, dv_ = c.dv;
    const int64_t block = B * nkv * Hkv * (d + dv_);
    ring_bufs r;
    uly_bufs u;
    memset(&r, 0, sizeof r);
    memset(&u, 0, sizeof u);
    if (st == SATTN_OK) { /* every buffer now: running out of memory is agreed on before any transfer */
        fingerprint(&c, fp);
        if (method == SATTN_SP_RING) {
            const int64_t chunk = shard == SATTN_SP_ZIGZAG ? nq / 2 : nq;
            r.Q = take(&c, &a, B * nq * Hq * d);
            r.O = take(&c, &a, B * nq * Hq * dv_);
            r.L = take(&c, &a, B * Hq * nq);
            r.kv[0] = take(&c, &a, block);
            r.kv[1] = c.P > 1 ? take(&c, &a, block) : r.kv[0];
            r.Lp = take(&c, &a, B * Hq * chunk);
            if (!backward) {
                r.Op = take(&c, &a, B * nq * Hq * dv_);
            } else {
                r.DO = take(&c, &a, B * nq * Hq * dv_);
                r.DQ = take(&c, &a, B * nq * Hq * d);
                r.DQt = take(&c, &a, B * nq * Hq * d);
                r.DKVs = take(&c, &a, block);
                r.DKVt = take(&c, &a, block);
                r.dkv_recv = take(&c, &a, block);
                r.dkv_send[0] = c.P > 1 ? take(&c, &a, block) : NULL;
                r.dkv_send[1] = c.P > 1 ? take(&c, &a, block) : NULL;
            }
        } else {
            int64_t kvmap[4096 + 1];
            u.hn = Hq / c.P;
            u.hkv = ulysses_kv_heads(&c, c.rank, kvmap);
            const int64_t hn = u.hn, hkv = u.hkv;
            const int64_t cin = B * nq * hn * (d + (backward ? 2 * dv_ + 1 : 0)) + B * nkv * hkv * (d + dv_);
            const int64_t cout = backward ? B * nq * hn * d + B * nkv * hkv * (d + dv_) : B * nq * hn * (dv_ + 1);
            u.Q = take(&c, &a, B * nq * Hq * d);
            u.K = take(&c, &a, B * nkv * Hkv * d);
            u.V = take(&c, &a, B * nkv * Hkv * dv_);
            u.O = take(&c, &a, B * nq * Hq * dv_);
            u.L = take(&c, &a, B * Hq * nq);
            u.send = take(&c, &a, c.P * (cin > cout ? cin : cout));
            u.recv = take(&c, &a, c.P * (cin > cout ? cin : cout));
            u.Qh = take(&c, &a, B * c.Sq * hn * d);
            u.Kh = take(&c, &a, B * c.Skv * hkv * d);
            u.Vh = take(&c, &a, B * c.Skv * hkv * dv_);
            u.Oh = take(&c, &a, B * c.Sq * hn * dv_);
            u.Lh = take(&c, &a, B * hn * c.Sq);
            if (backward) {
                u.DO = take(&c, &a, B * nq * Hq * dv_);
                u.DQ = take(&c, &a, B * nq * Hq * d);
                u.DK = take(&c, &a, B * nkv * Hkv * d);
                u.DV = take(&c, &a, B * nkv * Hkv * dv_);
                u.DOh = take(&c, &a, B * c.Sq * hn * dv_);
                u.DQh = take(&c, &a, B * c.Sq * hn * d);
                u.DKh = take(&c, &a, B * c.Skv * hkv * d);
                u.DVh = take(&c, &a, B * c.Skv * hkv * dv_);
            }
        }
        if (a.failed) st = SATTN_ERR_NOMEM;
    }
    st = agree(&c, st, fp);
    if (st != SATTN_OK) {
        arena_free(&a);
        finish_stats(&c, t0);
        MPI_Comm_free(&own);
        return st;
    }

    const sattn_dtype dt = p->dtype;
    if (method == SATTN_SP_RING) {
        double tc = now();
        gather(r.Q, q, c.qs, B, nq, Hq, d, dt);
        gather(r.kv[0], k, c.ks, B, nkv, Hkv, d, dt);
        gather(r.kv[0] + B * nkv * Hkv * d, v, c.vs, B, nkv, Hkv, dv_, dt);
        if (!backward) {
            memset(r.O, 0, sizeof(float) * (size_t)(B * nq * Hq * dv_));
            for (int64_t x = 0; x < B * Hq * nq; x++) r.L[x] = -INFINITY;
        } else {
            gather(r.O, out, c.os, B, nq, Hq, dv_, dt);
            gather(r.DO, dout, c.os, B, nq, Hq, dv_, dt);
            memset(r.DQ, 0, sizeof(float) * (size_t)(B * nq * Hq * d));
        }
        c.t_compute += now() - tc;
        if (!backward) ring_forward(&c, &r);
        else ring_backward(&c, &r, lse_in);
    } else {
        double tc = now();
        gather(u.Q, q, c.qs, B, nq, Hq, d, dt);
        gather(u.K, k, c.ks, B, nkv, Hkv, d, dt);
        gather(u.V, v, c.vs, B, nkv, Hkv, dv_, dt);
        if (backward) {
            gather(u.O, out, c.os, B, nq, Hq, dv_, dt);
            gather(u.DO, dout, c.os, B, nq, Hq, dv_, dt);
            memcpy(u.L, lse_in, sizeof(float) * (size_t)(B * Hq * nq));
        }
        c.t_compute += now() - tc;
        ulysses(&c, &u, backward);
    }

    st = agree_kernels(&c);
    if (st == SATTN_OK) { /* every rank succeeded: now, and only now, the outputs */
        if (!backward) {
            const float *O = method == SATTN_SP_RING ? r.O : u.O, *L = method == SATTN_SP_RING ? r.L : u.L;
            scatter(out, c.os, O, B, nq, Hq, dv_, dt);
            if (lse) memcpy(lse, L, sizeof(float) * (size_t)(B * Hq * nq));
        } else if (method == SATTN_SP_RING) {
            scatter(dq, c.qs, r.DQ, B, nq, Hq, d, dt);
            scatter(dk, c.ks, r.dkv_recv, B, nkv, Hkv, d, dt);
            scatter(dv, c.vs, r.dkv_recv + B * nkv * Hkv * d, B, nkv, Hkv, dv_, dt);
        } else {
            scatter(dq, c.qs, u.DQ, B, nq, Hq, d, dt);
            scatter(dk, c.ks, u.DK, B, nkv, Hkv, d, dt);
            scatter(dv, c.vs, u.DV, B, nkv, Hkv, dv_, dt);
        }
    }
    arena_free(&a);
    finish_stats(&c, t0);
    MPI_Comm_free(&own);
    return st;
}

sattn_status sattn_sp_forward(MPI_Comm comm, sattn_sp_method method, sattn_sp_shard shard, const sattn_params *p,
                              const void *q, const void *k, const void *v, void *out, float *lse)
{
    return sp_run(comm, method, shard, p, 0, q, k, v, out, lse, NULL, NULL, NULL, NULL, NULL);
}

sattn_status sattn_sp_backward(MPI_Comm comm, sattn_sp_method method, sattn_sp_shard shard, const sattn_params *p,
                               const void *q, const void *k, const void *v, const void *out, const float *lse,
                               const void *dout, void *dq, void *dk, void *dv)
{
    return sp_run(comm, method, shard, p, 1, q, k, v, (void *)out, NULL, lse, dout, dq, dk, dv);
}
