/* Generic C kernels: the portable fallback and the reference the SIMD variants are
 * tested against. Written so that compilers vectorize the inner loops without
 * reassociating float sums (fixed partial-sum lanes instead of -ffast-math). */
#include <math.h>

#include "kernels.h"

/* ---- tile products ---- */

static float dot(const float *a, const float *b, int k)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int c = 0;
    for (; c + 8 <= k; c += 8)
        for (int u = 0; u < 8; u++) acc[u] += a[c + u] * b[c + u];
    for (int u = 0; c < k; c++, u++) acc[u] += a[c] * b[c];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static void gemm_nt(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                    int m, int n, int k)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) C[i * ldc + j] = dot(A + i * lda, B + j * ldb, k);
}

static void axpy(float *y, float a, const float *x, int n)
{
    for (int c = 0; c < n; c++) y[c] += a * x[c];
}

static void gemm_nn_acc(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                        int m, int n, int k)
{
    for (int i = 0; i < m; i++)
        for (int kk = 0; kk < k; kk++) {
            float a = A[i * lda + kk];
            if (a != 0.0f) axpy(C + i * ldc, a, B + kk * ldb, n);
        }
}

static void gemm_tn_acc(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                        int m, int n, int k)
{
    for (int kk = 0; kk < k; kk++)
        for (int i = 0; i < m; i++) {
            float a = A[kk * lda + i];
            if (a != 0.0f) axpy(C + i * ldc, a, B + kk * ldb, n);
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
    .gemm_nt = gemm_nt,
    .gemm_nn_acc = gemm_nn_acc,
    .gemm_tn_acc = gemm_tn_acc,
    .softmax_online = softmax_online,
    .softmax_recompute = softmax_recompute,
    .softmax_grad = softmax_grad,
};
