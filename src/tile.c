/* The score rules of one tile (causal, window, padding, softcap, ALiBi, bias, mask,
 * dropout) and the strided storage <-> f32 tile moves. Shared by forward and backward,
 * so both see exactly the same scores. */
#include <math.h>
#include <string.h>

#include "convert.h"
#include "philox.h"
#include "kernels/kernels.h"
#include "sattn_internal.h"

/* ---- causal and window rules ---- */

void sattn__row_range(const sattn__problem *prob, const sattn__seq *s, int64_t i,
                      int64_t *lo, int64_t *hi)
{
    const sattn__problem *p = prob;
    int64_t d = sattn__diag(s, i);        /* the bottom-right aligned diagonal */
    int64_t top = i + s->pos_q - s->pos_kv; /* the top-left one: global j <= global i */
    int64_t a = 0, e = s->len_kv;         /* [a, e) */
    if (p->causal == SATTN_CAUSAL_TOP_LEFT && top + 1 < e) e = top + 1;
    if (p->causal == SATTN_CAUSAL_BOTTOM_RIGHT && d + 1 < e) e = d + 1;
    const int64_t wl = prob->window_left, wr = prob->window_right; /* clamped: no overflow */
    if (wl > 0 && d - wl > a) a = d - wl;
    if (wr > 0 && d + wr + 1 < e) e = d + wr + 1;
    if (a > s->len_kv) a = s->len_kv; /* a part's keys can all lie before the window */
    if (e < a) e = a;
    *lo = a;
    *hi = e;
}

/* Both ends of the row range are non-decreasing in i, so a block's rows see the union
   [lo(first), hi(last)) and all of them see [lo(last), hi(first)). */
sattn__tile_kind sattn__tile_classify(const sattn__problem *prob, const sattn__seq *s,
                                      int64_t i0, int64_t mq, int64_t j0, int64_t nk)
{
    int64_t lo0, hi0, lo1, hi1;
    sattn__row_range(prob, s, i0, &lo0, &hi0);
    sattn__row_range(prob, s, i0 + mq - 1, &lo1, &hi1);
    int64_t j1 = j0 + nk;
    /* rows with an empty range (hi <= lo) may sit at the top; the union still bounds them */
    if (j1 <= lo0 || j0 >= hi1 || hi1 <= lo0) return SATTN__TILE_EMPTY;
    if (j0 >= lo1 && j1 <= hi0) return SATTN__TILE_FULL;
    return SATTN__TILE_PARTIAL;
}

/* How many keys, from j0, of the tile j0 .. j0+nk-1 rows i0 .. i0+mq-1 may see: up to
   the last key the last row sees; 0 when none of the rows sees any of the tile. */
int sattn__band_keys(const sattn__problem *prob, const sattn__seq *s, int64_t i0, int64_t mq, int64_t j0,
                     int nk)
{
    if (sattn__tile_classify(prob, s, i0, mq, j0, nk) == SATTN__TILE_EMPTY) return 0;
    int64_t lo, hi;
    sattn__row_range(prob, s, i0 + mq - 1, &lo, &hi);
    return hi - j0 < nk ? (int)(hi - j0) : nk;
}

/* ---- scores ---- */

void sattn__tile_scores(const sattn__problem *prob, const sattn__seq *s, int64_t h,
                        int64_t i0, int mq, int64_t j0, int nk, sattn__tile_kind kind,
                        float *S, int lds, float *tanh_out)
{
    const sattn__problem *p = prob;
    const float cap = prob->softcap;
    const float slope = p->alibi_slopes ? p->alibi_slopes[h] : 0.0f;
    const int64_t b = s->b;
    for (int r = 0; r < mq; r++) {
        int64_t i = i0 + r;
        float *row = S + (int64_t)r * lds;
        if (cap > 0) {
            float *t = tanh_out ? tanh_out + (int64_t)r * lds : NULL;
            for (int c = 0; c < nk; c++) {
                float th = tanhf(row[c] / cap);
                if (t) t[c] = th;
                row[c] = cap * th;
            }
        }
        if (p->alibi_slopes) {
            int64_t d = sattn__diag(s, i);
            for (int c = 0; c < nk; c++) {
                int64_t dist = d - (j0 + c);
                row[c] -= slope * (float)(dist < 0 ? -dist : dist);
            }
        }
        if (p->bias) {
            const float *br = p->bias + b * p->bias_stride[0] + (h + prob->head_off) * p->bias_stride[1] +
                              (i + s->pos_q) * p->bias_stride[2] + (j0 + s->pos_kv) * p->bias_stride[3];
            int64_t bs = p->bias_stride[3];
            for (int c = 0; c < nk; c++) {
                float bv = br[c * bs];
                /* -inf masks even a NaN score (from NaN stored in a masked key) */
                row[c] = bv == -INFINITY ? -INFINITY : row[c] + bv;
            }
        }
        if (p->mask) {
            const uint8_t *mr = p->mask + b * p->mask_stride[0] + (h + prob->head_off) * p->mask_stride[1] +
                                (i + s->pos_q) * p->mask_stride[2] + (j0 + s->pos_kv) * p->mask_stride[3];
            int64_t ms = p->mask_stride[3];
            for (int c = 0; c < nk; c++)
                if (!mr[c * ms]) row[c] = -INFINITY;
        }
        if (kind == SATTN__TILE_PARTIAL) { /* the row sees keys [lo, hi): mask both sides */
            int64_t lo, hi;
            sattn__row_range(prob, s, i, &lo, &hi);
            int a = (int)(lo - j0 < 0 ? 0 : (lo - j0 > nk ? nk : lo - j0));
            int e = (int)(hi - j0 < a ? a : (hi - j0 > nk ? nk : hi - j0));
            for (int c = 0; c < a; c++) row[c] = -INFINITY;
            for (int c = e; c < nk; c++) row[c] = -INFINITY;
        }
    }
}

/* ---- dropout ---- */

void sattn__tile_dropout(const sattn__problem *prob, const sattn__seq *s, int64_t h,
                         int64_t i0, int mq, int64_t j0, int nk, float *Z, int ldz)
{
    const uint64_t seed = prob->seed;
    const uint32_t thr = prob->dropout_threshold;
    const float keep = prob->dropout_scale;
    for (int r = 0; r < mq; r++) {
        float *z = Z + (int64_t)r * ldz;
        /* counters at positions in the whole sequence (a part's rows start at pos_q) */
        uint32_t ctr[4] = {0, (uint32_t)(i0 + r + s->pos_q), (uint32_t)(h + prob->head_off), (uint32_t)s->b};
        uint32_t rnd[4];
        int64_t have = -1; /* the j >> 2 that rnd holds */
        for (int c = 0; c < nk; c++) {
            int64_t j = j0 + c + s->pos_kv;
            if ((j >> 2) != have) {
                have = j >> 2;
                ctr[0] = (uint32_t)have;
                sattn__philox4x32_10(ctr, seed, rnd);
            }
            z[c] = (rnd[j & 3] >> 8) >= thr ? keep : 0.0f;
        }
    }
}

void sattn__tile_dropout_apply(const sattn__problem *prob, const sattn__seq *s, int64_t h, int64_t i0,
                               int mq, int64_t j0, int nk, float *P, int ldp, float *Z)
{
    sattn__tile_dropout(prob, s, h, i0, mq, j0, nk, Z, ldp);
    for (int r = 0; r < mq; r++)
        for (int c = 0; c < nk; c++) P[(int64_t)r * ldp + c] *= Z[(int64_t)r * ldp + c];
}

/* ---- storage ---- */

/* 1 if any of the n floats is NaN or Inf (all exponent bits set). */
static int any_nonfinite(const float *x, int n)
{
    uint32_t bad = 0;
    for (int c = 0; c < n; c++) {
        uint32_t u = sattn__f32_bits(x[c]);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return bad != 0;
}

void sattn__load_rows(const sattn__kernels *kt, float *dst, int ld, const void *src, int64_t row_stride, int rows,
                      int cols, sattn_dtype dtype, float scale)
{
    const int64_t es = sattn__dtype_size(dtype);
    const int apart = row_stride != cols; /* contiguous rows: the hardware follows them */
    for (int r = 0; r < rows; r++) {
        if (apart && r + SATTN__PREFETCH_ROWS < rows)
            sattn__prefetch_rows((const char *)src + (r + SATTN__PREFETCH_ROWS) * row_stride * es, 0, 1, cols * es);
        kt->load_row(dst + (int64_t)r * ld, (const char *)src + r * row_stride * es, cols, (int)dtype, scale);
    }
}

int sattn__rows_nonfinite(const float *x, int ld, int rows, int cols)
{
    int bad = 0;
    for (int r = 0; r < rows; r++) bad |= any_nonfinite(x + (int64_t)r * ld, cols);
    return bad;
}

void sattn__load_rows_t(const sattn__kernels *kt, float *dst, int ld, const void *src, int64_t row_stride, int rows,
                        int cols, sattn_dtype dtype)
{
    kt->load_rows_t(dst, ld, src, row_stride, rows, cols, (int)dtype);
}

void sattn__store_rows(const sattn__kernels *kt, void *dst, int64_t row_stride, const float *src, int ld, int rows,
                       int cols, sattn_dtype dtype, float scale)
{
    const int64_t es = sattn__dtype_size(dtype);
    for (int r = 0; r < rows; r++)
        kt->store_row((char *)dst + r * row_stride * es, src + (int64_t)r * ld, cols, (int)dtype, scale);
}

void sattn__zero_rows(void *dst, int64_t row_stride, int rows, int cols, sattn_dtype dtype)
{
    size_t es = (size_t)sattn__dtype_size(dtype); /* +0.0 is all-zero bits in every dtype */
    for (int r = 0; r < rows; r++)
        memset((char *)dst + r * row_stride * (int64_t)es, 0, (size_t)cols * es);
}
