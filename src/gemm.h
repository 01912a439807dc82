/* The dense GEMMs of the layer's projections (gemm.c): CBLAS when a BLAS was found
 * at build time, else a blocked product on the kernel table's micro-kernel. */
#ifndef SATTN_GEMM_H
#define SATTN_GEMM_H

#include <stdint.h>

#include "sattn.h"

/* C = op(A) · op(B), or C += op(A) · op(B) when accumulate; row-major f32.
   op(A) is M x K (A stored K x M when trans_a), op(B) is K x N (B stored N x K when
   trans_b); lda, ldb, ldc are the row strides of A, B, C as stored. Runs on
   sattn__threads() threads. The same inputs give the same bits for any thread count.
   Returns SATTN_OK or SATTN_ERR_NOMEM (C untouched). M, N or K may be 0. */
sattn_status sattn__sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, const float *A,
                          int64_t lda, const float *B, int64_t ldb, int accumulate, float *C, int64_t ldc);

/* "openblas (CORE)" or "builtin (ISA)": what sattn__sgemm runs on. */
const char *sattn__gemm_backend(void);

#endif /* SATTN_GEMM_H */
