/* Generic C kernels: the portable fallback and the reference the SIMD variants are
 * tested against. Written so that compilers vectorize the inner loops without
 * reassociating float sums. */
#include <math.h>
#include <stdint.h>

#include "kernels.h"

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
    .softmax_online = softmax_online,
    .softmax_recompute = softmax_recompute,
    .softmax_grad = softmax_grad,
};
