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
    .load_row = sattn__load_row_generic,
    .store_row = sattn__store_row_generic,
    .softmax_online = softmax_online,
    .softmax_recompute = softmax_recompute,
    .softmax_grad = softmax_grad,
};
