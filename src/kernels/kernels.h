/* The kernel table: every piece of tile arithmetic, once per ISA. One table is chosen
 * at run time (dispatch.c) and used for the whole call. Tiles are row-major f32 with
 * explicit leading dimensions; m <= SATTN__BQ, n <= SATTN__BK (or the reverse for the
 * transposed products), k <= SATTN__MAX_HEAD_DIM. */
#ifndef SATTN_KERNELS_H
#define SATTN_KERNELS_H

typedef struct sattn__kernels {
    const char *name;

    /* C[m][n] = sum_k A[m][k] * B[n][k]          (S = Q·Kᵀ, dP = dO·Vᵀ) */
    void (*gemm_nt)(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                    int m, int n, int k);
    /* C[m][n] += sum_k A[m][k] * B[k][n]         (O += P·V, dQ += dS·K)
       A[m][k] == 0 contributes nothing, even where B[k] holds NaN or Inf: that is how
       values stored in masked keys stay out of the output. */
    void (*gemm_nn_acc)(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                        int m, int n, int k);
    /* C[m][n] += sum_k A[k][m] * B[k][n]         (dV += Pᵀ·dO, dK += dSᵀ·Q); same zero rule. */
    void (*gemm_tn_acc)(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                        int m, int n, int k);

    /* Online softmax over one key block, row by row:
         mx' = max(mx, max_c S[r][c]);  alpha = exp(mx - mx')
         S[r][c] = exp(S[r][c] - mx')   (0 for -inf scores)
         sum = sum * alpha + sum_c S[r][c];  O[r][0..dv) *= alpha
       A row whose scores are all -inf so far stays at mx = -inf, sum = 0, P = 0. */
    void (*softmax_online)(float *S, int lds, int m, int n, float *mx, float *sum,
                           float *O, int ldo, int dv);
    /* S[r][c] = exp(S[r][c] - lse[r]); rows with lse = -inf become 0. */
    void (*softmax_recompute)(float *S, int lds, int m, int n, const float *lse);
    /* dP[r][c] = P[r][c] * (dP[r][c] - D[r]), and exactly 0 where P[r][c] == 0. */
    void (*softmax_grad)(float *dP, int lddp, const float *P, int ldp, int m, int n,
                         const float *D);
} sattn__kernels;

/* The table for this CPU, chosen once: the best the CPU runs, or the one named by the
   environment variable SATTN_ISA (generic, avx2, avx512) if the CPU runs it. */
const sattn__kernels *sattn__kernels_get(void);

extern const sattn__kernels sattn__kernels_generic;

#endif
