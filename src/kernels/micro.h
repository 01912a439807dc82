/* The register-blocked products of the SIMD tables, written once over simd.h and
 * compiled by avx2.c and avx512.c (generic.c has its own plain loops: the exact
 * reference). The including file sets the blocking to its register count:
 *   MICRO_P   vectors of C per row of a gemm panel (panels of MICRO_P * SV_N columns);
 *             up to 6 rows, so 6 * MICRO_P accumulators plus MICRO_P vectors of B
 *   NT_R      rows of A per gemm_nt block (against 4 keys: 4 * NT_R accumulators)
 * and may define nt_pairs_micro for B in pair order (SATTN_HAVE_NT_PAIRS, storage type
 * NT_BF16_PAIRS). Semantics: kernels.h. */
#ifndef SATTN_MICRO_H
#define SATTN_MICRO_H

#include "rows.h"

/* SV_N values of row B at element idx as floats: f32 (the tail masked by t when TAIL),
   f16 or bf16 (whole vectors only). DT is a constant in every kernel below, so each is
   built once per storage type. */
SV_INLINE sv load_b(const int DT, const int TAIL, const void *B, int64_t idx, st t)
{
    if (DT == SATTN_F32) return ld(TAIL, (const float *)B + idx, t);
    if (DT == SATTN_F16) return sv_load_f16((const uint16_t *)B + idx);
    return sv_load_bf16((const uint16_t *)B + idx);
}

/* ---- gemm: C[R][P vectors] (+)= A(R x k) · B(k x P vectors) ---- */

SV_INLINE void micro(const int R, const int P, const int DT, const int TAIL, float *C, int ldc, const float *A,
                     int ars, int acs, const void *B, int ldb, int k, int accumulate, st last)
{
    sv acc[6][MICRO_P];
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++)
            acc[r][p] = accumulate ? ld(TAIL && p == P - 1, C + (int64_t)r * ldc + SV_N * p, last) : sv_zero();
    for (int kk = 0; kk < k; kk++) {
        sv bv[MICRO_P];
        for (int p = 0; p < P; p++) bv[p] = load_b(DT, TAIL && p == P - 1, B, (int64_t)kk * ldb + SV_N * p, last);
        const float *a = A + (int64_t)kk * acs;
        for (int r = 0; r < R; r++) {
            sv av = sv_set1(a[(int64_t)r * ars]);
            for (int p = 0; p < P; p++) acc[r][p] = sv_fma(av, bv[p], acc[r][p]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++) stv(TAIL && p == P - 1, C + (int64_t)r * ldc + SV_N * p, acc[r][p], last);
}

/* one case per (rows, vectors), with and without a partial last vector */
#define MICRO_CASE(R, P)                                                                      \
    case (R) * MICRO_P + (P) - 1:                                                             \
        if (tail) micro(R, P, DT, 1, c, ldc, a, ars, acs, b, ldb, k, accumulate, last);       \
        else micro(R, P, DT, 0, c, ldc, a, ars, acs, b, ldb, k, accumulate, last);            \
        break;
#define MICRO_ROW(R) MICRO_CASE(R, 1) MICRO_CASE(R, 2) MICRO_CASES_P34(R)
#if MICRO_P == 4
#define MICRO_CASES_P34(R) MICRO_CASE(R, 3) MICRO_CASE(R, 4)
#elif MICRO_P == 2
#define MICRO_CASES_P34(R)
#else
#error "MICRO_P must be 2 or 4"
#endif

/* The panel loop: B f32, or 16-bit with n a multiple of SV_N. */
SV_INLINE void gemm_panels(const int DT, float *C, int ldc, const float *A, int ars, int acs, const void *B, int ldb,
                           int m, int n, int k, int accumulate)
{
    const size_t es = (size_t)sattn__dtype_size(DT);
    const int W = MICRO_P * SV_N;
    for (int j0 = 0; j0 < n; j0 += W) {
        int nn = n - j0 < W ? n - j0 : W;
        int P = (nn + SV_N - 1) / SV_N;
        int tail = nn % SV_N != 0;
        st last = sv_tail(nn - SV_N * (P - 1));
        for (int r0 = 0; r0 < m; r0 += 6) {
            int R = m - r0 < 6 ? m - r0 : 6;
            float *c = C + (int64_t)r0 * ldc + j0;
            const float *a = A + (int64_t)r0 * ars;
            const char *b = (const char *)B + (size_t)j0 * es;
            switch (R * MICRO_P + P - 1) {
                MICRO_ROW(1) MICRO_ROW(2) MICRO_ROW(3) MICRO_ROW(4) MICRO_ROW(5) MICRO_ROW(6)
            }
        }
    }
}

static void gemm(float *C, int ldc, const float *A, int ars, int acs, const float *B, int ldb, int m, int n, int k,
                 int accumulate, int exact)
{
    if (exact) { /* 0 * NaN must stay 0: the scalar-skip form */
        sattn__gemm_generic(C, ldc, A, ars, acs, B, ldb, m, n, k, accumulate, exact);
        return;
    }
    gemm_panels(SATTN_F32, C, ldc, A, ars, acs, B, ldb, m, n, k, accumulate);
}

/* ---- gemm_nt: dot products, R rows of A x NB keys of B per block ---- */

/* acc[r][u0], acc[r][u0 + 1] += A row r . B rows u0, u0 + 1, for NT_R rows of A */
SV_INLINE void nt_pair(const int DT, sv acc[NT_R][4], const int u0, const float *A, int lda, const void *B, int ldb,
                       int k)
{
    for (int c = 0; c < k; c += SV_N) {
        st t = sv_tail(k - c);
        sv b0 = load_b(DT, 1, B, (int64_t)u0 * ldb + c, t);
        sv b1 = load_b(DT, 1, B, (int64_t)(u0 + 1) * ldb + c, t);
        for (int r = 0; r < NT_R; r++) {
            sv av = sv_loadt(A + (int64_t)r * lda + c, t);
            acc[r][u0] = sv_fma(av, b0, acc[r][u0]);
            acc[r][u0 + 1] = sv_fma(av, b1, acc[r][u0 + 1]);
        }
    }
}

SV_INLINE void nt_micro(const int R, const int NB, const int DT, float *C, int ldc, const float *A, int lda,
                        const void *B, int ldb, int k)
{
#if defined(SATTN_HAVE_NT_PAIRS)
    if (DT == NT_BF16_PAIRS) {
        nt_pairs_micro(R, NB, C, ldc, A, lda, (const uint16_t *)B, ldb, k);
        return;
    }
#endif
    sv acc[NT_R][4];
    for (int r = 0; r < NT_R; r++)
        for (int u = 0; u < 4; u++) acc[r][u] = sv_zero();
    if (R == NT_R && NB == 4) { /* two keys at a time: B is read in a more sequential order */
        nt_pair(DT, acc, 0, A, lda, B, ldb, k);
        nt_pair(DT, acc, 2, A, lda, B, ldb, k);
    } else {
        for (int c = 0; c < k; c += SV_N) {
            st t = sv_tail(k - c);
            sv bv[4];
            for (int u = 0; u < NB; u++) bv[u] = load_b(DT, 1, B, (int64_t)u * ldb + c, t);
            for (int r = 0; r < R; r++) {
                sv av = sv_loadt(A + (int64_t)r * lda + c, t);
                for (int u = 0; u < NB; u++) acc[r][u] = sv_fma(av, bv[u], acc[r][u]);
            }
        }
    }
    sv_store_sums(R, NB, C, ldc, acc, 1.0f);
}

#define NT_CASE(R, NB) \
    case (R) * 4 + (NB) - 1: nt_micro(R, NB, DT, c, ldc, a, lda, b, ldb, k); break;
#define NT_ROW(R) NT_CASE(R, 1) NT_CASE(R, 2) NT_CASE(R, 3) NT_CASE(R, 4)
#if NT_R == 4
#define NT_ROWS NT_ROW(1) NT_ROW(2) NT_ROW(3) NT_ROW(4)
#elif NT_R == 2
#define NT_ROWS NT_ROW(1) NT_ROW(2)
#else
#error "NT_R must be 2 or 4"
#endif

/* B f32, or 16-bit with k a multiple of SV_N */
SV_INLINE void gemm_nt_blocks(const int DT, float *C, int ldc, const float *A, int lda, const void *B, int ldb, int m,
                              int n, int k)
{
    const size_t es = (size_t)sattn__dtype_size(DT);
    for (int j = 0; j < n; j += 4) {
        int nb = n - j < 4 ? n - j : 4;
        for (int i = 0; i < m; i += NT_R) {
            float *c = C + (int64_t)i * ldc + j;
            const float *a = A + (int64_t)i * lda;
            const char *b = (const char *)B + (size_t)j * (size_t)ldb * es;
            switch ((m - i < NT_R ? m - i : NT_R) * 4 + nb - 1) { NT_ROWS }
        }
    }
}

static void gemm_nt(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int m, int n, int k)
{
    gemm_nt_blocks(SATTN_F32, C, ldc, A, lda, B, ldb, m, n, k);
}

/* ---- the same two products with B stored as f16 or bf16 ---- */

static void gemm_nt_h(float *C, int ldc, const float *A, int lda, const uint16_t *B, int ldb, int m, int n, int k,
                      int dtype)
{
    if (k % SV_N) /* a partial vector: the buffered form */
        gemm_nt_h_buffered(C, ldc, A, lda, B, ldb, m, n, k, dtype);
    else if (dtype == SATTN_F16)
        gemm_nt_blocks(SATTN_F16, C, ldc, A, lda, B, ldb, m, n, k);
    else
        gemm_nt_blocks(SATTN_BF16, C, ldc, A, lda, B, ldb, m, n, k);
}

static void gemm_h(float *C, int ldc, const float *A, int ars, int acs, const uint16_t *B, int ldb, int m, int n,
                   int k, int accumulate, int dtype)
{
    if (n % SV_N)
        gemm_h_buffered(C, ldc, A, ars, acs, B, ldb, m, n, k, accumulate, dtype);
    else if (dtype == SATTN_F16)
        gemm_panels(SATTN_F16, C, ldc, A, ars, acs, B, ldb, m, n, k, accumulate);
    else
        gemm_panels(SATTN_BF16, C, ldc, A, ars, acs, B, ldb, m, n, k, accumulate);
}

/* ---- the transpose for K panels: SV_N x SV_N blocks in registers ---- */

/* dst[c * ld + r] = row r, element c of src (rows row_stride elements apart), as f32;
   the edges past whole blocks by the generic form */
SV_INLINE void transpose_blocks(const int DT, float *dst, int ld, const void *src, int64_t rs, int rows, int cols)
{
    const int64_t es = sattn__dtype_size(DT);
    int r0 = 0;
    for (; r0 + SV_N <= rows; r0 += SV_N) {
        int c0 = 0;
        for (; c0 + SV_N <= cols; c0 += SV_N) {
            sv x[SV_N];
            for (int i = 0; i < SV_N; i++) x[i] = load_b(DT, 0, src, (r0 + i) * rs + c0, sv_full());
            sv_transpose(x);
            for (int i = 0; i < SV_N; i++) sv_store(dst + (int64_t)(c0 + i) * ld + r0, x[i]);
        }
        if (c0 < cols)
            sattn__load_rows_t_generic(dst + (int64_t)c0 * ld + r0, ld, (const char *)src + (r0 * rs + c0) * es, rs,
                                       SV_N, cols - c0, DT);
    }
    if (r0 < rows)
        sattn__load_rows_t_generic(dst + r0, ld, (const char *)src + r0 * rs * es, rs, rows - r0, cols, DT);
}

static void load_rows_t(float *dst, int ld, const void *src, int64_t rs, int rows, int cols, int dtype)
{
    if (dtype == SATTN_F32) transpose_blocks(SATTN_F32, dst, ld, src, rs, rows, cols);
    else if (dtype == SATTN_F16) transpose_blocks(SATTN_F16, dst, ld, src, rs, rows, cols);
    else transpose_blocks(SATTN_BF16, dst, ld, src, rs, rows, cols);
}

#endif
