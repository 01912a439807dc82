/* Argument checking: every rule of the contract, before any output is touched.
 * A failure names the field and the bound it broke. */
#include <math.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "philox.h"
#include "sattn_internal.h"

#define TRY(x)                                  \
    do {                                        \
        sattn_status st_ = (x);                 \
        if (st_ != SATTN_OK) return st_;        \
    } while (0)

static sattn_status check_size(const char *name, int64_t value, int64_t min)
{
    if (value < min || value > SATTN__MAX_EXTENT)
        return sattn__fail("%s must be in [%lld, %lld] (got %lld)", name, (long long)min,
                           (long long)SATTN__MAX_EXTENT, (long long)value);
    return SATTN_OK;
}

sattn_status sattn__resolve_strides(const char *name, const int64_t in[3], int64_t out[3], int64_t seq,
                                    int64_t heads, int64_t dim)
{
    static const char *axis[3] = {"batch", "seq", "head"};
    if (in == NULL || (in[0] == 0 && in[1] == 0 && in[2] == 0)) {
        int64_t hd, shd;
        if (!sattn__mul_ok(heads, dim, &hd) || !sattn__mul_ok(seq, hd, &shd))
            return sattn__fail("%s: a packed (batch, %lld, %lld, %lld) tensor has more elements per "
                               "sequence than an int64 counts", name, (long long)seq, (long long)heads,
                               (long long)dim);
        out[2] = dim;
        out[1] = hd;
        out[0] = shd;
        return SATTN_OK;
    }
    for (int a = 0; a < 3; a++) {
        if (in[a] < 0)
            return sattn__fail("%s[%d] (the %s stride) must be >= 0 (got %lld)", name, a, axis[a],
                               (long long)in[a]);
        out[a] = in[a];
    }
    return SATTN_OK;
}

/* The last element offset of a tensor of extents ext[] along strides st[] (innermost
   extent dim with stride 1) must be an int64: every offset the kernels form is then
   exact. On overflow the message names the tensor. */
static sattn_status check_span(const char *name, const char *tensor, const int64_t *st, const int64_t *ext,
                               int naxes, int64_t dim)
{
    int64_t last = dim > 0 ? dim - 1 : 0, t;
    for (int a = 0; a < naxes; a++) {
        if (ext[a] == 0) return SATTN_OK; /* no elements */
        if (!sattn__mul_ok(st[a], ext[a] - 1, &t) || !sattn__add_ok(last, t, &last))
            return sattn__fail("%s: the strides place elements of %s past what an int64 offset "
                               "counts (axis %d: stride %lld, extent %lld)",
                               name, tensor, a, (long long)st[a], (long long)ext[a]);
    }
    return SATTN_OK;
}

/* A tensor that is written must not overlap itself: sorted by stride, each axis of
   extent > 1 must step past everything the inner axes span. (check_span has bounded
   every product below.) */
static sattn_status check_no_overlap(const char *name, const char *tensor, const int64_t st[3],
                                     const int64_t ext[3], int64_t dim)
{
    static const char *axis[3] = {"batch", "seq", "head"};
    TRY(check_span(name, tensor, st, ext, 3, dim));
    for (int a = 0; a < 3; a++)
        if (ext[a] == 0) return SATTN_OK; /* no elements, nothing to overlap */
    int64_t s[4], e[4];
    int n = 0;
    s[n] = 1, e[n] = dim, n++;
    for (int a = 0; a < 3; a++) {
        if (ext[a] <= 1) continue;
        if (st[a] == 0)
            return sattn__fail("%s[%d] (the %s stride) is 0, but %s is written through it and "
                               "that axis has %lld elements: they would overlap",
                               name, a, axis[a], tensor, (long long)ext[a]);
        s[n] = st[a], e[n] = ext[a], n++;
    }
    for (int x = 1; x < n; x++) /* insertion sort by stride */
        for (int y = x; y > 0 && s[y] < s[y - 1]; y--) {
            int64_t ts = s[y], te = e[y];
            s[y] = s[y - 1], e[y] = e[y - 1], s[y - 1] = ts, e[y - 1] = te;
        }
    int64_t span = 0; /* last element offset reachable by the inner axes */
    for (int x = 0; x < n; x++) {
        if (x > 0 && s[x] <= span)
            return sattn__fail("%s lays out %s so that it overlaps itself: a stride of %lld "
                               "does not step past the %lld elements the inner axes span",
                               name, tensor, (long long)s[x], (long long)(span + 1));
        span += s[x] * (e[x] - 1); /* <= total: no overflow */
    }
    return SATTN_OK;
}

static sattn_status check_seqlens(const char *name, const int32_t *lens, const int32_t *cu,
                                  int64_t batch, int64_t bound)
{
    for (int64_t b = 0; b < batch; b++) {
        int64_t lim = cu ? (int64_t)cu[b + 1] - cu[b] : bound;
        if (lens[b] < 0 || lens[b] > lim)
            return sattn__fail("%s[%lld] must be in [0, %lld] (got %d)", name, (long long)b,
                               (long long)lim, lens[b]);
    }
    return SATTN_OK;
}

static sattn_status check_cu(const char *name, const int32_t *cu, int64_t batch, int64_t bound,
                             const char *bound_name)
{
    if (cu[0] < 0) return sattn__fail("%s[0] must be >= 0 (got %d)", name, cu[0]);
    for (int64_t b = 0; b < batch; b++) {
        int64_t len = (int64_t)cu[b + 1] - cu[b];
        if (len < 0)
            return sattn__fail("%s must be non-decreasing (%s[%lld] = %d > %s[%lld] = %d)", name,
                               name, (long long)b, cu[b], name, (long long)(b + 1), cu[b + 1]);
        if (len > bound)
            return sattn__fail("%s: sequence %lld has length %lld, over %s = %lld", name,
                               (long long)b, (long long)len, bound_name, (long long)bound);
    }
    return SATTN_OK;
}

static sattn_status check_strides4(const char *name, const int64_t st[4])
{
    for (int a = 0; a < 4; a++)
        if (st[a] < 0)
            return sattn__fail("%s[%d] must be >= 0 (got %lld)", name, a, (long long)st[a]);
    return SATTN_OK;
}

/* bias and mask, when given: strides >= 0 and every offset an int64, over (batch,
   heads_q + head_offset, seq_q, seq_kv) (a part reads them at the whole problem's heads). */
static sattn_status check_bias_mask(const sattn_params *p, int64_t head_offset)
{
    const int64_t ext4[4] = {p->batch, p->heads_q + head_offset, p->seq_q, p->seq_kv};
    if (p->bias) {
        TRY(check_strides4("bias_stride", p->bias_stride));
        TRY(check_span("bias_stride", "bias", p->bias_stride, ext4, 4, 1));
    }
    if (p->mask) {
        TRY(check_strides4("mask_stride", p->mask_stride));
        TRY(check_span("mask_stride", "mask", p->mask_stride, ext4, 4, 1));
    }
    return SATTN_OK;
}

/* A window side as the tile rules read it: 0 (unbounded) for <= 0, at most
   SATTN__WINDOW_MAX (already past every key). */
static int64_t window_side(int64_t w)
{
    return w <= 0 ? 0 : w < SATTN__WINDOW_MAX ? w : SATTN__WINDOW_MAX;
}

#define NEED(ptr, cond, what)                                                           \
    do {                                                                                \
        if ((cond) && (ptr) == NULL) return sattn__fail("%s is NULL but %s", #ptr, what); \
    } while (0)

sattn_status sattn__prepare(sattn__problem *prob, const sattn_params *p, int which,
                            const void *q, const void *k, const void *v, const void *out,
                            const float *lse, const void *dout,
                            const void *dq, const void *dk, const void *dv)
{
    if (p == NULL) return sattn__fail("params is NULL");

    /* ---- shape ---- */
    TRY(check_size("batch", p->batch, 1));
    TRY(check_size("seq_q", p->seq_q, 0));
    TRY(check_size("seq_kv", p->seq_kv, 0));
    TRY(check_size("heads_q", p->heads_q, 1));
    if (p->heads_kv != 0) TRY(check_size("heads_kv", p->heads_kv, 1));
    int64_t heads_kv = p->heads_kv ? p->heads_kv : p->heads_q;
    if (p->heads_q % heads_kv != 0)
        return sattn__fail("heads_q (%lld) must be a multiple of heads_kv (%lld)",
                           (long long)p->heads_q, (long long)heads_kv);
    if (p->head_dim < 1 || p->head_dim > SATTN__MAX_HEAD_DIM)
        return sattn__fail("head_dim must be in [1, %d] (got %lld)", SATTN__MAX_HEAD_DIM,
                           (long long)p->head_dim);
    if (p->head_dim_v < 0 || p->head_dim_v > SATTN__MAX_HEAD_DIM)
        return sattn__fail("head_dim_v must be in [1, %d], or 0 for head_dim (got %lld)",
                           SATTN__MAX_HEAD_DIM, (long long)p->head_dim_v);
    int64_t dv_dim = p->head_dim_v ? p->head_dim_v : p->head_dim;
    if (p->batch * p->heads_q > SATTN__MAX_EXTENT)
        return sattn__fail("batch * heads_q must be <= %lld (got %lld)",
                           (long long)SATTN__MAX_EXTENT, (long long)(p->batch * p->heads_q));

    if (p->dtype != SATTN_F32 && p->dtype != SATTN_F16 && p->dtype != SATTN_BF16)
        return sattn__fail("dtype must be SATTN_F32, SATTN_F16 or SATTN_BF16 (got %d)", (int)p->dtype);

    /* ---- scalars ---- */
    if (!isfinite(p->scale))
        return sattn__fail("scale must be finite, or 0 for 1/sqrt(head_dim) (got %g)", (double)p->scale);
    if (!(p->softcap >= 0) || !isfinite(p->softcap))
        return sattn__fail("softcap must be finite and >= 0 (got %g)", (double)p->softcap);
    if (!(p->dropout_p >= 0 && p->dropout_p < 1))
        return sattn__fail("dropout_p must be in [0, 1) (got %g)", (double)p->dropout_p);
    if (p->causal != SATTN_CAUSAL_NONE && p->causal != SATTN_CAUSAL_TOP_LEFT &&
        p->causal != SATTN_CAUSAL_BOTTOM_RIGHT)
        return sattn__fail("causal must be SATTN_CAUSAL_NONE, _TOP_LEFT or _BOTTOM_RIGHT (got %d)",
                           (int)p->causal);
    if (p->products != SATTN_PRODUCTS_F32 && p->products != SATTN_PRODUCTS_BF16)
        return sattn__fail("products must be SATTN_PRODUCTS_F32 or SATTN_PRODUCTS_BF16 (got %d)",
                           (int)p->products);

    /* ---- variable lengths ---- */
    if (p->cu_seqlens_q)
        TRY(check_cu("cu_seqlens_q", p->cu_seqlens_q, p->batch, p->seq_q, "seq_q"));
    if (p->cu_seqlens_kv)
        TRY(check_cu("cu_seqlens_kv", p->cu_seqlens_kv, p->batch, p->seq_kv, "seq_kv"));
    if (p->seqlens_q)
        TRY(check_seqlens("seqlens_q", p->seqlens_q, p->cu_seqlens_q, p->batch, p->seq_q));
    if (p->seqlens_kv)
        TRY(check_seqlens("seqlens_kv", p->seqlens_kv, p->cu_seqlens_kv, p->batch, p->seq_kv));

    /* ---- layout ---- */
    int64_t qs[3], ks[3], vs[3], os[3];
    TRY(sattn__resolve_strides("q_stride", p->q_stride, qs, p->seq_q, p->heads_q, p->head_dim));
    TRY(sattn__resolve_strides("k_stride", p->k_stride, ks, p->seq_kv, heads_kv, p->head_dim));
    TRY(sattn__resolve_strides("v_stride", p->v_stride, vs, p->seq_kv, heads_kv, dv_dim));
    TRY(sattn__resolve_strides("o_stride", p->o_stride, os, p->seq_q, p->heads_q, dv_dim));
    /* Extents of the written tensors: with cu_seqlens the seq axis holds every sequence. */
    int64_t rows_q = p->cu_seqlens_q ? p->cu_seqlens_q[p->batch] : p->seq_q;
    int64_t rows_kv = p->cu_seqlens_kv ? p->cu_seqlens_kv[p->batch] : p->seq_kv;
    int64_t ext_q[3] = {p->cu_seqlens_q ? 1 : p->batch, rows_q, p->heads_q};
    int64_t ext_kv[3] = {p->cu_seqlens_kv ? 1 : p->batch, rows_kv, heads_kv};
    TRY(check_span("q_stride", "q", qs, ext_q, 3, p->head_dim));
    TRY(check_span("k_stride", "k", ks, ext_kv, 3, p->head_dim));
    TRY(check_span("v_stride", "v", vs, ext_kv, 3, dv_dim));
    if (which != SATTN__WEIGHTS) TRY(check_no_overlap("o_stride", "out", os, ext_q, dv_dim));
    if (which == SATTN__BACKWARD) {
        TRY(check_no_overlap("q_stride", "dq", qs, ext_q, p->head_dim));
        TRY(check_no_overlap("k_stride", "dk", ks, ext_kv, p->head_dim));
        TRY(check_no_overlap("v_stride", "dv", vs, ext_kv, dv_dim));
    }

    /* ---- optional score terms ---- */
    TRY(check_bias_mask(p, 0));
    if (p->alibi_slopes)
        for (int64_t h = 0; h < p->heads_q; h++)
            if (!isfinite(p->alibi_slopes[h]))
                return sattn__fail("alibi_slopes[%lld] must be finite (got %g)", (long long)h,
                                   (double)p->alibi_slopes[h]);

    /* ---- data pointers ---- */
    int has_q = rows_q > 0, has_kv = rows_kv > 0;
    NEED(q, has_q, "seq_q > 0");
    NEED(k, has_q && has_kv, "seq_q > 0 and seq_kv > 0");
    if (which == SATTN__WEIGHTS) {
        NEED(lse, has_q, "the weights are recomputed from the forward's lse");
    } else {
        NEED(v, has_q && has_kv, "seq_q > 0 and seq_kv > 0");
        NEED(out, has_q, "seq_q > 0");
    }
    if (which == SATTN__BACKWARD) {
        NEED(lse, has_q, "the backward needs the forward's lse");
        NEED(dout, has_q, "seq_q > 0");
        NEED(dq, has_q, "seq_q > 0");
        NEED(dk, has_kv, "seq_kv > 0");
        NEED(dv, has_kv, "seq_kv > 0");
    }

    /* ---- resolved ---- */
    prob->kt = sattn__kernels_get();
    prob->batch = p->batch;
    prob->seq_q = p->seq_q;
    prob->seq_kv = p->seq_kv;
    prob->heads_q = p->heads_q;
    prob->heads_kv = heads_kv;
    prob->group = p->heads_q / heads_kv;
    prob->head_dim = p->head_dim;
    prob->head_dim_v = dv_dim;
    prob->dtype = p->dtype;
    prob->elem_size = (size_t)sattn__dtype_size(p->dtype);
    for (int a = 0; a < 3; a++) {
        prob->qs[a] = qs[a];
        prob->ks[a] = ks[a];
        prob->vs[a] = vs[a];
        prob->os[a] = os[a];
    }
    prob->scale = p->scale != 0 ? p->scale : (float)(1.0 / sqrt((double)p->head_dim));
    prob->softcap = p->softcap;
    prob->dropout_p = p->dropout_p;
    prob->dropout_scale = 1.0f / (1.0f - p->dropout_p);
    prob->dropout_threshold = sattn__dropout_threshold(p->dropout_p);
    prob->total_q = rows_q;
    prob->window_left = window_side(p->window_left);
    prob->window_right = window_side(p->window_right);
    prob->has_score_mods = p->softcap > 0 || p->alibi_slopes || p->bias || p->mask;
    prob->bf16_products = p->products == SATTN_PRODUCTS_BF16 && sattn__bf16_products_run(prob->kt, p->dtype);
    prob->causal = p->causal;
    prob->seed = p->seed;
    prob->alibi_slopes = p->alibi_slopes;
    prob->bias = p->bias;
    prob->mask = p->mask;
    for (int a = 0; a < 4; a++) prob->bias_stride[a] = p->bias_stride[a], prob->mask_stride[a] = p->mask_stride[a];
    prob->seqlens_q = p->seqlens_q;
    prob->seqlens_kv = p->seqlens_kv;
    prob->cu_seqlens_q = p->cu_seqlens_q;
    prob->cu_seqlens_kv = p->cu_seqlens_kv;
    prob->part = 0;
    prob->pos_q = prob->pos_kv = 0;
    prob->glob_seq_q = p->seq_q;
    prob->glob_seq_kv = p->seq_kv;
    prob->glob_seqlens_q = prob->glob_seqlens_kv = NULL;
    prob->head_off = 0;
    return SATTN_OK;
}

sattn_status sattn__prepare_part(sattn__problem *prob, sattn_params *local, const sattn_params *p,
                                 const sattn_part *part, int which, const void *q, const void *k,
                                 const void *v, const void *out, const float *lse, const void *dout,
                                 const void *dq, const void *dk, const void *dv)
{
    if (p == NULL) return sattn__fail("params is NULL");
    if (part == NULL) return sattn__fail("part is NULL");
    if (p->cu_seqlens_q || p->cu_seqlens_kv) {
        sattn__fail("a part of a packed batch (cu_seqlens_q / cu_seqlens_kv) is not supported: "
                    "its rows have no single global position; give each sequence its own call");
        return SATTN_ERR_UNSUPPORTED;
    }
    /* the whole problem's extents first: the part is checked against them */
    TRY(check_size("batch", p->batch, 1));
    TRY(check_size("seq_q", p->seq_q, 0));
    TRY(check_size("seq_kv", p->seq_kv, 0));
    if (part->q_start < 0 || part->q_rows < 0 || part->q_start > p->seq_q || part->q_rows > p->seq_q - part->q_start)
        return sattn__fail("part: query rows [%lld, %lld + %lld) must lie in [0, seq_q = %lld]",
                           (long long)part->q_start, (long long)part->q_start, (long long)part->q_rows,
                           (long long)p->seq_q);
    if (part->kv_start < 0 || part->kv_rows < 0 || part->kv_start > p->seq_kv ||
        part->kv_rows > p->seq_kv - part->kv_start)
        return sattn__fail("part: key rows [%lld, %lld + %lld) must lie in [0, seq_kv = %lld]",
                           (long long)part->kv_start, (long long)part->kv_start, (long long)part->kv_rows,
                           (long long)p->seq_kv);
    if (part->head_offset < 0 || part->head_offset > SATTN__MAX_EXTENT)
        return sattn__fail("part: head_offset must be in [0, %lld] (got %lld)", (long long)SATTN__MAX_EXTENT,
                           (long long)part->head_offset);
    if (p->seqlens_q) TRY(check_seqlens("seqlens_q", p->seqlens_q, NULL, p->batch, p->seq_q));
    if (p->seqlens_kv) TRY(check_seqlens("seqlens_kv", p->seqlens_kv, NULL, p->batch, p->seq_kv));
    if (p->heads_q >= 1 && p->heads_q <= SATTN__MAX_EXTENT) /* else the local check names it */
        TRY(check_bias_mask(p, part->head_offset));
    /* the local problem: the part's rows and no lengths (they come from the whole);
       its own bias and mask check, over the part's smaller extents, then passes */
    *local = *p;
    local->seq_q = part->q_rows;
    local->seq_kv = part->kv_rows;
    local->seqlens_q = local->seqlens_kv = NULL;
    if (p->alibi_slopes) local->alibi_slopes = p->alibi_slopes + part->head_offset; /* the tensors' heads */
    TRY(sattn__prepare(prob, local, which, q, k, v, out, lse, dout, dq, dk, dv));
    prob->part = 1;
    prob->pos_q = part->q_start;
    prob->pos_kv = part->kv_start;
    prob->glob_seq_q = p->seq_q;
    prob->glob_seq_kv = p->seq_kv;
    prob->glob_seqlens_q = p->seqlens_q;
    prob->glob_seqlens_kv = p->seqlens_kv;
    prob->head_off = part->head_offset;
    return SATTN_OK;
}

void sattn__seq_info(const sattn__problem *prob, int64_t b, sattn__seq *s)
{
    const sattn__problem *p = prob; /* its cu_seqlens and seqlens */
    s->b = b;
    if (p->cu_seqlens_q) {
        s->q_row0 = p->cu_seqlens_q[b];
        s->q_batch = 0;
        s->rows_q = (int64_t)p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b];
        s->lse_row0 = s->q_row0;
        s->lse_hstride = prob->total_q;
    } else {
        s->q_row0 = 0;
        s->q_batch = b;
        s->rows_q = prob->seq_q;
        s->lse_row0 = b * prob->heads_q * prob->seq_q;
        s->lse_hstride = prob->seq_q;
    }
    if (p->cu_seqlens_kv) {
        s->kv_row0 = p->cu_seqlens_kv[b];
        s->kv_batch = 0;
        s->rows_kv = (int64_t)p->cu_seqlens_kv[b + 1] - p->cu_seqlens_kv[b];
    } else {
        s->kv_row0 = 0;
        s->kv_batch = b;
        s->rows_kv = prob->seq_kv;
    }
    s->len_q = p->seqlens_q ? p->seqlens_q[b] : s->rows_q;
    s->len_kv = p->seqlens_kv ? p->seqlens_kv[b] : s->rows_kv;
    s->pos_q = s->pos_kv = 0;
    s->diag_q = s->len_q;
    s->diag_kv = s->len_kv;
    if (prob->part) { /* the part's rows of sequences of the whole problem's lengths */
        int64_t gq = prob->glob_seqlens_q ? prob->glob_seqlens_q[b] : prob->glob_seq_q;
        int64_t gk = prob->glob_seqlens_kv ? prob->glob_seqlens_kv[b] : prob->glob_seq_kv;
        s->pos_q = prob->pos_q;
        s->pos_kv = prob->pos_kv;
        s->diag_q = gq;
        s->diag_kv = gk;
        gq -= prob->pos_q;
        gk -= prob->pos_kv;
        s->len_q = gq < 0 ? 0 : gq < s->rows_q ? gq : s->rows_q;
        s->len_kv = gk < 0 ? 0 : gk < s->rows_kv ? gk : s->rows_kv;
    }
}
