/* AVX2 + FMA + F16C kernels (this file alone is compiled with -mavx2 -mfma -mf16c): the
 * row code and products of rows.h and micro.h over 8-float vectors. gemm panels are 6
 * rows x 16 columns of C (12 accumulators, 2 vectors of B and one broadcast per step:
 * 15 of the 16 registers); gemm_nt blocks 2 rows of A x 4 keys, their sums reduced by
 * a hadd tree; K panels transposed in 8 x 8 blocks. The decode path's pair-order and
 * span forms are the generic ones here (decode_bf16, span_values). */
#define SATTN_SIMD_AVX2
#define MICRO_P 2
#define NT_R 2
#define SATTN_HAVE_STORE_SUMS
#include <immintrin.h>

#include "simd.h"

/* The sums of a0..a3 in one vector: a hadd tree within the 128-bit lanes, then the two
   lanes added (5 operations where four sv_hsum take 24). */
static inline __attribute__((always_inline)) __m128 reduce4(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* C[r][u] = scale times the sum of the lanes of acc[r][u], for R rows and NB columns */
static inline __attribute__((always_inline)) void store_sums(const int R, const int NB, float *C, int ldc,
                                                             __m256 acc[NT_R][4], float scale)
{
    for (int r = 0; r < R; r++) {
        __m128 s = _mm_mul_ps(reduce4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]), _mm_set1_ps(scale));
        if (NB == 4) {
            _mm_storeu_ps(C + (int64_t)r * ldc, s);
        } else {
            float sums[4];
            _mm_storeu_ps(sums, s);
            for (int u = 0; u < NB; u++) C[(int64_t)r * ldc + u] = sums[u];
        }
    }
}

#include "micro.h"

const sattn__kernels sattn__kernels_avx2 = {
    .name = "avx2",
    .decode_bf16 = SATTN__BF16_PLAIN,
    .span_values = 0,
    .bf16_products = 0,
    .gemm = gemm,
    .gemm_nt = gemm_nt,
    .gemm_nt_h = gemm_nt_h,
    .gemm_h = gemm_h,
    .gemm_nt_bf16p = sattn__gemm_nt_bf16p_generic,
    .gemm_bf16p = sattn__gemm_bf16p_generic,
    .gemm_h_span = sattn__gemm_h_span_generic,
    .gemm_nt_bf16dp = sattn__gemm_nt_bf16dp_generic,
    .gemm_dp = sattn__gemm_dp_generic,
    .load_rows_t = load_rows_t,
    .load_row = row_load,
    .store_row = row_store,
    .softmax_online = softmax_online,
    .softmax_online_log2 = softmax_online_log2,
    .softmax_recompute = softmax_recompute,
    .softmax_grad = softmax_grad,
};
