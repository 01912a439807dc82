/* sattn: fused scaled-dot-product self-attention, forward and backward, on the CPU.
 *
 * The one public header. The contract it implements is API.md in the project's
 * shared documents; every semantic rule is repeated here, next to what it governs.
 *
 * ---- the computation ----
 *
 * For sequence b, query row i, key row j (both counted from the start of that
 * sequence, also in packed variable-length batches), query head h and its kv head
 * hk = h / (heads_q / heads_kv):
 *
 *     s = scale * dot(q[b,i,h,:], k[b,j,hk,:])
 *     if softcap > 0:     s = softcap * tanh(s / softcap)
 *     if alibi_slopes:    s -= alibi_slopes[h] * |i + len_kv - len_q - j|
 *     if bias:            s += bias[b,h,i,j]
 *     masked if: the causal rule fails, the window fails, mask[b,h,i,j] == 0,
 *                bias[b,h,i,j] == -INFINITY, or j >= len_kv
 *     P[i,j]     = softmax over the unmasked j of s
 *     out[b,i,h] = sum_j dropout(P[i,j]) * v[b,j,hk,:]
 *     lse[b,h,i] = log(sum_j exp(s)) over the unmasked j (natural log)
 *
 * Masked keys never reach an output: NaN or Inf stored in a masked key or value
 * row, or in a padding row, does not leak. A row with every key masked gives
 * out = 0, lse = -INFINITY and zero gradient, never NaN.
 *
 * Memory: the forward and backward walk query blocks x key blocks with an online
 * softmax and never hold a seq_q x seq_kv matrix. Beyond a few tiles per thread, the
 * forward packs K and V into f32 panels of at most 48 MiB, and the backward keeps
 * batch * heads_q * seq_q floats plus, per thread, at most 24 MiB of one kv head's
 * query-side panels.
 */
#ifndef SATTN_H
#define SATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SATTN_VERSION_MAJOR 0
#define SATTN_VERSION_MINOR 1
#define SATTN_VERSION_PATCH 0

#if defined(_WIN32) && defined(SATTN_SHARED_BUILD)
#define SATTN_API __declspec(dllexport)
#elif defined(__GNUC__)
#define SATTN_API __attribute__((visibility("default")))
#else
#define SATTN_API
#endif

/* ---- types ---- */

typedef enum {
    SATTN_OK = 0,
    SATTN_ERR_INVALID = -1,      /* a bad argument; sattn_last_error() says which */
    SATTN_ERR_NOMEM = -2,        /* scratch memory could not be allocated; no output touched */
    SATTN_ERR_UNSUPPORTED = -3,  /* valid, but not built in (e.g. a dtype on a CPU without it) */
} sattn_status;

/* Storage type of q, k, v, out, dout, dq, dk, dv. The math is f32 whatever the
   storage; f16 is IEEE binary16, bf16 the upper half of an f32. Stores round to
   nearest even. lse, bias and alibi_slopes are always f32. */
typedef enum { SATTN_F32 = 0, SATTN_F16 = 1, SATTN_BF16 = 2 } sattn_dtype;

/* With d = i + len_kv - len_q (the diagonal aligned to the bottom-right corner):
   TOP_LEFT:     query i sees keys j <= i          (PyTorch is_causal)
   BOTTOM_RIGHT: query i sees keys j <= d          (FlashAttention, KV-cache decoding)
   With len_q > len_kv, BOTTOM_RIGHT leaves the first len_q - len_kv rows fully masked. */
typedef enum {
    SATTN_CAUSAL_NONE = 0,
    SATTN_CAUSAL_TOP_LEFT = 1,
    SATTN_CAUSAL_BOTTOM_RIGHT = 2,
} sattn_causal;

/* Every field's zero means "off" or "default": a zero-initialised struct with only
   the shape filled in is plain attention over packed [batch][seq][head][dim] f32. */
typedef struct sattn_params {
    /* ---- shape ----
       batch, heads_q, head_dim >= 1; seq_q, seq_kv >= 0 (0: nothing to attend).
       heads_kv: divides heads_q (MHA, GQA, MQA); 0 means heads_q.
       head_dim_v: head dim of v, out, dout, dv; 0 means head_dim.
       With cu_seqlens_*, seq_q / seq_kv are the largest sequence lengths. */
    int64_t batch, seq_q, seq_kv, heads_q, heads_kv, head_dim, head_dim_v;
    sattn_dtype dtype;

    /* ---- layout ----
       Element strides of the (batch, seq, head) axes; the dim axis is contiguous.
       All three zero means packed [batch][seq][head][dim] (BSHD); BHSD is
       {heads*seq*dim, dim, seq*dim}. Strides are >= 0; a 0 stride of an input
       broadcasts that axis. q_stride/k_stride/v_stride also lay out dq/dk/dv in the
       backward, and o_stride lays out out and dout: tensors written must not
       overlap themselves (checked). With cu_seqlens_* the batch stride is unused. */
    int64_t q_stride[3], k_stride[3], v_stride[3], o_stride[3];

    float scale;                 /* finite; 0 means 1/sqrt(head_dim) */

    /* ---- masking ----
       Every rule applies at once; a key is attended only if all allow it. */
    sattn_causal causal;
    /* Sliding window around d = i + len_kv - len_q: with window_left > 0 keys
       j >= d - window_left, with window_right > 0 keys j <= d + window_right.
       <= 0 = unbounded on that side. A local causal model (a 4096-token window) is
       BOTTOM_RIGHT plus window_left = 4096. */
    int64_t window_left, window_right;
    /* [batch] valid queries per sequence, each in [0, seq_q] (or in [0, that
       sequence's cu_seqlens_q length]). Rows i >= seqlens_q[b] are written as zeros
       with lse = -INFINITY, and get zero gradient. NULL: every row is valid. */
    const int32_t *seqlens_q;
    /* [batch] valid keys per sequence (key padding), each in [0, seq_kv] (or the
       cu_seqlens_kv length). NULL: all keys valid. */
    const int32_t *seqlens_kv;
    /* [batch+1] packed variable-length batch: sequence b occupies rows
       cu_seqlens[b] .. cu_seqlens[b+1]-1 of the seq axis of q (resp. k, v).
       Non-decreasing, cu[0] >= 0, each length <= seq_q (resp. seq_kv). With
       cu_seqlens_q the lse is laid out [heads_q][total_q], total_q = cu_seqlens_q[batch]
       (row cu_seqlens_q[b] + i); otherwise [batch][heads_q][seq_q]. NULL: not packed. */
    const int32_t *cu_seqlens_q;
    const int32_t *cu_seqlens_kv;
    /* Additive f32 bias over (batch, head_q, q, kv), element bias_stride[] apart on
       each axis; a 0 stride broadcasts that axis (so all four 0 is one scalar).
       -INFINITY masks. NULL: no bias. */
    const float *bias;
    int64_t bias_stride[4];
    /* Boolean mask over (batch, head_q, q, kv): nonzero = may attend. Strides as for
       bias. NULL: no mask. */
    const uint8_t *mask;
    int64_t mask_stride[4];
    const float *alibi_slopes;   /* [heads_q] finite slopes, or NULL */
    float softcap;               /* >= 0, finite; 0 = off */

    /* ---- dropout ----
       dropout_p in [0, 1). A kept weight is scaled by 1/(1 - dropout_p); lse is of
       the weights before dropout. The keep decision is a pure function of
       (seed, b, h, i, j), with b the sequence, h the query head, i and j counted
       within the sequence:
           r = Philox4x32-10(counter = {j >> 2, i, h, b}, key = {seed & 0xffffffff, seed >> 32})
           u = (float)(r[j & 3] >> 8) * 0x1p-24f     (exact, in [0, 1))
           kept iff u >= dropout_p
       so the backward regenerates the forward's mask, and any implementation can
       reproduce it. */
    float dropout_p;
    uint64_t seed;
} sattn_params;

/* ---- functions ---- */

/* out = attention(q, k, v); lse = per-row log-sum-exp of the scores.
     q   (batch, seq_q, heads_q, head_dim)      strides q_stride
     k   (batch, seq_kv, heads_kv, head_dim)    strides k_stride
     v   (batch, seq_kv, heads_kv, head_dim_v)  strides v_stride
     out (batch, seq_q, heads_q, head_dim_v)    strides o_stride, written for every valid
                                                (b, i, h) including padding rows
     lse f32 (batch, heads_q, seq_q) packed, or [heads_q][total_q] with cu_seqlens_q; may be NULL
   q, k, v, out may be NULL only when the sizes make them empty.
   Returns SATTN_OK, or an error with nothing written. */
SATTN_API sattn_status sattn_forward(const sattn_params *p,
                                     const void *q, const void *k, const void *v,
                                     void *out, float *lse);

/* dq, dk, dv = gradients of sum(out * dout) with respect to q, k, v.
   Takes the forward's out and lse (required) and the same params; dout has the
   layout of out, dq/dk/dv the layouts of q/k/v, and all three are overwritten
   (rows outside every sequence's valid range get zeros). With GQA, dk/dv sum over
   the query heads that share a kv head. With dropout it regenerates the forward's
   mask from the seed. Deterministic: no float atomics, fixed reduction order. */
SATTN_API sattn_status sattn_backward(const sattn_params *p,
                                      const void *q, const void *k, const void *v,
                                      const void *out, const float *lse, const void *dout,
                                      void *dq, void *dk, void *dv);

/* The message of this thread's last failure ("" if none yet). Valid until this
   thread's next sattn call. */
SATTN_API const char *sattn_last_error(void);

/* Threads used by later calls; 0 (or negative) = every core. Results do not depend
   on it: the same inputs give the same bits for any thread count. */
SATTN_API void sattn_set_num_threads(int n);

/* The thread count the next call will use. */
SATTN_API int sattn_get_num_threads(void);

/* "MAJOR.MINOR.PATCH". */
SATTN_API const char *sattn_version(void);

/* Name of the kernel set chosen for this CPU ("generic", "avx2", "avx512"). */
SATTN_API const char *sattn_isa(void);

#ifdef __cplusplus
}
#endif

#endif /* SATTN_H */
