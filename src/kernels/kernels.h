/* The kernel table: every piece of tile arithmetic, once per ISA. One table is chosen
 * at run time (dispatch.c) when a call's problem is resolved (prob->kt) and used for
 * the whole call. Tiles are f32; the callers pack K, V (and their transposes) so that
 * every product has the one shape below. Every entry exists in every table (the
 * generic one is the reference); where an ISA has no faster form of an entry its
 * table points at the generic one, and the preferences below say which forms pay.
 *
 * Where the code lives: simd.h (vector primitives per ISA), rows.h (conversions and
 * softmax steps, written once over simd.h), micro.h (the register-blocked products of
 * the SIMD tables, written once), generic.c / avx2.c / avx512.c (one compilation each,
 * with its own -m flags, plus what only that ISA has). */
#ifndef SATTN_KERNELS_H
#define SATTN_KERNELS_H

#include <stdint.h>

#include "sattn.h"

/* Bytes of one stored element: 4 for SATTN_F32, 2 for SATTN_F16 and SATTN_BF16. */
static inline int sattn__dtype_size(int dtype) { return dtype == SATTN_F32 ? 4 : 2; }

/* How the decode path reads bf16 K and V: as f32 after a conversion (PLAIN), in pair
   order (PAIRS: gemm_nt_bf16p, gemm_bf16p), or in pair order with Q·Kᵀ by bf16 dot
   products (DOT: gemm_nt_bf16dp). */
enum { SATTN__BF16_PLAIN = 0, SATTN__BF16_PAIRS = 1, SATTN__BF16_DOT = 2 };

typedef struct sattn__kernels {
    const char *name;
    int decode_bf16; /* the fastest SATTN__BF16_* form of this table */
    int span_values; /* 1 if gemm_h_span beats gemm_h for P·V over a span of 16-bit values */
    int bf16_products; /* 1 if gemm_dp beats f32 FMAs (SATTN_PRODUCTS_BF16 uses it only then) */

    /* C[m][n] = (accumulate ? C[m][n] : 0) + sum_k A(r, kk) * B[kk][n]
         A(r, kk) = A[r * ars + kk * acs]   (so Aᵀ is A with the strides swapped)
         B        row-major, row stride ldb
       Every product of the forward and backward has this shape:
         S = Q·Kᵀ      A = Q (ars = d, acs = 1),   B = Kᵀ packed [d][nk]
         O += P·V      A = P,                      B = V [nk][dv]
         dV += Pᵀ·dO   A = P (ars = 1, acs = ld),  B = dO [mq][dv]
         dP = dO·Vᵀ    A = dO,                     B = Vᵀ packed [dv][nk]
         dK += dSᵀ·Q,  dQ += dS·K  likewise.
       exact: B may hold NaN or Inf (stored in masked keys or values); then an A entry
       equal to 0 must contribute exactly nothing, as the math of a masked key says. */
    void (*gemm)(float *C, int ldc, const float *A, int ars, int acs, const float *B, int ldb,
                 int m, int n, int k, int accumulate, int exact);

    /* C[m][n] = sum_k A[m][k] * B[n][k]: the dot-product form, for few rows of A
       against keys read in place (decode: B = K rows as stored, no transpose). */
    void (*gemm_nt)(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                    int m, int n, int k);

    /* gemm_nt and gemm (never exact) with B stored as f16 or bf16 (dtype), converted as
       it is read: decode reads a 16-bit KV cache in place. */
    void (*gemm_nt_h)(float *C, int ldc, const float *A, int lda, const uint16_t *B, int ldb,
                      int m, int n, int k, int dtype);
    void (*gemm_h)(float *C, int ldc, const float *A, int ars, int acs, const uint16_t *B, int ldb,
                   int m, int n, int k, int accumulate, int dtype);

    /* The same two products for bf16 B in pair order, the decode path's form (fast on
       AVX-512; decode_bf16 says whether to use them). In pair
       order each block of 32 elements of a row lists its 16 even elements, then its 16
       odd ones: the order in which one 512-bit load of 32 bf16 gives two vectors of f32
       with one operation each (x << 16 and x & 0xffff0000), where the plain order costs
       two per 16 values.
         gemm_nt_bf16p: C[m][n] = sum_k A[m][k] * B[n][k], A's rows in pair order, B's
                        rows bf16 as stored; k a multiple of 32.
         gemm_bf16p:    C[m][n] += sum_k A(r, kk) * B[kk][n], C's rows in pair order, B's
                        rows bf16 as stored; n a multiple of 32. */
    void (*gemm_nt_bf16p)(float *C, int ldc, const float *A, int lda, const uint16_t *B, int ldb,
                          int m, int n, int k);
    void (*gemm_bf16p)(float *C, int ldc, const float *A, int ars, int acs, const uint16_t *B, int ldb,
                       int m, int n, int k);
    /* C[m][n] += sum_k A[m][k] * B[k][n] for 16-bit B (dtype f16 or bf16; pairs: bf16
       with C's rows in pair order, as gemm_bf16p), A row-major, n a multiple of 64: the
       decode path's P·V over a whole span of values. Each 64-column panel of up to 4 rows
       keeps its sums in registers across all k (gemm_h, called a few keys at a time,
       stores and reloads them every call); the first pass over B reads each group of 8
       rows whole (one load per cache line of each row's n elements) before its products,
       the pattern the decode path's callers use for the other products (decode.c).
       A register-blocked form on AVX-512 only (span_values). */
    void (*gemm_h_span)(float *C, int ldc, const float *A, int lda, const uint16_t *B, int ldb, int m, int n,
                        int k, int dtype, int pairs);
    /* gemm_nt_bf16p's product with A bf16 too, both as stored, times scale:
       C[m][n] = scale * sum_k A[m][k] * B[n][k]; k a multiple of 32. AVX512-BF16's
       vdpbf16ps (the avx512bf16 table only): every product of two bf16 is exact in f32,
       each pair of products is added to the f32 sum with two roundings, and subnormal
       inputs and sums are flushed to 0 (the generic form: one f32 sum, subnormals kept).
       Half the instructions of the f32 form and no conversions: the decode path uses it
       for Q·Kᵀ with Q stored as bf16 (decode_bf16 = SATTN__BF16_DOT). */
    void (*gemm_nt_bf16dp)(float *C, int ldc, const uint16_t *A, int lda, const uint16_t *B, int ldb,
                           int m, int n, int k, float scale);

    /* The bf16 product with f32 sums, B in pair-interleaved form (SATTN_PRODUCTS_BF16):
         C[m][n] = scale * sum_{p < k2} dot2(A, p, B, n)            (accumulate = 0)
         C[m][n] += sum_{p < k2} dot2(A, p, B, n)                   (accumulate = 1)
         dot2 = A[m][2p + 1] * B[p][n][1] + A[m][2p] * B[p][n][0], added to the sum in
                that order, each product exact in f32 (8-bit by 8-bit significands)
       A bf16 row-major (lda elements), B bf16 with row p holding n pairs (ldb pairs per
       row: element e of pair n of row p at B[2 (p ldb + n) + e]). The forward's products:
         S = Q·Kᵀ   A = Q as stored,   B[p][j] = (K[j][2p], K[j][2p+1])
         O += P·V   A = P rounded,     B[p][c] = (V[2p][c], V[2p+1][c])
       vdpbf16ps (the avx512bf16 table) flushes subnormal inputs and sums to 0; the
       generic form keeps them. exact as for gemm (a 0 in A contributes nothing, even
       against NaN or Inf in B). */
    void (*gemm_dp)(float *C, int ldc, const uint16_t *A, int lda, const uint16_t *B, int ldb, int m, int n,
                    int k2, int accumulate, float scale, int exact);

    /* The transpose, for K panels: dst[c * ld + r] = src[r * row_stride + c] for r < rows,
       c < cols, src stored as dtype. */
    void (*load_rows_t)(float *dst, int ld, const void *src, int64_t row_stride, int rows, int cols,
                        int dtype);

    /* dst[c] = scale * src[c] for c < n, src stored as dtype (f32, f16 or bf16). */
    void (*load_row)(float *dst, const void *src, int n, int dtype, float scale);
    /* dst[c] = scale * src[c] rounded to dtype, nearest even (NaN stays NaN). */
    void (*store_row)(void *dst, const float *src, int n, int dtype, float scale);

    /* Online softmax over one key block, row by row:
         mx' = max(mx, max_c S[r][c]);  alpha = exp(mx - mx')
         S[r][c] = exp(S[r][c] - mx')   (0 for -inf scores)
         sum = sum * alpha + sum_c S[r][c];  O[r][0..dv) *= alpha
       A row whose scores are all -inf so far stays at mx = -inf, sum = 0, P = 0. */
    void (*softmax_online)(float *S, int lds, int m, int n, float *mx, float *sum,
                           float *O, int ldo, int dv);
    /* The same with S in units of log2 e (the scores times log2 e, so that exp(s - m) is
       exp2 of the difference: fewer operations per score) and mx in those units too. */
    void (*softmax_online_log2)(float *S, int lds, int m, int n, float *mx, float *sum,
                                float *O, int ldo, int dv);
    /* S[r][c] = exp(S[r][c] - lse[r]); rows with lse = -inf become 0. */
    void (*softmax_recompute)(float *S, int lds, int m, int n, const float *lse);
    /* dP[r][c] = P[r][c] * (dP[r][c] - D[r]), and exactly 0 where P[r][c] == 0. */
    void (*softmax_grad)(float *dP, int lddp, const float *P, int ldp, int m, int n,
                         const float *D);
} sattn__kernels;

/* 1 if a forward with storage dtype asking for SATTN_PRODUCTS_BF16 runs them on table kt
   (sattn_products_run for the public side, the resolved problem's bf16_products). */
static inline int sattn__bf16_products_run(const struct sattn__kernels *kt, int dtype)
{
    return dtype == SATTN_BF16 && kt->bf16_products;
}

/* The table for this CPU, chosen once: the best the CPU runs, or the one named by the
   environment variable SATTN_ISA (generic, avx2, avx512, avx512bf16) if the CPU runs it. */
const sattn__kernels *sattn__kernels_get(void);

/* 1 if this build has the kernel set called name and this CPU runs it. */
int sattn__cpu_runs(const char *name);

extern const sattn__kernels sattn__kernels_generic;
extern const sattn__kernels sattn__kernels_avx2;
extern const sattn__kernels sattn__kernels_avx512;
extern const sattn__kernels sattn__kernels_avx512bf16;

/* Generic kernels the SIMD tables share: the exact gemm (0 * NaN stays 0), the
   transpose's tails, and the decode path's 16-bit forms where an ISA has no faster one. */
void sattn__gemm_generic(float *C, int ldc, const float *A, int ars, int acs, const float *B,
                         int ldb, int m, int n, int k, int accumulate, int exact);
void sattn__load_rows_t_generic(float *dst, int ld, const void *src, int64_t row_stride, int rows, int cols,
                                int dtype);
void sattn__gemm_nt_bf16p_generic(float *C, int ldc, const float *A, int lda, const uint16_t *B, int ldb, int m, int n,
                                  int k);
void sattn__gemm_bf16p_generic(float *C, int ldc, const float *A, int ars, int acs, const uint16_t *B, int ldb, int m,
                               int n, int k);
void sattn__gemm_h_span_generic(float *C, int ldc, const float *A, int lda, const uint16_t *B, int ldb, int m, int n,
                                int k, int dtype, int pairs);
void sattn__gemm_nt_bf16dp_generic(float *C, int ldc, const uint16_t *A, int lda, const uint16_t *B, int ldb, int m,
                                   int n, int k, float scale);
void sattn__gemm_dp_generic(float *C, int ldc, const uint16_t *A, int lda, const uint16_t *B, int ldb, int m, int n,
                            int k2, int accumulate, float scale, int exact);

#endif
