/* The row code of every kernel table, written once over simd.h and compiled once per
 * ISA file (generic.c, avx2.c, avx512.c): storage conversions and the three softmax
 * steps. Their semantics are those of kernels.h. Each row is walked in whole vectors,
 * then one tail vector; the tail is masked (vmaskmovps is slow on some CPUs, so the
 * whole vectors use plain loads). Included after simd.h; everything here is static. */
#ifndef SATTN_ROWS_H
#define SATTN_ROWS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "simd.h"

/* a whole vector (TAIL = 0) or the first lanes of one (TAIL = 1, mask t) */
SV_INLINE sv ld(const int TAIL, const float *p, st t) { return TAIL ? sv_loadt(p, t) : sv_load(p); }
SV_INLINE void stv(const int TAIL, float *p, sv x, st t)
{
    if (TAIL) sv_storet(p, x, t);
    else sv_store(p, x);
}

/* ---- storage conversions ---- */

/* dst[0 .. SV_N) = scale * src as dtype; a tail of n < SV_N goes through a buffer */
SV_INLINE void load_vec(const int TAIL, float *dst, const void *src, int n, int dtype, sv vs)
{
    st t = sv_tail(n);
    if (dtype == SATTN_F32) {
        stv(TAIL, dst, sv_mul(vs, ld(TAIL, src, t)), t);
        return;
    }
    uint16_t buf[SV_N];
    const uint16_t *h = src;
    if (TAIL) {
        memset(buf, 0, sizeof buf);
        memcpy(buf, src, (size_t)n * sizeof(uint16_t));
        h = buf;
    }
    sv x = dtype == SATTN_F16 ? sv_load_f16(h) : sv_load_bf16(h);
    stv(TAIL, dst, sv_mul(vs, x), t);
}

static void row_load(float *dst, const void *src, int n, int dtype, float scale)
{
    const sv vs = sv_set1(scale);
    const size_t es = (size_t)sattn__dtype_size(dtype);
    int c = 0;
    for (; c + SV_N <= n; c += SV_N) load_vec(0, dst + c, (const char *)src + (size_t)c * es, SV_N, dtype, vs);
    if (c < n) load_vec(1, dst + c, (const char *)src + (size_t)c * es, n - c, dtype, vs);
}

/* dst = scale * src rounded to dtype, SV_N of them, or n < SV_N through a buffer */
SV_INLINE void store_vec(const int TAIL, void *dst, const float *src, int n, int dtype, sv vs)
{
    st t = sv_tail(n);
    sv x = sv_mul(vs, ld(TAIL, src, t));
    if (dtype == SATTN_F32) {
        stv(TAIL, dst, x, t);
        return;
    }
    uint16_t buf[SV_N];
    uint16_t *h = TAIL ? buf : dst;
    if (dtype == SATTN_F16) sv_store_f16(h, x);
    else sv_store_bf16(h, x);
    if (TAIL) memcpy(dst, buf, (size_t)n * sizeof(uint16_t));
}

static void row_store(void *dst, const float *src, int n, int dtype, float scale)
{
    const sv vs = sv_set1(scale);
    const size_t es = (size_t)sattn__dtype_size(dtype);
    int c = 0;
    for (; c + SV_N <= n; c += SV_N) store_vec(0, (char *)dst + (size_t)c * es, src + c, SV_N, dtype, vs);
    if (c < n) store_vec(1, (char *)dst + (size_t)c * es, src + c, n - c, dtype, vs);
}

/* ---- softmax ---- */

/* Applies step(TAIL, pointer offset c, tail mask) to a row of n floats. */
#define ROW_WALK(n, step)                                      \
    do {                                                       \
        int c_ = 0;                                            \
        for (; c_ + SV_N <= (n); c_ += SV_N) step(0, c_, sv_full()); \
        if (c_ < (n)) step(1, c_, sv_tail((n) - c_));          \
    } while (0)

/* As ROW_WALK, with step(TAIL, offset, tail mask, a) naming one of four accumulators
   a: vectors 4i + a of the whole ones go to a (four dependency chains, not one; the
   order of each chain's terms is fixed by n alone), the rest and the tail to 0. */
#define ROW_WALK4(n, step)                                                  \
    do {                                                                    \
        int c_ = 0;                                                         \
        for (; c_ + 4 * SV_N <= (n); c_ += 4 * SV_N) {                      \
            step(0, c_, sv_full(), 0);                                      \
            step(0, c_ + SV_N, sv_full(), 1);                               \
            step(0, c_ + 2 * SV_N, sv_full(), 2);                           \
            step(0, c_ + 3 * SV_N, sv_full(), 3);                           \
        }                                                                   \
        for (; c_ + SV_N <= (n); c_ += SV_N) step(0, c_, sv_full(), 0);     \
        if (c_ < (n)) step(1, c_, sv_tail((n) - c_), 0);                    \
    } while (0)

/* BASE2: S holds the scores times log2 e (and mx follows them): exp2 in place of exp. */
SV_INLINE void softmax_online_base(const int BASE2, float *S, int lds, int m, int n, float *mx, float *sum, float *O,
                                   int ldo, int dv)
{
    const sv ninf = sv_set1(-INFINITY), zero = sv_zero();
    /* Rows in groups of SOFTMAX_ROWS: first every row's max, then every row's exp pass,
       so that one row's max reduction (a chain of some 30 cycles) runs beside the other
       rows' loads instead of holding up its own exp pass. */
    enum { SOFTMAX_ROWS = 8 };
    float bmaxs[SOFTMAX_ROWS];
    for (int r = 0; r < m; r++) {
        if (r % SOFTMAX_ROWS == 0)
            for (int g = r; g < m && g < r + SOFTMAX_ROWS; g++) {
                const float *sg = S + (int64_t)g * lds;
                sv vmax[4] = {ninf, ninf, ninf, ninf};
#define MAX_STEP(T, c, t, a) \
    vmax[a] = sv_max(vmax[a], T ? sv_select(sv_tail_sm(t), sv_loadt(sg + (c), t), ninf) : sv_load(sg + (c)))
                ROW_WALK4(n, MAX_STEP);
#undef MAX_STEP
                bmaxs[g - r] = sv_hmax(sv_max(sv_max(vmax[0], vmax[1]), sv_max(vmax[2], vmax[3])));
            }
        float *s = S + (int64_t)r * lds;
        const float bmax = bmaxs[r % SOFTMAX_ROWS];
        /* a NaN score makes the row NaN (the lanes' max may or may not carry it) */
        float mnew = bmax > mx[r] || bmax != bmax ? bmax : mx[r];
        if (mnew == -INFINITY) { /* nothing visible yet */
#define ZERO_STEP(T, c, t) stv(T, s + (c), zero, t)
            ROW_WALK(n, ZERO_STEP);
            continue;
        }
        /* the old terms' factor; most blocks past the first leave the max as it was */
        float alpha = mnew == mx[r] ? 1.0f : BASE2 ? exp2f(mx[r] - mnew) : expf(mx[r] - mnew); /* -inf: 0 */
        sv vm = sv_set1(mnew), vsum[4] = {zero, zero, zero, zero};
#define EXP_STEP(T, c, t, a)                                                         \
    do {                                                                             \
        sv x_ = sv_sub(ld(T, s + (c), t), vm);                                       \
        sv e_ = BASE2 ? sv_exp2_weight(x_) : sv_exp_weight(x_);                      \
        if (T) e_ = sv_select(sv_tail_sm(t), e_, zero); /* lanes past n: not summed */ \
        stv(T, s + (c), e_, t);                                                      \
        vsum[a] = sv_add(vsum[a], e_);                                               \
    } while (0)
        ROW_WALK4(n, EXP_STEP);
#undef EXP_STEP
        if (alpha != 1.0f) {
            sv va = sv_set1(alpha);
            float *o = O + (int64_t)r * ldo;
#define SCALE_STEP(T, c, t) stv(T, o + (c), sv_mul(va, ld(T, o + (c), t)), t)
            ROW_WALK(dv, SCALE_STEP);
#undef SCALE_STEP
        }
        sum[r] = sum[r] * alpha + sv_hsum(sv_add(sv_add(vsum[0], vsum[1]), sv_add(vsum[2], vsum[3])));
        mx[r] = mnew;
    }
}

static void softmax_online(float *S, int lds, int m, int n, float *mx, float *sum, float *O, int ldo, int dv)
{
    softmax_online_base(0, S, lds, m, n, mx, sum, O, ldo, dv);
}

static void softmax_online_log2(float *S, int lds, int m, int n, float *mx, float *sum, float *O, int ldo, int dv)
{
    softmax_online_base(1, S, lds, m, n, mx, sum, O, ldo, dv);
}

static void softmax_recompute(float *S, int lds, int m, int n, const float *lse)
{
    const sv zero = sv_zero();
    for (int r = 0; r < m; r++) {
        float *s = S + (int64_t)r * lds;
        if (lse[r] == -INFINITY) {
            ROW_WALK(n, ZERO_STEP);
            continue;
        }
        sv vl = sv_set1(lse[r]);
#define RECOMPUTE_STEP(T, c, t) stv(T, s + (c), sv_exp_weight(sv_sub(ld(T, s + (c), t), vl)), t)
        ROW_WALK(n, RECOMPUTE_STEP);
#undef RECOMPUTE_STEP
    }
}
#undef ZERO_STEP

static void softmax_grad(float *dP, int lddp, const float *P, int ldp, int m, int n, const float *D)
{
    const sv zero = sv_zero();
    for (int r = 0; r < m; r++) {
        float *g = dP + (int64_t)r * lddp;
        const float *pr = P + (int64_t)r * ldp;
        sv vd = sv_set1(D[r]);
        /* exactly 0 where P is 0, whatever dP holds (NaN from a masked value) */
#define GRAD_STEP(T, c, t)                                                   \
    do {                                                                     \
        sv p_ = ld(T, pr + (c), t);                                          \
        sv ds_ = sv_mul(p_, sv_sub(ld(T, g + (c), t), vd));                  \
        stv(T, g + (c), sv_select(sv_nonzero(p_), ds_, zero), t);            \
    } while (0)
        ROW_WALK(n, GRAD_STEP);
#undef GRAD_STEP
    }
}

/* ---- 16-bit B through a buffer: a block of rows converted into f32 on the stack, then
   this table's f32 product (each file including this one defines gemm and gemm_nt) ---- */

static void gemm(float *C, int ldc, const float *A, int ars, int acs, const float *B, int ldb, int m, int n, int k,
                 int accumulate, int exact);
static void gemm_nt(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int m, int n, int k);

#define H_ROWS 16
#define H_COLS 512

static void gemm_nt_h_buffered(float *C, int ldc, const float *A, int lda, const uint16_t *B, int ldb, int m, int n,
                               int k, int dtype)
{
    float buf[H_ROWS * H_COLS];
    if (k > H_COLS) { /* wide rows: one key at a time, H_COLS columns at a time */
        for (int j = 0; j < n; j++)
            for (int c0 = 0; c0 < k; c0 += H_COLS) {
                int kc = k - c0 < H_COLS ? k - c0 : H_COLS;
                float part[H_ROWS];
                row_load(buf, B + (int64_t)j * ldb + c0, kc, dtype, 1.0f);
                for (int i0 = 0; i0 < m; i0 += H_ROWS) {
                    int mm = m - i0 < H_ROWS ? m - i0 : H_ROWS;
                    gemm_nt(part, 1, A + (int64_t)i0 * lda + c0, lda, buf, kc, mm, 1, kc);
                    for (int i = 0; i < mm; i++)
                        C[(int64_t)(i0 + i) * ldc + j] = (c0 ? C[(int64_t)(i0 + i) * ldc + j] : 0.0f) + part[i];
                }
            }
        return;
    }
    for (int j0 = 0; j0 < n; j0 += H_ROWS) {
        int nn = n - j0 < H_ROWS ? n - j0 : H_ROWS;
        for (int j = 0; j < nn; j++) row_load(buf + j * k, B + (int64_t)(j0 + j) * ldb, k, dtype, 1.0f);
        gemm_nt(C + j0, ldc, A, lda, buf, k, m, nn, k);
    }
}

static void gemm_h_buffered(float *C, int ldc, const float *A, int ars, int acs, const uint16_t *B, int ldb, int m,
                            int n, int k, int accumulate, int dtype)
{
    float buf[H_ROWS * H_COLS];
    for (int c0 = 0; c0 < n; c0 += H_COLS) {
        int nc = n - c0 < H_COLS ? n - c0 : H_COLS;
        for (int k0 = 0; k0 < k; k0 += H_ROWS) {
            int kk = k - k0 < H_ROWS ? k - k0 : H_ROWS;
            for (int r = 0; r < kk; r++) row_load(buf + r * nc, B + (int64_t)(k0 + r) * ldb + c0, nc, dtype, 1.0f);
            gemm(C + c0, ldc, A + (int64_t)k0 * acs, ars, acs, buf, nc, m, nc, kk, accumulate || k0 > 0, 0);
        }
    }
}

#endif
