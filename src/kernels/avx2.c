/* AVX2 + FMA + F16C kernels (this file alone is compiled with -mavx2 -mfma -mf16c): the
 * row code and products of rows.h and micro.h over 8-float vectors. gemm panels are 6
 * rows x 16 columns of C (12 accumulators, 2 vectors of B and one broadcast per step:
 * 15 of the 16 registers); gemm_nt blocks 2 rows of A x 4 keys; K panels transposed in
 * 8 x 8 blocks. The decode path's pair-order and span forms are the generic ones here
 * (decode_bf16, span_values). */
#define SATTN_SIMD_AVX2
#define MICRO_P 2
#define NT_R 2
#include <immintrin.h>

#include "simd.h"

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
