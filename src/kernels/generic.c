/* Generic C kernels: the portable fallback and the reference the SIMD variants are
 * tested against. Written so that compilers vectorize the inner loops without
 * reassociating float sums. */
#include <math.h>
#include <stdint.h>

#include "../convert.h"
#include "kernels.h"
#include "sattn.h"

/* ---- tile products ---- */

static void axpy(float *y, float a, const float *x, int n)
{
    for (int c = 0; c < n; c++) y[c] += a * x[c];
}

/* Row r of C gathers a·B[kk] row by row: the inner loop vectorizes, and a zero a is
   skipped, which is what the exact rule asks. */
void sattn__gemm_generic(float *C, int ldc, const float *A, int ars, int acs, const float *B,
                         int ldb, int m, int n, int k, int accumulate, int exact)
{
    (void)exact; /* always exact */
    for (int r = 0; r < m; r++) {
        float *c = C + (int64_t)r * ldc;
        if (!accumulate)
            for (int j = 0; j < n; j++) c[j] = 0.0f;
        for (int kk = 0; kk < k; kk++) {
            float a = A[(int64_t)r * ars + (int64_t)kk * acs];
            if (a != 0.0f) axpy(c, a, B + (int64_t)kk * ldb, n);
        }
    }
}

static float dot(const float *a, const float *b, int k)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}; /* fixed lanes: vectorizes without -ffast-math */
    int c = 0;
    for (; c + 8 <= k; c += 8)
        for (int u = 0; u < 8; u++) acc[u] += a[c + u] * b[c + u];
    for (int u = 0; c < k; c++, u++) acc[u] += a[c] * b[c];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static void gemm_nt(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int m,
                    int n, int k)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) C[(int64_t)i * ldc + j] = dot(A + (int64_t)i * lda, B + (int64_t)j * ldb, k);
}

/* ---- storage conversions ---- */

void sattn__load_row_generic(float *dst, const void *src, int n, int dtype, float scale)
{
    if (dtype == SATTN_F32) {
        const float *s = src;
        for (int c = 0; c < n; c++) dst[c] = scale * s[c];
    } else if (dtype == SATTN_F16) {
        const uint16_t *s = src;
        for (int c = 0; c < n; c++) dst[c] = scale * sattn__f16_to_f32(s[c]);
    } else {
        const uint16_t *s = src;
        for (int c = 0; c < n; c++) dst[c] = scale * sattn__bf16_to_f32(s[c]);
    }
}

void sattn__load_rows_t_generic(float *dst, int ld, const void *src, int64_t row_stride, int rows, int cols,
                                int dtype)
{
    for (int r = 0; r < rows; r++) {
        if (dtype == SATTN_F32) {
            const float *s = (const float *)src + r * row_stride;
            for (int c = 0; c < cols; c++) dst[(int64_t)c * ld + r] = s[c];
        } else {
            const uint16_t *s = (const uint16_t *)src + r * row_stride;
            if (dtype == SATTN_F16)
                for (int c = 0; c < cols; c++) dst[(int64_t)c * ld + r] = sattn__f16_to_f32(s[c]);
            else
                for (int c = 0; c < cols; c++) dst[(int64_t)c * ld + r] = sattn__bf16_to_f32(s[c]);
        }
    }
}

void sattn__store_row_generic(void *dst, const float *src, int n, int dtype, float scale)
{
    if (dtype == SATTN_F32) {
        float *d = dst;
        for (int c = 0; c < n; c++) d[c] = scale * src[c];
    } else if (dtype == SATTN_F16) {
        uint16_t *d = dst;
        for (int c = 0; c < n; c++) d[c] = sattn__f32_to_f16(scale * src[c]);
    } else {
        uint16_t *d = dst;
        for (int c = 0; c < n; c++) d[c] = sattn__f32_to_bf16(scale * src[c]);
    }
}

/* 16-bit B: converted a block of rows at a time into a stack buffer, then the f32
   product of the table in use (the AVX2 table shares these). */
#define SATTN__H_ROWS 16
#define SATTN__H_COLS 512

void sattn__gemm_nt_h_generic(float *C, int ldc, const float *A, int lda, const uint16_t *B, int ldb,
                              int m, int n, int k, int dtype)
{
    float buf[SATTN__H_ROWS * SATTN__H_COLS];
    const sattn__kernels *tbl = sattn__kernels_get();
    if (k > SATTN__H_COLS) { /* wide rows: one key at a time */
        for (int j = 0; j < n; j++)
            for (int c0 = 0; c0 < k; c0 += SATTN__H_COLS) {
                int kc = k - c0 < SATTN__H_COLS ? k - c0 : SATTN__H_COLS;
                float part[SATTN__H_ROWS];
                tbl->load_row(buf, B + (int64_t)j * ldb + c0, kc, dtype, 1.0f);
                for (int i0 = 0; i0 < m; i0 += SATTN__H_ROWS) {
                    int mm = m - i0 < SATTN__H_ROWS ? m - i0 : SATTN__H_ROWS;
                    tbl->gemm_nt(part, 1, A + (int64_t)i0 * lda + c0, lda, buf, kc, mm, 1, kc);
                    for (int i = 0; i < mm; i++)
                        C[(int64_t)(i0 + i) * ldc + j] = (c0 ? C[(int64_t)(i0 + i) * ldc + j] : 0.0f) + part[i];
                }
            }
        return;
    }
    for (int j0 = 0; j0 < n; j0 += SATTN__H_ROWS) {
        int nn = n - j0 < SATTN__H_ROWS ? n - j0 : SATTN__H_ROWS;
        for (int j = 0; j < nn; j++) tbl->load_row(buf + j * k, B + (int64_t)(j0 + j) * ldb, k, dtype, 1.0f);
        tbl->gemm_nt(C + j0, ldc, A, lda, buf, k, m, nn, k);
    }
}

void sattn__gemm_h_generic(float *C, int ldc, const float *A, int ars, int acs, const uint16_t *B,
                           int ldb, int m, int n, int k, int accumulate, int dtype)
{
    float buf[SATTN__H_ROWS * SATTN__H_COLS];
    const sattn__kernels *tbl = sattn__kernels_get();
    for (int c0 = 0; c0 < n; c0 += SATTN__H_COLS) {
        int nc = n - c0 < SATTN__H_COLS ? n - c0 : SATTN__H_COLS;
        for (int k0 = 0; k0 < k; k0 += SATTN__H_ROWS) {
            int kk = k - k0 < SATTN__H_ROWS ? k - k0 : SATTN__H_ROWS;
            for (int r = 0; r < kk; r++) tbl->load_row(buf + r * nc, B + (int64_t)(k0 + r) * ldb + c0, nc, dtype, 1.0f);
            tbl->gemm(C + c0, ldc, A + (int64_t)k0 * acs, ars, acs, buf, nc, m, nc, kk, accumulate || k0 > 0, 0);
        }
    }
}

/* ---- softmax ---- */

static void softmax_online(float *S, int lds, int m, int n, float *mx, float *sum,
                           float *O, int ldo, int dv)
{
    for (int r = 0; r < m; r++) {
        float *s = S + r * lds;
        float mnew = mx[r];
        for (int c = 0; c < n; c++) mnew = s[c] > mnew ? s[c] : mnew;
        if (mnew == -INFINITY) { /* nothing visible yet */
            for (int c = 0; c < n; c++) s[c] = 0.0f;
            continue;
        }
        float alpha = expf(mx[r] - mnew); /* mx = -inf gives 0 */
        float rs = 0.0f;
        for (int c = 0; c < n; c++) {
            s[c] = expf(s[c] - mnew);
            rs += s[c];
        }
        if (alpha != 1.0f)
            for (int c = 0; c < dv; c++) O[r * ldo + c] *= alpha;
        sum[r] = sum[r] * alpha + rs;
        mx[r] = mnew;
    }
}

static void softmax_recompute(float *S, int lds, int m, int n, const float *lse)
{
    for (int r = 0; r < m; r++) {
        float *s = S + r * lds;
        if (lse[r] == -INFINITY) {
            for (int c = 0; c < n; c++) s[c] = 0.0f;
            continue;
        }
        for (int c = 0; c < n; c++) s[c] = expf(s[c] - lse[r]);
    }
}

static void softmax_grad(float *dP, int lddp, const float *P, int ldp, int m, int n,
                         const float *D)
{
    for (int r = 0; r < m; r++)
        for (int c = 0; c < n; c++) {
            float pv = P[r * ldp + c];
            dP[r * lddp + c] = pv != 0.0f ? pv * (dP[r * lddp + c] - D[r]) : 0.0f;
        }
}

const sattn__kernels sattn__kernels_generic = {
    .name = "generic",
    .gemm = sattn__gemm_generic,
    .gemm_nt = gemm_nt,
    .gemm_nt_h = sattn__gemm_nt_h_generic,
    .gemm_h = sattn__gemm_h_generic,
    .load_rows_t = sattn__load_rows_t_generic,
    .load_row = sattn__load_row_generic,
    .store_row = sattn__store_row_generic,
    .softmax_online = softmax_online,
    .softmax_recompute = softmax_recompute,
    .softmax_grad = softmax_grad,
};
