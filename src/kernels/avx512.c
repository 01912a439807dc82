/* AVX-512F kernels (this file alone is compiled with -mavx512f -mfma).
 *
 * gemm: a register-blocked micro-kernel of up to 6 rows x 64 columns of C: 24 zmm
 * accumulators; each step over k loads 4 vectors of a row of B and broadcasts 6
 * entries of A, for 24 FMAs. exp: Cephes' polynomial on the reduced argument,
 * scaled by 2^n with vscalefps (which also handles underflow to 0). */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels.h"
#include "sattn.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- vector exp ---- */

ALWAYS_INLINE __m512 exp512(__m512 x)
{
    /* exp(-104) < 2^-150 rounds to 0: clamping there maps -inf to exactly 0; above
       1000 the result is +inf either way (vscalefps overflows to inf), and +inf stays
       out of the inf - inf of the reduction */
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(1000.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static inline __mmask16 tail_mask(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u); }

/* 16 values of row B at element idx as f32: f32 (the last vector masked by t), or f16 /
   bf16 converted as they are read (whole vectors only). dtype is a compile-time constant
   in every kernel below, so each kernel is built once per storage type. */
ALWAYS_INLINE __m512 load_b(const void *B, int64_t idx, const int dtype, __mmask16 t)
{
    if (dtype == SATTN_F32) return _mm512_maskz_loadu_ps(t, (const float *)B + idx);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)B + idx));
    if (dtype == SATTN_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* ---- gemm ---- */

/* C[R][16P] (+)= A(R x k) · B(k x 16P), B stored as dtype; the last vector of each row
   is masked by last. */
ALWAYS_INLINE void micro(const int R, const int P, const int dtype, float *C, int ldc, const float *A,
                         int ars, int acs, const void *B, int ldb, int k, int accumulate, __mmask16 last)
{
    __m512 acc[6][4];
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++)
            acc[r][p] = accumulate ? _mm512_maskz_loadu_ps(p == P - 1 ? last : 0xffff,
                                                           C + (int64_t)r * ldc + 16 * p)
                                   : _mm512_setzero_ps();
    for (int kk = 0; kk < k; kk++) {
        __m512 bv[4];
        for (int p = 0; p < P; p++)
            bv[p] = load_b(B, (int64_t)kk * ldb + 16 * p, dtype, p == P - 1 ? last : 0xffff);
        const float *a = A + (int64_t)kk * acs;
        for (int r = 0; r < R; r++) {
            __m512 av = _mm512_set1_ps(a[(int64_t)r * ars]);
            for (int p = 0; p < P; p++) acc[r][p] = _mm512_fmadd_ps(av, bv[p], acc[r][p]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++)
            _mm512_mask_storeu_ps(C + (int64_t)r * ldc + 16 * p, p == P - 1 ? last : 0xffff, acc[r][p]);
}

#define MICRO(R, P) \
    case (R) * 4 + (P) - 1: micro(R, P, DT, c, ldc, a, ars, acs, b, ldb, k, accumulate, last); break;

/* The panel loop of gemm and gemm_h: B is f32, or 16-bit with n a multiple of 16. */
ALWAYS_INLINE void gemm_panels(const int DT, float *C, int ldc, const float *A, int ars, int acs,
                               const void *B, int ldb, int m, int n, int k, int accumulate)
{
    const size_t es = (size_t)sattn__dtype_size(DT);
    for (int j0 = 0; j0 < n; j0 += 64) {
        int nn = n - j0 < 64 ? n - j0 : 64;
        int P = (nn + 15) / 16;
        __mmask16 last = tail_mask(nn - 16 * (P - 1));
        for (int r0 = 0; r0 < m; r0 += 6) {
            int R = m - r0 < 6 ? m - r0 : 6;
            float *c = C + (int64_t)r0 * ldc + j0;
            const float *a = A + (int64_t)r0 * ars;
            const char *b = (const char *)B + (size_t)j0 * es;
            switch (R * 4 + P - 1) {
                MICRO(1, 1) MICRO(1, 2) MICRO(1, 3) MICRO(1, 4)
                MICRO(2, 1) MICRO(2, 2) MICRO(2, 3) MICRO(2, 4)
                MICRO(3, 1) MICRO(3, 2) MICRO(3, 3) MICRO(3, 4)
                MICRO(4, 1) MICRO(4, 2) MICRO(4, 3) MICRO(4, 4)
                MICRO(5, 1) MICRO(5, 2) MICRO(5, 3) MICRO(5, 4)
                MICRO(6, 1) MICRO(6, 2) MICRO(6, 3) MICRO(6, 4)
            }
        }
    }
}

static void gemm(float *C, int ldc, const float *A, int ars, int acs, const float *B, int ldb,
                 int m, int n, int k, int accumulate, int exact)
{
    if (exact) { /* 0 * NaN must stay 0: the scalar-skip form */
        sattn__gemm_generic(C, ldc, A, ars, acs, B, ldb, m, n, k, accumulate, exact);
        return;
    }
    gemm_panels(SATTN_F32, C, ldc, A, ars, acs, B, ldb, m, n, k, accumulate);
}

/* ---- gemm_nt: dot products, R rows of A x NB keys of B per pass ---- */

static inline __m256 hi256(__m512 a) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)); }

/* The sums of a0..a3 in one vector: halve to 256 bits, then a hadd tree. */
ALWAYS_INLINE __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
    __m256 r0 = _mm256_add_ps(_mm512_castps512_ps256(a0), hi256(a0));
    __m256 r1 = _mm256_add_ps(_mm512_castps512_ps256(a1), hi256(a1));
    __m256 r2 = _mm256_add_ps(_mm512_castps512_ps256(a2), hi256(a2));
    __m256 r3 = _mm256_add_ps(_mm512_castps512_ps256(a3), hi256(a3));
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(r0, r1), _mm256_hadd_ps(r2, r3));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* The sums of the 16 vectors a[r][u] in one vector, lane 4r + u: a transpose-and-add
   tree (pairs within 128-bit lanes, then across them), 45 operations where four reduce4
   take about 80. */
ALWAYS_INLINE __m512 reduce16(__m512 a[4][4])
{
    __m512 t[8], v[4];
    for (int r = 0; r < 4; r++) /* lanes (x0, x1, x0, x1) of each 128-bit block, pairs u = 0,1 and 2,3 */
        for (int h = 0; h < 2; h++)
            t[2 * r + h] = _mm512_add_ps(_mm512_unpacklo_ps(a[r][2 * h], a[r][2 * h + 1]),
                                         _mm512_unpackhi_ps(a[r][2 * h], a[r][2 * h + 1]));
    for (int r = 0; r < 4; r++) /* (u0, u1, u2, u3) in each 128-bit block, row r */
        v[r] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * r], t[2 * r + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(t[2 * r], t[2 * r + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 w0 = _mm512_add_ps(_mm512_shuffle_f32x4(v[0], v[1], 0x44), _mm512_shuffle_f32x4(v[0], v[1], 0xee));
    __m512 w1 = _mm512_add_ps(_mm512_shuffle_f32x4(v[2], v[3], 0x44), _mm512_shuffle_f32x4(v[2], v[3], 0xee));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w0, w1, 0x88), _mm512_shuffle_f32x4(w0, w1, 0xdd));
}

/* C[r][u] = scale times the sum of the lanes of acc[r][u], for R rows of C and NB
   columns (scale = 1 leaves the sums as they are). */
ALWAYS_INLINE void store_sums(const int R, const int NB, float *C, int ldc, __m512 acc[4][4], __m512 scale)
{
    if (R == 4 && NB == 4) { /* the full block: all 16 sums in one vector */
        __m512 s = _mm512_mul_ps(reduce16(acc), scale);
        _mm_storeu_ps(C, _mm512_castps512_ps128(s));
        _mm_storeu_ps(C + ldc, _mm512_extractf32x4_ps(s, 1));
        _mm_storeu_ps(C + 2 * (int64_t)ldc, _mm512_extractf32x4_ps(s, 2));
        _mm_storeu_ps(C + 3 * (int64_t)ldc, _mm512_extractf32x4_ps(s, 3));
        return;
    }
    for (int r = 0; r < R; r++) {
        float sums[4];
        _mm_storeu_ps(sums, _mm_mul_ps(reduce4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]),
                                       _mm512_castps512_ps128(scale)));
        for (int u = 0; u < NB; u++) C[(int64_t)r * ldc + u] = sums[u];
    }
}

/* acc[r][u0], acc[r][u0 + 1] += A row r . B rows u0, u0 + 1, for the 4 rows of A. */
ALWAYS_INLINE void nt_pair(const int dtype, __m512 acc[4][4], const int u0, const float *A, int lda,
                           const void *B, int ldb, int k)
{
    for (int c = 0; c < k; c += 16) {
        __mmask16 t = tail_mask(k - c);
        __m512 b0 = load_b(B, (int64_t)u0 * ldb + c, dtype, t);
        __m512 b1 = load_b(B, (int64_t)(u0 + 1) * ldb + c, dtype, t);
        for (int r = 0; r < 4; r++) {
            __m512 av = _mm512_maskz_loadu_ps(t, A + (int64_t)r * lda + c);
            acc[r][u0] = _mm512_fmadd_ps(av, b0, acc[r][u0]);
            acc[r][u0 + 1] = _mm512_fmadd_ps(av, b1, acc[r][u0 + 1]);
        }
    }
}

/* The dot-product kernels' storage type for bf16 B read in pair order (kernels.h), A's
   rows in that order too: gemm_nt_blocks' B for gemm_nt_bf16p. */
#define NT_BF16_PAIRS 0x100

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
    store_sums(R, NB, C, ldc, acc, _mm512_set1_ps(1.0f));
}

ALWAYS_INLINE void nt_micro(const int R, const int NB, const int dtype, float *C, int ldc, const float *A,
                            int lda, const void *B, int ldb, int k)
{
    if (dtype == NT_BF16_PAIRS) {
        nt_pairs_micro(R, NB, C, ldc, A, lda, (const uint16_t *)B, ldb, k);
        return;
    }
    __m512 acc[4][4];
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 4; u++) acc[r][u] = _mm512_setzero_ps();
    if (R == 4 && NB == 4) { /* two key rows at a time: B read in a more sequential order,
                                measured 5% faster on a cold decode than four at once */
        nt_pair(dtype, acc, 0, A, lda, B, ldb, k);
        nt_pair(dtype, acc, 2, A, lda, B, ldb, k);
    } else {
        for (int c = 0; c < k; c += 16) {
            __mmask16 t = tail_mask(k - c);
            __m512 bv[4];
            for (int u = 0; u < NB; u++) bv[u] = load_b(B, (int64_t)u * ldb + c, dtype, t);
            for (int r = 0; r < R; r++) {
                __m512 av = _mm512_maskz_loadu_ps(t, A + (int64_t)r * lda + c);
                for (int u = 0; u < NB; u++) acc[r][u] = _mm512_fmadd_ps(av, bv[u], acc[r][u]);
            }
        }
    }
    store_sums(R, NB, C, ldc, acc, _mm512_set1_ps(1.0f));
}

#define NT(R, NB) \
    case (R) * 4 + (NB) - 1: nt_micro(R, NB, DT, c, ldc, a, lda, b, ldb, k); break;

/* B is f32, or 16-bit with k a multiple of 16. */
ALWAYS_INLINE void gemm_nt_blocks(const int DT, float *C, int ldc, const float *A, int lda, const void *B,
                                  int ldb, int m, int n, int k)
{
    const size_t es = (size_t)sattn__dtype_size(DT);
    for (int j = 0; j < n; j += 4) {
        int nb = n - j < 4 ? n - j : 4;
        for (int i = 0; i < m; i += 4) {
            float *c = C + (int64_t)i * ldc + j;
            const float *a = A + (int64_t)i * lda;
            const char *b = (const char *)B + (size_t)j * (size_t)ldb * es;
            switch ((m - i < 4 ? m - i : 4) * 4 + nb - 1) {
                NT(1, 1) NT(1, 2) NT(1, 3) NT(1, 4) NT(2, 1) NT(2, 2) NT(2, 3) NT(2, 4)
                NT(3, 1) NT(3, 2) NT(3, 3) NT(3, 4) NT(4, 1) NT(4, 2) NT(4, 3) NT(4, 4)
            }
        }
    }
}

static void gemm_nt(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int m, int n,
                    int k)
{
    gemm_nt_blocks(SATTN_F32, C, ldc, A, lda, B, ldb, m, n, k);
}

/* ---- the same two products with B stored as f16 or bf16 ---- */

static void gemm_nt_h(float *C, int ldc, const float *A, int lda, const uint16_t *B, int ldb, int m,
                      int n, int k, int dtype)
{
    if (k % 16) /* a partial vector: the buffered form */
        sattn__gemm_nt_h_generic(C, ldc, A, lda, B, ldb, m, n, k, dtype);
    else if (dtype == SATTN_F16)
        gemm_nt_blocks(SATTN_F16, C, ldc, A, lda, B, ldb, m, n, k);
    else
        gemm_nt_blocks(SATTN_BF16, C, ldc, A, lda, B, ldb, m, n, k);
}

static void gemm_h(float *C, int ldc, const float *A, int ars, int acs, const uint16_t *B, int ldb, int m,
                   int n, int k, int accumulate, int dtype)
{
    if (n % 16)
        sattn__gemm_h_generic(C, ldc, A, ars, acs, B, ldb, m, n, k, accumulate, dtype);
    else if (dtype == SATTN_F16)
        gemm_panels(SATTN_F16, C, ldc, A, ars, acs, B, ldb, m, n, k, accumulate);
    else
        gemm_panels(SATTN_BF16, C, ldc, A, ars, acs, B, ldb, m, n, k, accumulate);
}

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
   in this kernel that measured 2-6% slower on a cold bf16 decode step, 5 runs side by
   side. */
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
                for (int p = 0; p < 4; p++) bv[p] = load_b(b, 16 * p, DT, 0xffff);
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
                                           int lda, const uint16_t *B, int ldb, int k, __m512 vscale)
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
    store_sums(R, NB, C, ldc, acc, vscale);
}

#define NTDP(R, NB) \
    case (R) * 4 + (NB) - 1: nt_dp_micro(R, NB, c, ldc, a, lda, b, ldb, k, vscale); break;

BF16_TARGET static void gemm_nt_bf16dp(float *C, int ldc, const uint16_t *A, int lda, const uint16_t *B, int ldb,
                                       int m, int n, int k, float scale)
{
    const __m512 vscale = _mm512_set1_ps(scale);
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

/* ---- the transpose for K panels: 16 x 16 blocks in registers ---- */

ALWAYS_INLINE void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) { /* interleave row pairs */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* 4 x 4 blocks within each 128-bit lane */
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int h = 0; h < 16; h += 8) /* then the 128-bit lanes across rows */
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

ALWAYS_INLINE void transpose_blocks(const int dtype, float *dst, int ld, const void *src, int64_t rs,
                                    int rows, int cols)
{
    const int64_t es = sattn__dtype_size(dtype);
    int r0 = 0;
    for (; r0 + 16 <= rows; r0 += 16) {
        int c0 = 0;
        for (; c0 + 16 <= cols; c0 += 16) {
            __m512 x[16];
            for (int i = 0; i < 16; i++) x[i] = load_b(src, (r0 + i) * rs + c0, dtype, 0xffff);
            transpose16(x);
            for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + (int64_t)(c0 + i) * ld + r0, x[i]);
        }
        if (c0 < cols)
            sattn__load_rows_t_generic(dst + (int64_t)c0 * ld + r0, ld, (const char *)src + (r0 * rs + c0) * es, rs,
                                       16, cols - c0, dtype);
    }
    if (r0 < rows)
        sattn__load_rows_t_generic(dst + r0, ld, (const char *)src + r0 * rs * es, rs, rows - r0, cols, dtype);
}

static void load_rows_t(float *dst, int ld, const void *src, int64_t rs, int rows, int cols, int dtype)
{
    if (dtype == SATTN_F32) transpose_blocks(SATTN_F32, dst, ld, src, rs, rows, cols);
    else if (dtype == SATTN_F16) transpose_blocks(SATTN_F16, dst, ld, src, rs, rows, cols);
    else transpose_blocks(SATTN_BF16, dst, ld, src, rs, rows, cols);
}

/* ---- storage conversions: 16 at a time, the tail by the generic code ---- */

static void load_row(float *dst, const void *src, int n, int dtype, float scale)
{
    const __m512 vs = _mm512_set1_ps(scale);
    int c = 0;
    if (dtype == SATTN_F32) {
        const float *s = src;
        for (; c + 16 <= n; c += 16) _mm512_storeu_ps(dst + c, _mm512_mul_ps(vs, _mm512_loadu_ps(s + c)));
    } else if (dtype == SATTN_F16 && scale == 1.0f) {
        const uint16_t *s = src;
        for (; c + 16 <= n; c += 16) _mm512_storeu_ps(dst + c, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + c))));
    } else if (dtype == SATTN_F16) {
        const uint16_t *s = src;
        for (; c + 16 <= n; c += 16)
            _mm512_storeu_ps(dst + c, _mm512_mul_ps(vs, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + c)))));
    } else {
        const uint16_t *s = src;
        for (; c + 16 <= n; c += 16) {
            __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(s + c)));
            __m512 x = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
            _mm512_storeu_ps(dst + c, scale == 1.0f ? x : _mm512_mul_ps(vs, x));
        }
    }
    if (c < n)
        sattn__load_row_generic(dst + c, (const char *)src + (size_t)c * (size_t)sattn__dtype_size(dtype), n - c,
                                dtype, scale);
}

static void store_row(void *dst, const float *src, int n, int dtype, float scale)
{
    const __m512 vs = _mm512_set1_ps(scale);
    int c = 0;
    if (dtype == SATTN_F32) {
        float *d = dst;
        for (; c + 16 <= n; c += 16) _mm512_storeu_ps(d + c, _mm512_mul_ps(vs, _mm512_loadu_ps(src + c)));
    } else if (dtype == SATTN_F16) {
        uint16_t *d = dst;
        for (; c + 16 <= n; c += 16) {
            __m256i h = _mm512_cvtps_ph(_mm512_mul_ps(vs, _mm512_loadu_ps(src + c)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm256_storeu_si256((__m256i *)(d + c), h);
        }
    } else {
        uint16_t *d = dst;
        for (; c + 16 <= n; c += 16) {
            __m512 x = _mm512_mul_ps(vs, _mm512_loadu_ps(src + c));
            __m512i u = _mm512_castps_si512(x);
            /* round to nearest even on the upper half; NaN keeps its top bits, made quiet */
            __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
            __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
            __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
            r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
            _mm256_storeu_si256((__m256i *)(d + c), _mm512_cvtepi32_epi16(r));
        }
    }
    if (c < n)
        sattn__store_row_generic((char *)dst + (size_t)c * (size_t)sattn__dtype_size(dtype), src + c, n - c, dtype,
                                 scale);
}

/* ---- softmax ---- */

static void softmax_online(float *S, int lds, int m, int n, float *mx, float *sum,
                           float *O, int ldo, int dv)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int r = 0; r < m; r++) {
        float *s = S + (int64_t)r * lds;
        __m512 vmax = ninf;
        for (int c = 0; c < n; c += 16)
            vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(ninf, tail_mask(n - c), s + c));
        float bmax = _mm512_reduce_max_ps(vmax);
        float mnew = bmax > mx[r] ? bmax : mx[r];
        if (mnew == -INFINITY) { /* nothing visible yet */
            for (int c = 0; c < n; c += 16) _mm512_mask_storeu_ps(s + c, tail_mask(n - c), _mm512_setzero_ps());
            continue;
        }
        float alpha = expf(mx[r] - mnew); /* mx = -inf gives 0 */
        __m512 vm = _mm512_set1_ps(mnew), vsum = _mm512_setzero_ps();
        for (int c = 0; c < n; c += 16) {
            __mmask16 t = tail_mask(n - c);
            __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, s + c), vm));
            e = _mm512_maskz_mov_ps(t, e);
            _mm512_mask_storeu_ps(s + c, t, e);
            vsum = _mm512_add_ps(vsum, e);
        }
        if (alpha != 1.0f) {
            __m512 va = _mm512_set1_ps(alpha);
            float *o = O + (int64_t)r * ldo;
            for (int c = 0; c < dv; c += 16) {
                __mmask16 t = tail_mask(dv - c);
                _mm512_mask_storeu_ps(o + c, t, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(t, o + c)));
            }
        }
        sum[r] = sum[r] * alpha + _mm512_reduce_add_ps(vsum);
        mx[r] = mnew;
    }
}

static void softmax_recompute(float *S, int lds, int m, int n, const float *lse)
{
    for (int r = 0; r < m; r++) {
        float *s = S + (int64_t)r * lds;
        if (lse[r] == -INFINITY) {
            for (int c = 0; c < n; c += 16) _mm512_mask_storeu_ps(s + c, tail_mask(n - c), _mm512_setzero_ps());
            continue;
        }
        __m512 vl = _mm512_set1_ps(lse[r]);
        for (int c = 0; c < n; c += 16) {
            __mmask16 t = tail_mask(n - c);
            _mm512_mask_storeu_ps(s + c, t, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, s + c), vl)));
        }
    }
}

static void softmax_grad(float *dP, int lddp, const float *P, int ldp, int m, int n,
                         const float *D)
{
    for (int r = 0; r < m; r++) {
        float *g = dP + (int64_t)r * lddp;
        const float *pr = P + (int64_t)r * ldp;
        __m512 vd = _mm512_set1_ps(D[r]);
        for (int c = 0; c < n; c += 16) {
            __mmask16 t = tail_mask(n - c);
            __m512 pv = _mm512_maskz_loadu_ps(t, pr + c);
            __m512 ds = _mm512_mul_ps(pv, _mm512_sub_ps(_mm512_maskz_loadu_ps(t, g + c), vd));
            __mmask16 nz = _mm512_mask_cmp_ps_mask(t, pv, _mm512_setzero_ps(), _CMP_NEQ_UQ);
            _mm512_mask_storeu_ps(g + c, t, _mm512_maskz_mov_ps(nz, ds));
        }
    }
}

/* The AVX-512F table; the avx512bf16 one adds the vdpbf16ps product (dispatch.c picks
   it where the CPU has AVX512-BF16). */
#define AVX512_ENTRIES \
    .gemm = gemm, \
    .gemm_nt = gemm_nt, \
    .gemm_nt_h = gemm_nt_h, \
    .gemm_h = gemm_h, \
    .gemm_nt_bf16p = gemm_nt_bf16p, \
    .gemm_bf16p = gemm_bf16p, \
    .gemm_h_span = gemm_h_span, \
    .load_rows_t = load_rows_t, \
    .load_row = load_row, \
    .store_row = store_row, \
    .softmax_online = softmax_online, \
    .softmax_recompute = softmax_recompute, \
    .softmax_grad = softmax_grad

const sattn__kernels sattn__kernels_avx512 = {.name = "avx512", AVX512_ENTRIES};

const sattn__kernels sattn__kernels_avx512bf16 = {
    .name = "avx512bf16",
    AVX512_ENTRIES,
    .gemm_nt_bf16dp = gemm_nt_bf16dp,
};

