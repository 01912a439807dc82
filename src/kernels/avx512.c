/* AVX-512 kernels (F and DQ; this file alone is compiled with -mavx512f -mavx512dq
 * -mfma): the row code and products of rows.h and micro.h over 16-float vectors (gemm
 * panels of 6 rows x 64 columns: 24 accumulators, 4 vectors of B and 6 broadcasts per
 * step; gemm_nt blocks of 4 rows x 4 keys), plus what only this ISA has: the decode
 * path's bf16 pair-order and span products, and (avx512bf16 table) the vdpbf16ps
 * products (the decode path's gemm_nt_bf16dp, the bf16 products' gemm_dp). */
#define SATTN_SIMD_AVX512
#define MICRO_P 4
#define NT_R 4
#include <immintrin.h>
#include <stdint.h>

#include "kernels.h"
#include "simd.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* The dot-product kernels' storage type for bf16 B read in pair order (kernels.h), A's
   rows in that order too: gemm_nt_blocks' B for gemm_nt_bf16p (micro.h's nt_micro
   hands it to nt_pairs_micro). */
#define NT_BF16_PAIRS 0x100
#define SATTN_HAVE_NT_PAIRS

/* 32 bf16 at p as f32: the even elements and the odd ones, one operation each */
ALWAYS_INLINE void load_pairs(const uint16_t *p, __m512 *even, __m512 *odd)
{
    __m512i x = _mm512_loadu_si512((const void *)p);
    *even = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
    *odd = _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32((int)0xffff0000u)));
}

/* R rows of A (pair order) x NB keys: each block of 32 columns loads the rows of A once
   (2R vectors) and every key's 32 values with one load, for 2 R NB FMAs. */
ALWAYS_INLINE void nt_pairs_micro(const int R, const int NB, float *C, int ldc, const float *A, int lda,
                                  const uint16_t *B, int ldb, int k)
{
    __m512 acc[4][4];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 4; u++) acc[r][u] = _mm512_setzero_ps();
    for (int c = 0; c < k; c += 32) {
        __m512 ae[4], ao[4];
        for (int r = 0; r < R; r++) {
            ae[r] = _mm512_loadu_ps(A + (int64_t)r * lda + c);
            ao[r] = _mm512_loadu_ps(A + (int64_t)r * lda + c + 16);
        }
        for (int u = 0; u < NB; u++) {
            __m512 e, o;
            load_pairs(B + (int64_t)u * ldb + c, &e, &o);
            for (int r = 0; r < R; r++) {
                acc[r][u] = _mm512_fmadd_ps(ae[r], e, acc[r][u]);
                acc[r][u] = _mm512_fmadd_ps(ao[r], o, acc[r][u]);
            }
        }
    }
    sv_store_sums(R, NB, C, ldc, acc, 1.0f);
}

#include "micro.h"

/* ---- bf16 in pair order (kernels.h): the decode path's products ---- */

/* bf16 B, A's rows in pair order: gemm_nt's block loop around nt_pairs_micro. */
static void gemm_nt_bf16p(float *C, int ldc, const float *A, int lda, const uint16_t *B, int ldb, int m, int n,
                          int k)
{
    gemm_nt_blocks(NT_BF16_PAIRS, C, ldc, A, lda, B, ldb, m, n, k);
}

/* C[R][16P] (pair order) += A · B: P = 2 or 4 vectors, every 32 columns of a row of B
   one load */
ALWAYS_INLINE void pairs_micro(const int R, const int P, float *C, int ldc, const float *A, int ars, int acs,
                               const uint16_t *B, int ldb, int k)
{
    __m512 acc[6][4];
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++) acc[r][p] = _mm512_loadu_ps(C + (int64_t)r * ldc + 16 * p);
    for (int kk = 0; kk < k; kk++) {
        __m512 bv[4];
        for (int p = 0; p < P; p += 2) load_pairs(B + (int64_t)kk * ldb + 16 * p, &bv[p], &bv[p + 1]);
        const float *a = A + (int64_t)kk * acs;
        for (int r = 0; r < R; r++) {
            __m512 av = _mm512_set1_ps(a[(int64_t)r * ars]);
            for (int p = 0; p < P; p++) acc[r][p] = _mm512_fmadd_ps(av, bv[p], acc[r][p]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++) _mm512_storeu_ps(C + (int64_t)r * ldc + 16 * p, acc[r][p]);
}

#define PM(R, P) \
    case (R) * 4 + (P) - 1: pairs_micro(R, P, c, ldc, a, ars, acs, b, ldb, k); break;

static void gemm_bf16p(float *C, int ldc, const float *A, int ars, int acs, const uint16_t *B, int ldb, int m,
                       int n, int k)
{
    for (int j0 = 0; j0 < n; j0 += 64) {
        const int P = n - j0 < 64 ? 2 : 4;
        for (int r0 = 0; r0 < m; r0 += 6) {
            int R = m - r0 < 6 ? m - r0 : 6;
            float *c = C + (int64_t)r0 * ldc + j0;
            const float *a = A + (int64_t)r0 * ars;
            const uint16_t *b = B + j0;
            switch (R * 4 + P - 1) {
                PM(1, 2) PM(1, 4) PM(2, 2) PM(2, 4) PM(3, 2) PM(3, 4)
                PM(4, 2) PM(4, 4) PM(5, 2) PM(5, 4) PM(6, 2) PM(6, 4)
            }
        }
    }
}

/* ---- P·V over a span of 16-bit values (kernels.h: gemm_h_span) ---- */

/* Reads one byte of every cache line of rows rows of bytes bytes each, stride apart:
   demand loads, all issued before the products that follow use the rows. Not
   sattn__touch over the group's block (the same lines where the rows are contiguous):
   that was slower in this kernel (BENCHMARKS.md, "Constants and their measurements"). */
ALWAYS_INLINE void touch_rows(const char *p, int64_t stride, int rows, int bytes)
{
    const volatile unsigned char *m = (const volatile unsigned char *)p;
    unsigned acc = 0;
    for (int r = 0; r < rows; r++, m += stride) {
        for (int b = 0; b < bytes; b += 64) acc |= m[b];
        acc |= m[bytes - 1]; /* the last line of a row that does not start on one */
    }
    __asm__ volatile("" : : "r"(acc));
}

/* C[R][64] += A(R x k) · B(k x 64), the sums in registers for all k; B's rows are
   touched (rowbytes each) 8 at a time first where touch is set. DT: SATTN_F16,
   SATTN_BF16 or NT_BF16_PAIRS (C in pair order). */
ALWAYS_INLINE void span_micro(const int R, const int DT, const int touch, float *C, int ldc, const float *A,
                              int lda, const uint16_t *B, int ldb, int k, int rowbytes)
{
    __m512 acc[4][4];
    for (int r = 0; r < R; r++)
        for (int p = 0; p < 4; p++) acc[r][p] = _mm512_loadu_ps(C + (int64_t)r * ldc + 16 * p);
    for (int k0 = 0; k0 < k; k0 += 8) {
        const int k1 = k - k0 < 8 ? k : k0 + 8;
        if (touch) touch_rows((const char *)(B + (int64_t)k0 * ldb), 2 * (int64_t)ldb, k1 - k0, rowbytes);
        for (int kk = k0; kk < k1; kk++) {
            const uint16_t *b = B + (int64_t)kk * ldb;
            __m512 bv[4];
            if (DT == NT_BF16_PAIRS) load_pairs(b, &bv[0], &bv[1]), load_pairs(b + 32, &bv[2], &bv[3]);
            else
                for (int p = 0; p < 4; p++) bv[p] = load_b(DT, 0, b, 16 * p, sv_full());
            for (int r = 0; r < R; r++) {
                __m512 av = _mm512_set1_ps(A[(int64_t)r * lda + kk]);
                for (int p = 0; p < 4; p++) acc[r][p] = _mm512_fmadd_ps(av, bv[p], acc[r][p]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int p = 0; p < 4; p++) _mm512_storeu_ps(C + (int64_t)r * ldc + 16 * p, acc[r][p]);
}

#define SPAN(R) \
    case 2 * (R): span_micro(R, DT, 0, c, ldc, a, lda, b, ldb, k, rowbytes); break; \
    case 2 * (R) + 1: span_micro(R, DT, 1, c, ldc, a, lda, b, ldb, k, rowbytes); break;

/* Rows 4 at a time, panels of 64 columns; only the very first pass touches B. */
ALWAYS_INLINE void span_panels(const int DT, float *C, int ldc, const float *A, int lda, const uint16_t *B,
                               int ldb, int m, int n, int k)
{
    const int rowbytes = 2 * n;
    for (int r0 = 0; r0 < m; r0 += 4)
        for (int j0 = 0; j0 < n; j0 += 64) {
            float *c = C + (int64_t)r0 * ldc + j0;
            const float *a = A + (int64_t)r0 * lda;
            const uint16_t *b = B + j0;
            switch (2 * (m - r0 < 4 ? m - r0 : 4) + (r0 == 0 && j0 == 0)) {
                SPAN(1) SPAN(2) SPAN(3) SPAN(4)
            }
        }
}

static void gemm_h_span(float *C, int ldc, const float *A, int lda, const uint16_t *B, int ldb, int m, int n,
                        int k, int dtype, int pairs)
{
    if (pairs) span_panels(NT_BF16_PAIRS, C, ldc, A, lda, B, ldb, m, n, k);
    else if (dtype == SATTN_F16) span_panels(SATTN_F16, C, ldc, A, lda, B, ldb, m, n, k);
    else span_panels(SATTN_BF16, C, ldc, A, lda, B, ldb, m, n, k);
}

/* ---- bf16 dot products with vdpbf16ps (AVX512-BF16: this function alone) ---- */

#define BF16_TARGET __attribute__((target("avx512f,avx512bf16")))

/* R rows of A x NB rows of B, both bf16: per block of 32 columns, one load of each row
   of A and of each key, and R NB vdpbf16ps (each 32 products). */
BF16_TARGET ALWAYS_INLINE void nt_dp_micro(const int R, const int NB, float *C, int ldc, const uint16_t *A,
                                           int lda, const uint16_t *B, int ldb, int k, float scale)
{
    __m512 acc[4][4];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 4; u++) acc[r][u] = _mm512_setzero_ps();
    for (int c = 0; c < k; c += 32) {
        __m512bh a[4];
        for (int r = 0; r < R; r++) a[r] = (__m512bh)_mm512_loadu_si512((const void *)(A + (int64_t)r * lda + c));
        for (int u = 0; u < NB; u++) {
            __m512bh b = (__m512bh)_mm512_loadu_si512((const void *)(B + (int64_t)u * ldb + c));
            for (int r = 0; r < R; r++) acc[r][u] = _mm512_dpbf16_ps(acc[r][u], a[r], b);
        }
    }
    sv_store_sums(R, NB, C, ldc, acc, scale);
}

#define NTDP(R, NB) \
    case (R) * 4 + (NB) - 1: nt_dp_micro(R, NB, c, ldc, a, lda, b, ldb, k, scale); break;

BF16_TARGET static void gemm_nt_bf16dp(float *C, int ldc, const uint16_t *A, int lda, const uint16_t *B, int ldb,
                                       int m, int n, int k, float scale)
{
    for (int j = 0; j < n; j += 4) {
        int nb = n - j < 4 ? n - j : 4;
        for (int i = 0; i < m; i += 4) {
            float *c = C + (int64_t)i * ldc + j;
            const uint16_t *a = A + (int64_t)i * lda;
            const uint16_t *b = B + (int64_t)j * ldb;
            switch ((m - i < 4 ? m - i : 4) * 4 + nb - 1) {
                NTDP(1, 1) NTDP(1, 2) NTDP(1, 3) NTDP(1, 4) NTDP(2, 1) NTDP(2, 2) NTDP(2, 3) NTDP(2, 4)
                NTDP(3, 1) NTDP(3, 2) NTDP(3, 3) NTDP(3, 4) NTDP(4, 1) NTDP(4, 2) NTDP(4, 3) NTDP(4, 4)
            }
        }
    }
}

/* C[R][P vectors] of gemm_dp (kernels.h): per pair of A's columns, P loads of B's pairs
   (16 pairs each), R broadcasts of A's pair (one 32-bit word each) and R P vdpbf16ps,
   each 32 products: 6 x 4 accumulators, 4 of B and a broadcast in 29 registers. */
BF16_TARGET ALWAYS_INLINE void dp_micro(const int R, const int P, const int TAIL, float *C, int ldc,
                                        const uint16_t *A, int lda, const uint16_t *B, int ldb, int k2,
                                        int accumulate, float scale, __mmask16 last)
{
    __m512 acc[6][4];
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++) {
            const __mmask16 t = TAIL && p == P - 1 ? last : (__mmask16)0xffff;
            acc[r][p] = accumulate ? _mm512_maskz_loadu_ps(t, C + (int64_t)r * ldc + 16 * p) : _mm512_setzero_ps();
        }
    for (int kk = 0; kk < k2; kk++) {
        __m512bh bv[4];
        for (int p = 0; p < P; p++) {
            const uint16_t *b = B + 2 * ((int64_t)kk * ldb + 16 * p);
            bv[p] = (__m512bh)(TAIL && p == P - 1 ? _mm512_maskz_loadu_epi32(last, b)
                                                  : _mm512_loadu_si512((const void *)b));
        }
        for (int r = 0; r < R; r++) {
            uint32_t pair;
            __builtin_memcpy(&pair, A + (int64_t)r * lda + 2 * kk, 4);
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)pair);
            for (int p = 0; p < P; p++) acc[r][p] = _mm512_dpbf16_ps(acc[r][p], av, bv[p]);
        }
    }
    const __m512 sc = _mm512_set1_ps(scale);
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++) {
            const __mmask16 t = TAIL && p == P - 1 ? last : (__mmask16)0xffff;
            _mm512_mask_storeu_ps(C + (int64_t)r * ldc + 16 * p, t,
                                  accumulate ? acc[r][p] : _mm512_mul_ps(acc[r][p], sc));
        }
}

#define DP_CASE(R, P)                                                                           \
    case (R) * 4 + (P) - 1:                                                                     \
        if (tail) dp_micro(R, P, 1, c, ldc, a, lda, b, ldb, k2, accumulate, scale, last);      \
        else dp_micro(R, P, 0, c, ldc, a, lda, b, ldb, k2, accumulate, scale, last);           \
        break;
#define DP_ROW(R) DP_CASE(R, 1) DP_CASE(R, 2) DP_CASE(R, 3) DP_CASE(R, 4)

BF16_TARGET static void gemm_dp(float *C, int ldc, const uint16_t *A, int lda, const uint16_t *B, int ldb, int m,
                                int n, int k2, int accumulate, float scale, int exact)
{
    if (exact) { /* 0 * NaN must stay 0: the scalar-skip form */
        sattn__gemm_dp_generic(C, ldc, A, lda, B, ldb, m, n, k2, accumulate, scale, exact);
        return;
    }
    for (int j0 = 0; j0 < n; j0 += 64) {
        const int nn = n - j0 < 64 ? n - j0 : 64;
        const int P = (nn + 15) / 16, tail = nn % 16 != 0;
        const __mmask16 last = (__mmask16)((1u << (nn - 16 * (P - 1))) - 1u);
        for (int r0 = 0; r0 < m; r0 += 6) {
            const int R = m - r0 < 6 ? m - r0 : 6;
            float *c = C + (int64_t)r0 * ldc + j0;
            const uint16_t *a = A + (int64_t)r0 * lda;
            const uint16_t *b = B + 2 * (int64_t)j0;
            switch (R * 4 + P - 1) {
                DP_ROW(1) DP_ROW(2) DP_ROW(3) DP_ROW(4) DP_ROW(5) DP_ROW(6)
            }
        }
    }
}

/* The AVX-512 table; the avx512bf16 one adds the vdpbf16ps products (dispatch.c picks
   it where the CPU has AVX512-BF16). */
#define AVX512_ENTRIES \
    .span_values = 1, \
    .gemm = gemm, \
    .gemm_nt = gemm_nt, \
    .gemm_nt_h = gemm_nt_h, \
    .gemm_h = gemm_h, \
    .gemm_nt_bf16p = gemm_nt_bf16p, \
    .gemm_bf16p = gemm_bf16p, \
    .gemm_h_span = gemm_h_span, \
    .load_rows_t = load_rows_t, \
    .load_row = row_load, \
    .store_row = row_store, \
    .softmax_online = softmax_online, \
    .softmax_online_log2 = softmax_online_log2, \
    .softmax_recompute = softmax_recompute, \
    .softmax_grad = softmax_grad

const sattn__kernels sattn__kernels_avx512 = {
    .name = "avx512",
    .decode_bf16 = SATTN__BF16_PAIRS,
    .bf16_products = 0,
    AVX512_ENTRIES,
    .gemm_nt_bf16dp = sattn__gemm_nt_bf16dp_generic,
    .gemm_dp = sattn__gemm_dp_generic,
};

const sattn__kernels sattn__kernels_avx512bf16 = {
    .name = "avx512bf16",
    .decode_bf16 = SATTN__BF16_DOT,
    .bf16_products = 1,
    AVX512_ENTRIES,
    .gemm_nt_bf16dp = gemm_nt_bf16dp,
    .gemm_dp = gemm_dp,
};

