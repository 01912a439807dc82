/* Generic C kernels: the portable fallback and the reference the SIMD variants are
 * tested against. Written so that compilers vectorize the inner loops without
 * reassociating float sums. */
#include <math.h>
#include <stdint.h>

#include "../convert.h"
#include "kernels.h"
#include "rows.h" /* simd.h without an ISA: one float per vector */
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

static void gemm(float *C, int ldc, const float *A, int ars, int acs, const float *B, int ldb, int m, int n, int k,
                 int accumulate, int exact)
{
    sattn__gemm_generic(C, ldc, A, ars, acs, B, ldb, m, n, k, accumulate, exact);
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

/* ---- transposed loads, for K panels ---- */

void sattn__load_rows_t_generic(float *dst, int ld, const void *src, int64_t row_stride, int rows, int cols,
                                int dtype)
{
    const size_t es = (size_t)sattn__dtype_size(dtype);
    float buf[256];
    for (int r = 0; r < rows; r++)
        for (int c0 = 0; c0 < cols; c0 += 256) {
            int nc = cols - c0 < 256 ? cols - c0 : 256;
            row_load(buf, (const char *)src + ((int64_t)r * row_stride + c0) * (int64_t)es, nc, dtype, 1.0f);
            for (int c = 0; c < nc; c++) dst[(int64_t)(c0 + c) * ld + r] = buf[c];
        }
}

/* ---- the decode path's 16-bit forms (kernels.h), plainly: the tables without a faster
   form (decode_bf16 = SATTN__BF16_PLAIN, span_values = 0) never choose them, but every
   entry exists and is tested against the same reference ---- */

/* element c of a row in pair order is element pair_elem(c) as stored */
static int pair_elem(int c) { return (c & ~31) | ((c & 15) << 1) | ((c >> 4) & 1); }

void sattn__gemm_nt_bf16p_generic(float *C, int ldc, const float *A, int lda, const uint16_t *B, int ldb, int m, int n,
                                  int k)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float s = 0.0f;
            for (int c = 0; c < k; c++)
                s += A[(int64_t)i * lda + c] * sattn__bf16_to_f32(B[(int64_t)j * ldb + pair_elem(c)]);
            C[(int64_t)i * ldc + j] = s;
        }
}

void sattn__gemm_bf16p_generic(float *C, int ldc, const float *A, int ars, int acs, const uint16_t *B, int ldb, int m,
                               int n, int k)
{
    for (int i = 0; i < m; i++)
        for (int kk = 0; kk < k; kk++) {
            float a = A[(int64_t)i * ars + (int64_t)kk * acs];
            const uint16_t *b = B + (int64_t)kk * ldb;
            for (int j = 0; j < n; j++) C[(int64_t)i * ldc + j] += a * sattn__bf16_to_f32(b[pair_elem(j)]);
        }
}

void sattn__gemm_h_span_generic(float *C, int ldc, const float *A, int lda, const uint16_t *B, int ldb, int m, int n,
                                int k, int dtype, int pairs)
{
    if (pairs) {
        sattn__gemm_bf16p_generic(C, ldc, A, lda, 1, B, ldb, m, n, k);
        return;
    }
    gemm_h_buffered(C, ldc, A, lda, 1, B, ldb, m, n, k, 1, dtype);
}

void sattn__gemm_nt_bf16dp_generic(float *C, int ldc, const uint16_t *A, int lda, const uint16_t *B, int ldb, int m,
                                   int n, int k, float scale)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float s = 0.0f;
            for (int c = 0; c < k; c++)
                s += sattn__bf16_to_f32(A[(int64_t)i * lda + c]) * sattn__bf16_to_f32(B[(int64_t)j * ldb + c]);
            C[(int64_t)i * ldc + j] = scale * s;
        }
}

/* Always exact (a zero of A is skipped), so that it also serves the SIMD tables' exact
   calls. */
void sattn__gemm_dp_generic(float *C, int ldc, const uint16_t *A, int lda, const uint16_t *B, int ldb, int m, int n,
                            int k2, int accumulate, float scale, int exact)
{
    (void)exact;
    for (int i = 0; i < m; i++) {
        const uint16_t *a = A + (int64_t)i * lda;
        for (int j = 0; j < n; j++) {
            float s = accumulate ? C[(int64_t)i * ldc + j] : 0.0f;
            for (int p = 0; p < k2; p++) {
                const uint16_t *b = B + 2 * ((int64_t)p * ldb + j);
                float a1 = sattn__bf16_to_f32(a[2 * p + 1]), a0 = sattn__bf16_to_f32(a[2 * p]);
                if (a1 != 0.0f) s += a1 * sattn__bf16_to_f32(b[1]);
                if (a0 != 0.0f) s += a0 * sattn__bf16_to_f32(b[0]);
            }
            C[(int64_t)i * ldc + j] = accumulate ? s : scale * s;
        }
    }
}

const sattn__kernels sattn__kernels_generic = {
    .name = "generic",
    .decode_bf16 = SATTN__BF16_PLAIN,
    .span_values = 0,
    .bf16_products = 0,
    .gemm = gemm,
    .gemm_nt = gemm_nt,
    .gemm_nt_h = gemm_nt_h_buffered,
    .gemm_h = gemm_h_buffered,
    .gemm_nt_bf16p = sattn__gemm_nt_bf16p_generic,
    .gemm_bf16p = sattn__gemm_bf16p_generic,
    .gemm_h_span = sattn__gemm_h_span_generic,
    .gemm_nt_bf16dp = sattn__gemm_nt_bf16dp_generic,
    .gemm_dp = sattn__gemm_dp_generic,
    .load_rows_t = sattn__load_rows_t_generic,
    .load_row = row_load,
    .store_row = row_store,
    .softmax_online = softmax_online,
    .softmax_online_log2 = softmax_online_log2,
    .softmax_recompute = softmax_recompute,
    .softmax_grad = softmax_grad,
};
