/* AVX2 + FMA + F16C kernels (this file alone is compiled with -mavx2 -mfma -mf16c).
 *
 * gemm: a micro-kernel of up to 6 rows x 16 columns of C (12 ymm accumulators, 2
 * vectors of B and one broadcast per step: 15 of the 16 registers). exp: the same
 * Cephes polynomial as the AVX-512 file, with 2^n built in the exponent field;
 * arguments below -87.3 (results below the smallest normal float) give 0, and
 * arguments whose exp overflows give +inf, as expf does. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels.h"
#include "sattn.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- vector exp ---- */

ALWAYS_INLINE __m256 exp256(__m256 x)
{
    __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ); /* also -inf */
    __m256 huge = _mm256_cmp_ps(x, _mm256_set1_ps(88.72283935546875f), _CMP_GT_OQ); /* exp overflows */
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    x = _mm256_min_ps(x, _mm256_set1_ps(88.7f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* n in [-126, 128]: 2^n as (n + 127) << 23, split in two factors so n = 128 fits */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i h1 = _mm256_srai_epi32(ni, 1), h2 = _mm256_sub_epi32(ni, h1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h2, _mm256_set1_epi32(127)), 23));
    p = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    p = _mm256_blendv_ps(p, _mm256_set1_ps(INFINITY), huge);
    return _mm256_andnot_ps(tiny, p);
}

static inline __m256i tail_mask(int n) /* lanes < n set */
{
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n < 8 ? n : 8), idx);
}

static inline float hmax(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- gemm ---- */

/* TAIL: the last vector of each row is partial (masked loads and stores, which are
   slow on some CPUs, so full panels use plain ones). */
ALWAYS_INLINE void micro(const int R, const int P, const int TAIL, float *C, int ldc, const float *A,
                         int ars, int acs, const float *B, int ldb, int k, int accumulate, __m256i last)
{
    __m256 acc[6][2];
#define LD(p, ptr) (TAIL && (p) == P - 1 ? _mm256_maskload_ps(ptr, last) : _mm256_loadu_ps(ptr))
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++)
            acc[r][p] = accumulate ? LD(p, C + (int64_t)r * ldc + 8 * p) : _mm256_setzero_ps();
    for (int kk = 0; kk < k; kk++) {
        const float *b = B + (int64_t)kk * ldb;
        __m256 bv[2];
        for (int p = 0; p < P; p++) bv[p] = LD(p, b + 8 * p);
        const float *a = A + (int64_t)kk * acs;
        for (int r = 0; r < R; r++) {
            __m256 av = _mm256_broadcast_ss(a + (int64_t)r * ars);
            for (int p = 0; p < P; p++) acc[r][p] = _mm256_fmadd_ps(av, bv[p], acc[r][p]);
        }
    }
#undef LD
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++) {
            float *c = C + (int64_t)r * ldc + 8 * p;
            if (TAIL && p == P - 1) _mm256_maskstore_ps(c, last, acc[r][p]);
            else _mm256_storeu_ps(c, acc[r][p]);
        }
}

#define MICRO(R, P)                                                                          \
    case (R) * 2 + (P) - 1:                                                                  \
        if (tail) micro(R, P, 1, c, ldc, a, ars, acs, b, ldb, k, accumulate, last);          \
        else micro(R, P, 0, c, ldc, a, ars, acs, b, ldb, k, accumulate, last);               \
        break;

static void gemm(float *C, int ldc, const float *A, int ars, int acs, const float *B, int ldb,
                 int m, int n, int k, int accumulate, int exact)
{
    if (exact) {
        sattn__gemm_generic(C, ldc, A, ars, acs, B, ldb, m, n, k, accumulate, exact);
        return;
    }
    for (int j0 = 0; j0 < n; j0 += 16) {
        int nn = n - j0 < 16 ? n - j0 : 16;
        int P = (nn + 7) / 8;
        int tail = nn % 8 != 0;
        __m256i last = tail_mask(nn - 8 * (P - 1));
        for (int r0 = 0; r0 < m; r0 += 6) {
            int R = m - r0 < 6 ? m - r0 : 6;
            float *c = C + (int64_t)r0 * ldc + j0;
            const float *a = A + (int64_t)r0 * ars;
            const float *b = B + j0;
            switch (R * 2 + P - 1) {
                MICRO(1, 1) MICRO(1, 2) MICRO(2, 1) MICRO(2, 2) MICRO(3, 1) MICRO(3, 2)
                MICRO(4, 1) MICRO(4, 2) MICRO(5, 1) MICRO(5, 2) MICRO(6, 1) MICRO(6, 2)
            }
        }
    }
}

/* ---- gemm_nt: dot products, R rows of A x 4 keys of B per pass ---- */

ALWAYS_INLINE void nt_micro(const int R, float *C, int ldc, const float *A, int lda, const float *B,
                            int ldb, int nb, int k)
{
    __m256 acc[2][4];
    const __m256i full = _mm256_set1_epi32(-1);
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 4; u++) acc[r][u] = _mm256_setzero_ps();
    for (int c = 0; c < k; c += 8) {
        __m256i t = c + 8 <= k ? full : tail_mask(k - c);
        __m256 bv[4];
        for (int u = 0; u < 4; u++)
            bv[u] = u < nb ? _mm256_maskload_ps(B + (int64_t)u * ldb + c, t) : _mm256_setzero_ps();
        for (int r = 0; r < R; r++) {
            __m256 av = _mm256_maskload_ps(A + (int64_t)r * lda + c, t);
            for (int u = 0; u < 4; u++) acc[r][u] = _mm256_fmadd_ps(av, bv[u], acc[r][u]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int u = 0; u < nb; u++) C[(int64_t)r * ldc + u] = hsum(acc[r][u]);
}

static void gemm_nt(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int m, int n,
                    int k)
{
    for (int j = 0; j < n; j += 4) {
        int nb = n - j < 4 ? n - j : 4;
        for (int i = 0; i < m; i += 2) {
            float *c = C + (int64_t)i * ldc + j;
            const float *a = A + (int64_t)i * lda, *b = B + (int64_t)j * ldb;
            if (m - i >= 2) nt_micro(2, c, ldc, a, lda, b, ldb, nb, k);
            else nt_micro(1, c, ldc, a, lda, b, ldb, nb, k);
        }
    }
}

/* ---- storage conversions: 8 at a time (F16C for f16), the tail by the generic code ---- */

static void load_row(float *dst, const void *src, int n, int dtype, float scale)
{
    const __m256 vs = _mm256_set1_ps(scale);
    int c = 0;
    if (dtype == SATTN_F32) {
        const float *s = src;
        for (; c + 8 <= n; c += 8) _mm256_storeu_ps(dst + c, _mm256_mul_ps(vs, _mm256_loadu_ps(s + c)));
    } else if (dtype == SATTN_F16) {
        const uint16_t *s = src;
        for (; c + 8 <= n; c += 8)
            _mm256_storeu_ps(dst + c, _mm256_mul_ps(vs, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + c)))));
    } else {
        const uint16_t *s = src;
        for (; c + 8 <= n; c += 8) {
            __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + c)));
            _mm256_storeu_ps(dst + c, _mm256_mul_ps(vs, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16))));
        }
    }
    if (c < n)
        sattn__load_row_generic(dst + c, (const char *)src + (size_t)c * (size_t)sattn__dtype_size(dtype), n - c,
                                dtype, scale);
}

static void store_row(void *dst, const float *src, int n, int dtype, float scale)
{
    const __m256 vs = _mm256_set1_ps(scale);
    int c = 0;
    if (dtype == SATTN_F32) {
        float *d = dst;
        for (; c + 8 <= n; c += 8) _mm256_storeu_ps(d + c, _mm256_mul_ps(vs, _mm256_loadu_ps(src + c)));
    } else if (dtype == SATTN_F16) {
        uint16_t *d = dst;
        for (; c + 8 <= n; c += 8) {
            __m128i h = _mm256_cvtps_ph(_mm256_mul_ps(vs, _mm256_loadu_ps(src + c)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm_storeu_si128((__m128i *)(d + c), h);
        }
    } else {
        uint16_t *d = dst;
        for (; c + 8 <= n; c += 8) {
            __m256 x = _mm256_mul_ps(vs, _mm256_loadu_ps(src + c));
            __m256i u = _mm256_castps_si256(x);
            __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
            __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
            __m256i nanr = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
            __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
            r = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(nanr), nan));
            /* 32 -> 16 bits: packus works within 128-bit lanes, then gather lanes 0 and 2 */
            __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
            _mm_storeu_si128((__m128i *)(d + c), _mm256_castsi256_si128(p));
        }
    }
    if (c < n)
        sattn__store_row_generic((char *)dst + (size_t)c * (size_t)sattn__dtype_size(dtype), src + c, n - c, dtype,
                                 scale);
}

/* ---- softmax ---- */

/* Rows are walked in full vectors with plain loads; only the last, partial one is
   masked (vmaskmovps is slow on some CPUs). */
#define ROW_LOOP(n, c, full_body, tail_body)                \
    do {                                                    \
        int c = 0;                                          \
        for (; c + 8 <= (n); c += 8) { full_body }          \
        if (c < (n)) {                                      \
            __m256i t_ = tail_mask((n) - c);                \
            (void)t_;                                       \
            tail_body                                       \
        }                                                   \
    } while (0)

static void softmax_online(float *S, int lds, int m, int n, float *mx, float *sum,
                           float *O, int ldo, int dv)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int r = 0; r < m; r++) {
        float *s = S + (int64_t)r * lds;
        __m256 vmax = ninf;
        ROW_LOOP(n, c, vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + c));,
                 vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(ninf, _mm256_maskload_ps(s + c, t_),
                                                              _mm256_castsi256_ps(t_))););
        float bmax = hmax(vmax);
        float mnew = bmax > mx[r] ? bmax : mx[r];
        if (mnew == -INFINITY) {
            ROW_LOOP(n, c, _mm256_storeu_ps(s + c, _mm256_setzero_ps());,
                     _mm256_maskstore_ps(s + c, t_, _mm256_setzero_ps()););
            continue;
        }
        float alpha = expf(mx[r] - mnew);
        __m256 vm = _mm256_set1_ps(mnew), vsum = _mm256_setzero_ps();
        ROW_LOOP(n, c,
                 __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + c), vm));
                 _mm256_storeu_ps(s + c, e); vsum = _mm256_add_ps(vsum, e);,
                 __m256 e = exp256(_mm256_sub_ps(_mm256_maskload_ps(s + c, t_), vm));
                 e = _mm256_and_ps(e, _mm256_castsi256_ps(t_));
                 _mm256_maskstore_ps(s + c, t_, e); vsum = _mm256_add_ps(vsum, e););
        if (alpha != 1.0f) {
            __m256 va = _mm256_set1_ps(alpha);
            float *o = O + (int64_t)r * ldo;
            ROW_LOOP(dv, c, _mm256_storeu_ps(o + c, _mm256_mul_ps(va, _mm256_loadu_ps(o + c)));,
                     _mm256_maskstore_ps(o + c, t_, _mm256_mul_ps(va, _mm256_maskload_ps(o + c, t_))););
        }
        sum[r] = sum[r] * alpha + hsum(vsum);
        mx[r] = mnew;
    }
}

static void softmax_recompute(float *S, int lds, int m, int n, const float *lse)
{
    for (int r = 0; r < m; r++) {
        float *s = S + (int64_t)r * lds;
        if (lse[r] == -INFINITY) {
            ROW_LOOP(n, c, _mm256_storeu_ps(s + c, _mm256_setzero_ps());,
                     _mm256_maskstore_ps(s + c, t_, _mm256_setzero_ps()););
            continue;
        }
        __m256 vl = _mm256_set1_ps(lse[r]);
        ROW_LOOP(n, c, _mm256_storeu_ps(s + c, exp256(_mm256_sub_ps(_mm256_loadu_ps(s + c), vl)));,
                 _mm256_maskstore_ps(s + c, t_, exp256(_mm256_sub_ps(_mm256_maskload_ps(s + c, t_), vl))););
    }
}

static void softmax_grad(float *dP, int lddp, const float *P, int ldp, int m, int n,
                         const float *D)
{
    const __m256 zero = _mm256_setzero_ps();
    for (int r = 0; r < m; r++) {
        float *g = dP + (int64_t)r * lddp;
        const float *pr = P + (int64_t)r * ldp;
        __m256 vd = _mm256_set1_ps(D[r]);
        ROW_LOOP(n, c,
                 __m256 pv = _mm256_loadu_ps(pr + c);
                 __m256 ds = _mm256_mul_ps(pv, _mm256_sub_ps(_mm256_loadu_ps(g + c), vd));
                 _mm256_storeu_ps(g + c, _mm256_and_ps(ds, _mm256_cmp_ps(pv, zero, _CMP_NEQ_UQ)));,
                 __m256 pv = _mm256_maskload_ps(pr + c, t_);
                 __m256 ds = _mm256_mul_ps(pv, _mm256_sub_ps(_mm256_maskload_ps(g + c, t_), vd));
                 _mm256_maskstore_ps(g + c, t_, _mm256_and_ps(ds, _mm256_cmp_ps(pv, zero, _CMP_NEQ_UQ))););
    }
}

const sattn__kernels sattn__kernels_avx2 = {
    .name = "avx2",
    .gemm = gemm,
    .gemm_nt = gemm_nt,
    .gemm_nt_h = sattn__gemm_nt_h_generic,
    .gemm_h = sattn__gemm_h_generic,
    .load_rows_t = sattn__load_rows_t_generic,
    .load_row = load_row,
    .store_row = store_row,
    .softmax_online = softmax_online,
    .softmax_recompute = softmax_recompute,
    .softmax_grad = softmax_grad,
};
