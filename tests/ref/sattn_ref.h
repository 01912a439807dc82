/* sattn_ref: the naive double-precision reference (the oracle) for the tests.
 *
 * Written from the semantics in include/sattn.h alone; it shares no code with src/.
 * It takes only the sattn_params struct and the enums from sattn.h. Everything is
 * computed in double, one (sequence, head, query row) at a time, with the whole
 * score row materialised: readable, never optimised.
 *
 * Outputs are double arrays laid out with the same element strides as the library's
 * tensor of the same role, so a test compares element (b, i, h, c) at one index:
 *   out, dout      o_stride   (batch, seq_q, heads_q, head_dim_v)
 *   dq / dk / dv   q/k/v_stride
 *   lse            [batch][heads_q][seq_q], or [heads_q][total_q] with cu_seqlens_q
 * Elements that belong to no (b, i, h, c) of the tensor (gaps of padded strides,
 * rows outside every cu_seqlens range) are never written.
 */
#ifndef SATTN_REF_H
#define SATTN_REF_H

#include <stdint.h>

#include "sattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- attention ---- */

/* out = attention(q, k, v) and lse, in double, from q/k/v stored as p->dtype.
   lse may be NULL. Returns 0, or -1 if the params are unusable (the reference checks
   only what it needs to run; argument validation is the library's job). */
int sattn_ref_forward(const sattn_params *p, const void *q, const void *k, const void *v,
                      double *out, double *lse);

/* dq, dk, dv = gradients of sum(out * dout) with respect to q, k, v, in double.
   Recomputes its own softmax (takes no out or lse). dout is stored as p->dtype with
   the layout of out. dq/dk/dv are overwritten on every element of their tensors. */
int sattn_ref_backward(const sattn_params *p, const void *q, const void *k, const void *v,
                       const void *dout, double *dq, double *dk, double *dv);

/* The magnitude each gradient element's rounding error scales with: the backward's
   formulas with every input, product and difference taken in absolute value
   (dP - D becomes |dP| + |D|, the softcap factor 1 - t^2 becomes 1 - t^2 + 2^-8 to
   cover f32 tanh's absolute error near saturation). >= |gradient| elementwise; 0
   exactly where no attended weight reaches the element. Same layouts as the backward.
   d_floor adds d_floor * sum_c |dout_c| to |D|: room for an absolute error in the out
   that a library reads back to form D = dout . out (f16 rounds tiny outputs to
   subnormals with an absolute, not relative, error). */
int sattn_ref_backward_mag(const sattn_params *p, const void *q, const void *k, const void *v,
                           const void *dout, double d_floor, double *mq, double *mk, double *mv);

/* The same two functions with q, k, v (and dout) given as double arrays in the
   layouts of p (p->dtype is ignored): used to check the reference backward against
   finite differences of the reference forward without any rounding of the inputs. */
int sattn_ref_forward_f64(const sattn_params *p, const double *q, const double *k,
                          const double *v, double *out, double *lse);
int sattn_ref_backward_f64(const sattn_params *p, const double *q, const double *k,
                           const double *v, const double *dout,
                           double *dq, double *dk, double *dv);

/* ---- dropout ---- */

/* Philox4x32-10 (Salmon et al., SC'11): out = bijection(ctr) under key. */
void sattn_ref_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* 1 if the weight (b, h, i, j) is kept under the header's rule, 0 if dropped:
   r = Philox(counter {j>>2, i, h, b}, key {seed lo, seed hi}),
   u = (r[j&3] >> 8) * 2^-24, kept iff u >= dropout_p. */
int sattn_ref_dropout_keep(uint64_t seed, float dropout_p,
                           int64_t b, int64_t h, int64_t i, int64_t j);

/* ---- storage types ---- */

/* Exact decoding of IEEE binary16 and bfloat16 bit patterns. */
double sattn_ref_f16_to_f64(uint16_t bits);
double sattn_ref_bf16_to_f64(uint16_t bits);
/* Encoding of an f32 value, round to nearest even (overflow to inf, NaN stays NaN). */
uint16_t sattn_ref_f32_to_f16(float x);
uint16_t sattn_ref_f32_to_bf16(float x);
/* x rounded to the nearest f16 / bf16 value, returned as f32 (exact). */
float sattn_ref_round_f16(float x);
float sattn_ref_round_bf16(float x);

/* Element idx of an array stored as dtype, as a double. */
double sattn_ref_load(sattn_dtype dtype, const void *base, int64_t idx);
/* Stores x into element idx of an array stored as dtype (rounding to nearest even). */
void sattn_ref_store(sattn_dtype dtype, void *base, int64_t idx, float x);
/* Bytes per element of dtype (4 or 2), 0 for an unknown dtype. */
int sattn_ref_dtype_size(sattn_dtype dtype);

/* ---- layout helpers (the header's rules, shared with the tests) ---- */

/* The strides actually used for a tensor with the given strides field: all three
   zero means packed [batch][seq][heads][dim]. seq is the seq axis' extent. */
void sattn_ref_resolve_strides(const int64_t stride[3], int64_t seq, int64_t heads,
                               int64_t dim, int64_t out[3]);
/* heads_kv, head_dim_v and scale with their zero defaults applied. */
int64_t sattn_ref_heads_kv(const sattn_params *p);
int64_t sattn_ref_head_dim_v(const sattn_params *p);
double sattn_ref_scale(const sattn_params *p);
/* Rows of sequence b in the q (resp. kv) tensor: the cu_seqlens difference, or
   seq_q (seq_kv). The valid length (seqlens_* if given, else this) is <= it. */
int64_t sattn_ref_rows_q(const sattn_params *p, int64_t b);
int64_t sattn_ref_rows_kv(const sattn_params *p, int64_t b);
int64_t sattn_ref_len_q(const sattn_params *p, int64_t b);
int64_t sattn_ref_len_kv(const sattn_params *p, int64_t b);
/* Index of lse(b, h, i) in the library's lse layout, and the lse array's length. */
int64_t sattn_ref_lse_index(const sattn_params *p, int64_t b, int64_t h, int64_t i);
int64_t sattn_ref_lse_count(const sattn_params *p);

#ifdef __cplusplus
}
#endif

#endif /* SATTN_REF_H */
