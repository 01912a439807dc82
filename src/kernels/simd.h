/* Vector primitives, one set per ISA, in the manner of ggml's simd-mappings.h: the row
 * code (rows.h) and the register-blocked products (micro.h) are written once over
 * these and compiled once per ISA file, which defines one of
 *   SATTN_SIMD_AVX512  16 floats per vector (compiled with -mavx512f -mavx512dq -mfma)
 *   SATTN_SIMD_AVX2     8 floats per vector (-mavx2 -mfma -mf16c)
 *   neither             1 float: plain C, the portable fallback
 * before including this header. What a vector is differs; what each primitive computes
 * does not:
 *   sv          SV_N floats;  si  SV_N 32-bit integers;  sm  a lane mask (comparisons)
 *   st          a tail mask: the first n lanes (sv_tail(n), 0 < n <= SV_N); sv_tail_sm
 *               gives it as an sm
 *   sv_max(a, b), sv_min(a, b)  as x86's maxps/minps: b where either is NaN, so a
 *               constant first and x second propagate a NaN x
 *   sv_loadt, sv_storet         the lanes of a tail only; the others load as 0
 *   sv_pow2n(p, n)              p * 2^n for integral n in [-150, 128], rounded once
 *                               (underflow to 0, overflow to inf)
 *   sv_exp2_split(x, &n)        r = x - n for n = round(x) (nearest even), with n such
 *                               that sv_pow2n(2^r, n) is 2^x for every x: -inf gives 0,
 *                               +inf gives inf, NaN stays NaN
 *   sv_load_f16 / sv_store_f16  SV_N halves <-> floats, stores nearest even (IEEE
 *                               conversion instructions; convert.h's in plain C)
 *   si_store_u16                the low 16 bits of each lane, SV_N of them
 *   sv_transpose(r)             r[SV_N] transposed: lane i of r[j] becomes lane j of r[i]
 *   sv_hsum4(s, n, k, a0..a3)   s[u] = k times the sum of the lanes of a_u, for u < n <= 4
 *                               (one reduction tree for the four; a_u for u >= n is read)
 *   sv_hsum4x4(C, ldc, k, a)    AVX-512 only (SV_HAVE_HSUM4X4): C[r ldc + u] = k times the
 *                               sum of the lanes of a[r][u], the whole 4 x 4 block at once
 * Every pointer may be unaligned. */
#ifndef SATTN_SIMD_H
#define SATTN_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define SV_INLINE static inline __attribute__((always_inline))

#if defined(SATTN_SIMD_AVX512) || defined(SATTN_SIMD_AVX2)
#include <immintrin.h>

/* sv_hsum4 on 8-float vectors (both x86 ISAs: AVX-512 halves its vectors first): a hadd
   tree within the 128-bit lanes, then the two lanes added, 5 operations where four
   separate sums take 24 */
SV_INLINE void hsum4_256(float *s, int n, float k, __m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m128 x = _mm_mul_ps(_mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)), _mm_set1_ps(k));
    if (n == 4) {
        _mm_storeu_ps(s, x);
    } else {
        float b[4];
        _mm_storeu_ps(b, x);
        for (int u = 0; u < n; u++) s[u] = b[u];
    }
}
#endif

#if defined(SATTN_SIMD_AVX512)
#define SV_N 16
typedef __m512 sv;
typedef __m512i si;
typedef __mmask16 sm;
typedef __mmask16 st;

SV_INLINE sv sv_load(const float *p) { return _mm512_loadu_ps(p); }
SV_INLINE void sv_store(float *p, sv x) { _mm512_storeu_ps(p, x); }
SV_INLINE st sv_tail(int n) { return n >= 16 ? (st)0xffff : (st)((1u << n) - 1u); }
SV_INLINE st sv_full(void) { return (st)0xffff; }
SV_INLINE sm sv_tail_sm(st t) { return t; }
SV_INLINE sv sv_loadt(const float *p, st t) { return _mm512_maskz_loadu_ps(t, p); }
SV_INLINE void sv_storet(float *p, sv x, st t) { _mm512_mask_storeu_ps(p, t, x); }
SV_INLINE sv sv_set1(float x) { return _mm512_set1_ps(x); }
SV_INLINE sv sv_zero(void) { return _mm512_setzero_ps(); }
SV_INLINE sv sv_add(sv a, sv b) { return _mm512_add_ps(a, b); }
SV_INLINE sv sv_sub(sv a, sv b) { return _mm512_sub_ps(a, b); }
SV_INLINE sv sv_mul(sv a, sv b) { return _mm512_mul_ps(a, b); }
SV_INLINE sv sv_fma(sv a, sv b, sv c) { return _mm512_fmadd_ps(a, b, c); }   /* a b + c */
SV_INLINE sv sv_fnma(sv a, sv b, sv c) { return _mm512_fnmadd_ps(a, b, c); } /* c - a b */
SV_INLINE sv sv_max(sv a, sv b) { return _mm512_max_ps(a, b); }
SV_INLINE sv sv_min(sv a, sv b) { return _mm512_min_ps(a, b); }
SV_INLINE float sv_hmax(sv x) { return _mm512_reduce_max_ps(x); }
SV_INLINE float sv_hsum(sv x) { return _mm512_reduce_add_ps(x); }
SV_INLINE sv sv_round(sv x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
SV_INLINE sv sv_pow2n(sv p, sv n) { return _mm512_scalef_ps(p, n); }
/* vscalefps takes any n (2^n underflows to 0 and overflows to inf as it should), so no
   clamp; vreduceps gives x - round(x) in one step, 0 for ±inf (AVX512DQ) */
SV_INLINE sv sv_exp2_split(sv x, sv *n)
{
    *n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_reduce_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
SV_INLINE sm sv_isnan(sv x) { return _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q); }
SV_INLINE sm sv_nonzero(sv x) { return _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NEQ_UQ); }
SV_INLINE sv sv_select(sm m, sv a, sv b) { return _mm512_mask_blend_ps(m, b, a); } /* m ? a : b */
SV_INLINE sv sv_load_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
SV_INLINE void sv_store_f16(uint16_t *p, sv x)
{
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
SV_INLINE si si_load_u16(const uint16_t *p) { return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)); }
SV_INLINE void si_store_u16(uint16_t *p, si x) { _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(x)); }
SV_INLINE si sv_bits(sv x) { return _mm512_castps_si512(x); }
SV_INLINE sv si_float(si x) { return _mm512_castsi512_ps(x); }
SV_INLINE si si_set1(uint32_t x) { return _mm512_set1_epi32((int)x); }
SV_INLINE si si_add(si a, si b) { return _mm512_add_epi32(a, b); }
SV_INLINE si si_and(si a, si b) { return _mm512_and_si512(a, b); }
SV_INLINE si si_or(si a, si b) { return _mm512_or_si512(a, b); }
#define si_srl(x, n) _mm512_srli_epi32(x, n)
#define si_sll(x, n) _mm512_slli_epi32(x, n)
SV_INLINE si si_select(sm m, si a, si b) { return _mm512_mask_blend_epi32(m, b, a); }
/* r[i] = lane i of every r[j], for the SV_N x SV_N block in r: row pairs interleaved,
   then 4 x 4 blocks within each 128-bit lane, then the 128-bit lanes across rows */
SV_INLINE void sv_transpose(sv r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

SV_INLINE __m256 sv_half_sum(__m512 a)
{
    return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}
SV_INLINE void sv_hsum4(float *s, int n, float k, sv a0, sv a1, sv a2, sv a3)
{
    hsum4_256(s, n, k, sv_half_sum(a0), sv_half_sum(a1), sv_half_sum(a2), sv_half_sum(a3));
}
/* the 16 sums in one vector, lane 4r + u: a transpose-and-add tree (pairs within 128-bit
   lanes, then across them), 45 operations where four sv_hsum4 take about 80 */
#define SV_HAVE_HSUM4X4
SV_INLINE void sv_hsum4x4(float *C, int64_t ldc, float k, sv a[4][4])
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
    __m512 x = _mm512_mul_ps(_mm512_add_ps(_mm512_shuffle_f32x4(w0, w1, 0x88), _mm512_shuffle_f32x4(w0, w1, 0xdd)),
                             _mm512_set1_ps(k));
    _mm_storeu_ps(C, _mm512_castps512_ps128(x));
    _mm_storeu_ps(C + ldc, _mm512_extractf32x4_ps(x, 1));
    _mm_storeu_ps(C + 2 * ldc, _mm512_extractf32x4_ps(x, 2));
    _mm_storeu_ps(C + 3 * ldc, _mm512_extractf32x4_ps(x, 3));
}

#elif defined(SATTN_SIMD_AVX2)
#define SV_N 8
typedef __m256 sv;
typedef __m256i si;
typedef __m256 sm;  /* all-ones lanes */
typedef __m256i st; /* all-ones lanes, for vmaskmovps */

SV_INLINE sv sv_load(const float *p) { return _mm256_loadu_ps(p); }
SV_INLINE void sv_store(float *p, sv x) { _mm256_storeu_ps(p, x); }
SV_INLINE st sv_tail(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n < 8 ? n : 8), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
SV_INLINE st sv_full(void) { return _mm256_set1_epi32(-1); }
SV_INLINE sm sv_tail_sm(st t) { return _mm256_castsi256_ps(t); }
SV_INLINE sv sv_loadt(const float *p, st t) { return _mm256_maskload_ps(p, t); }
SV_INLINE void sv_storet(float *p, sv x, st t) { _mm256_maskstore_ps(p, t, x); }
SV_INLINE sv sv_set1(float x) { return _mm256_set1_ps(x); }
SV_INLINE sv sv_zero(void) { return _mm256_setzero_ps(); }
SV_INLINE sv sv_add(sv a, sv b) { return _mm256_add_ps(a, b); }
SV_INLINE sv sv_sub(sv a, sv b) { return _mm256_sub_ps(a, b); }
SV_INLINE sv sv_mul(sv a, sv b) { return _mm256_mul_ps(a, b); }
SV_INLINE sv sv_fma(sv a, sv b, sv c) { return _mm256_fmadd_ps(a, b, c); }
SV_INLINE sv sv_fnma(sv a, sv b, sv c) { return _mm256_fnmadd_ps(a, b, c); }
SV_INLINE sv sv_max(sv a, sv b) { return _mm256_max_ps(a, b); }
SV_INLINE sv sv_min(sv a, sv b) { return _mm256_min_ps(a, b); }
SV_INLINE float sv_hmax(sv v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
SV_INLINE void sv_hsum4(float *s, int n, float k, sv a0, sv a1, sv a2, sv a3) { hsum4_256(s, n, k, a0, a1, a2, a3); }
SV_INLINE float sv_hsum(sv v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
SV_INLINE sv sv_round(sv x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
/* 2^n as two factors 2^(n >> 1) and 2^(n - (n >> 1)), each a normal float for n in
   [-150, 128], so one product rounds to the subnormal or infinite result */
SV_INLINE sv sv_pow2n(sv p, sv n)
{
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i h1 = _mm256_srai_epi32(ni, 1), h2 = _mm256_sub_epi32(ni, h1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
SV_INLINE sm sv_isnan(sv x) { return _mm256_cmp_ps(x, x, _CMP_UNORD_Q); }
SV_INLINE sm sv_nonzero(sv x) { return _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ); }
SV_INLINE sv sv_select(sm m, sv a, sv b) { return _mm256_blendv_ps(b, a, m); }
SV_INLINE sv sv_load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
SV_INLINE void sv_store_f16(uint16_t *p, sv x)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
SV_INLINE si si_load_u16(const uint16_t *p) { return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)); }
SV_INLINE void si_store_u16(uint16_t *p, si x)
{
    /* packus works within 128-bit lanes (values < 2^16 pass unchanged): gather lanes 0 and 2 */
    __m256i q = _mm256_permute4x64_epi64(_mm256_packus_epi32(x, x), 0x08);
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(q));
}
SV_INLINE si sv_bits(sv x) { return _mm256_castps_si256(x); }
SV_INLINE sv si_float(si x) { return _mm256_castsi256_ps(x); }
SV_INLINE si si_set1(uint32_t x) { return _mm256_set1_epi32((int)x); }
SV_INLINE si si_add(si a, si b) { return _mm256_add_epi32(a, b); }
SV_INLINE si si_and(si a, si b) { return _mm256_and_si256(a, b); }
SV_INLINE si si_or(si a, si b) { return _mm256_or_si256(a, b); }
#define si_srl(x, n) _mm256_srli_epi32(x, n)
#define si_sll(x, n) _mm256_slli_epi32(x, n)
SV_INLINE si si_select(sm m, si a, si b)
{
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(b), _mm256_castsi256_ps(a), m));
}
/* r[i] = lane i of every r[j]: row pairs interleaved, 4 x 4 blocks within each 128-bit
   lane, then the 128-bit lanes across rows */
SV_INLINE void sv_transpose(sv r[8])
{
    __m256 t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
        t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    for (int i = 0; i < 8; i++) r[i] = t[i];
}

#else /* plain C: one float per "vector" */
#include "../convert.h"

#define SV_N 1
typedef float sv;
typedef uint32_t si;
typedef int sm;
typedef int st;

SV_INLINE sv sv_load(const float *p) { return *p; }
SV_INLINE void sv_store(float *p, sv x) { *p = x; }
SV_INLINE st sv_tail(int n) { return n > 0; }
SV_INLINE st sv_full(void) { return 1; }
SV_INLINE sm sv_tail_sm(st t) { return t; }
SV_INLINE sv sv_loadt(const float *p, st t) { return t ? *p : 0.0f; }
SV_INLINE void sv_storet(float *p, sv x, st t)
{
    if (t) *p = x;
}
SV_INLINE sv sv_set1(float x) { return x; }
SV_INLINE sv sv_zero(void) { return 0.0f; }
SV_INLINE sv sv_add(sv a, sv b) { return a + b; }
SV_INLINE sv sv_sub(sv a, sv b) { return a - b; }
SV_INLINE sv sv_mul(sv a, sv b) { return a * b; }
/* two roundings, not fmaf: without hardware FMA that is a library call per element,
   and nothing here needs the single rounding (Cody-Waite's ln2 high part has 9 bits,
   so n times it is exact) */
SV_INLINE sv sv_fma(sv a, sv b, sv c) { return a * b + c; }
SV_INLINE sv sv_fnma(sv a, sv b, sv c) { return c - a * b; }
SV_INLINE sv sv_max(sv a, sv b) { return a > b ? a : b; }
SV_INLINE sv sv_min(sv a, sv b) { return a < b ? a : b; }
SV_INLINE float sv_hmax(sv x) { return x; }
SV_INLINE float sv_hsum(sv x) { return x; }
SV_INLINE sv sv_round(sv x) { return rintf(x); } /* nearest even in the default mode */
SV_INLINE sv sv_pow2n(sv p, sv n) { return n == n ? ldexpf(p, (int)n) : n; }
SV_INLINE sm sv_isnan(sv x) { return x != x; }
SV_INLINE sm sv_nonzero(sv x) { return x != 0.0f; }
SV_INLINE sv sv_select(sm m, sv a, sv b) { return m ? a : b; }
SV_INLINE sv sv_load_f16(const uint16_t *p) { return sattn__f16_to_f32(*p); }
SV_INLINE void sv_store_f16(uint16_t *p, sv x) { *p = sattn__f32_to_f16(x); }
SV_INLINE si si_load_u16(const uint16_t *p) { return *p; }
SV_INLINE void si_store_u16(uint16_t *p, si x) { *p = (uint16_t)x; }
SV_INLINE si sv_bits(sv x) { return sattn__f32_bits(x); }
SV_INLINE sv si_float(si x) { return sattn__bits_f32(x); }
SV_INLINE si si_set1(uint32_t x) { return x; }
SV_INLINE si si_add(si a, si b) { return a + b; }
SV_INLINE si si_and(si a, si b) { return a & b; }
SV_INLINE si si_or(si a, si b) { return a | b; }
#define si_srl(x, n) ((x) >> (n))
#define si_sll(x, n) ((x) << (n))
SV_INLINE si si_select(sm m, si a, si b) { return m ? a : b; }
SV_INLINE void sv_transpose(sv r[1]) { (void)r; }
SV_INLINE void sv_hsum4(float *s, int n, float k, sv a0, sv a1, sv a2, sv a3)
{
    const sv a[4] = {a0, a1, a2, a3};
    for (int u = 0; u < n; u++) s[u] = k * a[u];
}
#endif

/* ---- built on the primitives, the same for every ISA ---- */

#if !defined(SATTN_SIMD_AVX512)
/* sv_pow2n takes n in [-150, 128] here: x is clamped to that range first (2^-150 rounds
   to 0, 2^128 overflows to inf); a NaN passes through the clamps (sv_max, sv_min). */
SV_INLINE sv sv_exp2_split(sv x, sv *n)
{
    x = sv_max(sv_set1(-150.0f), x);
    x = sv_min(sv_set1(128.0f), x);
    *n = sv_round(x);
    return sv_sub(x, *n);
}
#endif

/* C[r ldc + u] = k times the sum of the lanes of acc[r][u], for r < R and u < NB: a
   gemm_nt block's dot products (acc[r][u] for u >= NB is read, and must be set) */
SV_INLINE void sv_store_sums(const int R, const int NB, float *C, int ldc, sv acc[][4], float k)
{
#if defined(SV_HAVE_HSUM4X4)
    if (R == 4 && NB == 4) {
        sv_hsum4x4(C, ldc, k, acc);
        return;
    }
#endif
    for (int r = 0; r < R; r++) sv_hsum4(C + (int64_t)r * ldc, NB, k, acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
}

/* SV_N bf16 as floats: the bits in the upper half */
SV_INLINE sv sv_load_bf16(const uint16_t *p) { return si_float(si_sll(si_load_u16(p), 16)); }

/* SV_N floats to bf16, nearest even: add 0x7fff plus the lowest kept bit, keep the upper
   half; a NaN keeps its upper half with the quiet bit set (adding could carry it to inf). */
SV_INLINE void sv_store_bf16(uint16_t *p, sv x)
{
    si u = sv_bits(x);
    si odd = si_and(si_srl(u, 16), si_set1(1));
    si r = si_srl(si_add(u, si_add(odd, si_set1(0x7fff))), 16);
    si_store_u16(p, si_select(sv_isnan(x), si_or(si_srl(u, 16), si_set1(0x40)), r));
}

/* k e^r for r = x - n ln2 in [-ln2/2, ln2/2]: Cephes' expf polynomial, its
   coefficients times k, a power of two (1, or 1/2 for the weights below), so that every
   step is k times the unscaled one, exactly: the same bits, times k. */
SV_INLINE sv exp_poly(sv r, const float k)
{
    sv p = sv_set1(k * 1.9875691500e-4f);
    p = sv_fma(p, r, sv_set1(k * 1.3981999507e-3f));
    p = sv_fma(p, r, sv_set1(k * 8.3334519073e-3f));
    p = sv_fma(p, r, sv_set1(k * 4.1665795894e-2f));
    p = sv_fma(p, r, sv_set1(k * 1.6666665459e-1f));
    p = sv_fma(p, r, sv_set1(k * 5.0000001201e-1f));
    /* k (r + 1): an add when k = 1, one rounding either way */
    return sv_fma(p, sv_mul(r, r), k == 1.0f ? sv_add(r, sv_set1(1.0f)) : sv_fma(r, sv_set1(k), sv_set1(k)));
}

/* k 2^r for r in [-1/2, 1/2]: Cephes' exp2f, 1 + r P(r), its coefficients times k (as
   exp_poly) */
SV_INLINE sv exp2_poly(sv r, const float k)
{
    sv p = sv_set1(k * 1.535336188319500e-4f);
    p = sv_fma(p, r, sv_set1(k * 1.339887440266574e-3f));
    p = sv_fma(p, r, sv_set1(k * 9.618437357674640e-3f));
    p = sv_fma(p, r, sv_set1(k * 5.550332471162809e-2f));
    p = sv_fma(p, r, sv_set1(k * 2.402264791363012e-1f));
    p = sv_fma(p, r, sv_set1(k * 6.931472028550421e-1f));
    return sv_fma(p, r, sv_set1(k));
}

/* x - n ln 2 in two steps (Cody and Waite: ln 2's high part has 9 bits, so n times it is
   exact for the n here) */
SV_INLINE sv exp_reduce(sv x, sv n)
{
    sv r = sv_fnma(n, sv_set1(0.693359375f), x);
    return sv_fnma(n, sv_set1(-2.12194440e-4f), r);
}

/* exp(x), Cephes' polynomial on x - n ln2 (n = round(x log2 e)), scaled by 2^n.
   x is clamped to [-104, 88.8] first: exp(-104) < 2^-150 rounds to 0, so -inf gives
   exactly 0; exp(88.8) overflows to inf, and so does +inf. A NaN stays NaN. */
SV_INLINE sv sv_exp(sv x)
{
    x = sv_max(sv_set1(-104.0f), x);
    x = sv_min(sv_set1(88.8f), x);
    sv n = sv_round(sv_mul(x, sv_set1(1.44269504088896341f)));
    return sv_pow2n(exp_poly(exp_reduce(x, n), 1.0f), n);
}

/* 2^x: Cephes' exp2f, 1 + r P(r) on r = x - n in [-1/2, 1/2] (n = round(x)), scaled by
   2^n (sv_exp2_split: -inf and +inf give 0 and inf, a NaN stays NaN). Five operations
   fewer than sv_exp of x ln 2, seven on AVX-512: the softmax of scores pre-multiplied by
   log2 e uses it. */
SV_INLINE sv sv_exp2(sv x)
{
    sv n;
    sv r = sv_exp2_split(x, &n);
    return sv_pow2n(exp2_poly(r, 1.0f), n);
}

/* exp(x) and 2^x as softmax weights: x is a score minus its row's max or its lse (x <= 0
   but for rounding, -inf or NaN). With n = round(x) (or round(x log2 e)): the same bits
   as sv_exp2 (sv_exp) for n in [-127, 126], which covers every result from 2^-127.5 to
   2^126.5, subnormal ones included; 0 below (against the row's largest weight, about 1,
   beyond f32's precision in every sum and product the weight enters), inf above. NaN
   stays NaN, -inf gives 0. On AVX2 sv_pow2n's two-factor scale costs 9 of sv_exp2's 19
   operations: here n comes from adding 1.5 2^23 + 128 (even, so ties round to even as
   sv_round does), whose low bits are then n + 128, shifted into the exponent: 2^(n + 1),
   the polynomial halved to match (exact), 13 operations in all. n is clamped to
   [-128, 127], so that n + 128 fits 8 bits: -128 gives a scale of 0, 127 of inf.
   Elsewhere sv_exp and sv_exp2 themselves (AVX-512's scale is one instruction; plain C
   is the reference). */
#if defined(SATTN_SIMD_AVX2)
#define SV_SHIFTER 12583040.0f /* 1.5 2^23 + 128: the ulp there is 1 */
/* 2^(n + 1) from t = y + SV_SHIFTER, n = round(y) in [-128, 127]: 0 for -128, inf for 127 */
SV_INLINE sv sv_pow2_shifted(sv t) { return si_float(si_sll(sv_bits(t), 23)); }

SV_INLINE sv sv_exp2_weight(sv x)
{
    x = sv_max(sv_set1(-128.0f), x);
    x = sv_min(sv_set1(127.0f), x);
    sv t = sv_add(x, sv_set1(SV_SHIFTER));
    sv r = sv_sub(x, sv_sub(t, sv_set1(SV_SHIFTER)));
    return sv_mul(exp2_poly(r, 0.5f), sv_pow2_shifted(t));
}

SV_INLINE sv sv_exp_weight(sv x)
{
    x = sv_max(sv_set1(-88.5f), x); /* -88.5 log2 e = -127.7: n = -128 */
    x = sv_min(sv_set1(88.0f), x);  /* 88 log2 e = 126.96: n = 127 */
    sv t = sv_add(sv_mul(x, sv_set1(1.44269504088896341f)), sv_set1(SV_SHIFTER));
    sv n = sv_sub(t, sv_set1(SV_SHIFTER));
    return sv_mul(exp_poly(exp_reduce(x, n), 0.5f), sv_pow2_shifted(t));
}
#undef SV_SHIFTER
#else
SV_INLINE sv sv_exp2_weight(sv x) { return sv_exp2(x); }
SV_INLINE sv sv_exp_weight(sv x) { return sv_exp(x); }
#endif

#endif
