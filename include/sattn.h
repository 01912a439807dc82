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
#define SATTN_VERSION_MINOR 2
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

/* Which products the forward may use (sattn_params.products).
   F32: every product in f32 from the stored values (the default).
   BF16: opt-in, for bf16 storage on CPUs with bf16 dot-product instructions
     (AVX512-BF16; sattn_products_run says whether this CPU runs them). Q·Kᵀ then
     multiplies the stored bf16 values directly: each product is exact in f32, as in
     the F32 mode, and the sums are f32 (pairs of products are added with two roundings;
     subnormal inputs and sums are flushed to 0). The softmax weights are rounded to
     bf16 before P·V, a relative error of at most 2^-8 per weight (8 significant bits), so
         |out - out_F32| <= 2^-8 * sum_j P[i,j] |v[j,:]|  (+ the f32 sums' rounding)
     i.e. at most 2^-8 of the largest |v| the row attends to. lse is unchanged (the
     weights' f32 sum). Elsewhere (f32 or f16 storage, a CPU without bf16 dot products,
     sattn_backward, sattn_attention_weights, a single query block of decoding, which
     already multiplies bf16 Q·Kᵀ directly where it pays) the F32 products run. */
typedef enum { SATTN_PRODUCTS_F32 = 0, SATTN_PRODUCTS_BF16 = 1 } sattn_products;

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

    sattn_products products;     /* see sattn_products; 0 = F32 */
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

/* ---- a part of a longer problem ----

   For callers that split one attention across calls or machines (sequence
   parallelism: sattn_sp.h; chunked prefill): p describes the WHOLE problem (seq_q and
   seq_kv are the full lengths, seqlens_q / seqlens_kv the full valid lengths), and every
   position rule (causal, window, ALiBi, bias and mask indices, dropout's Philox
   counters) is applied at global positions. The tensors hold only the part's rows:
     q, out, dout, dq  rows q_start .. q_start + q_rows - 1 of each sequence
     k, v, dk, dv      rows kv_start .. kv_start + kv_rows - 1
   laid out by p's strides (all zero: packed [batch][q_rows or kv_rows][heads][dim]);
   lse is packed [batch][heads_q][q_rows]. bias and mask, when given, cover the whole
   problem and are read at global (i, j) (and head h + head_offset).
   Forward: out and lse are those of the part's queries over the part's keys only
   (softmax over those keys): partial results over disjoint key ranges merge exactly as
       lse = log(sum_k exp(lse_k)),  out = sum_k exp(lse_k - lse) out_k
   (a part with every key masked gives lse = -INFINITY and out = 0).
   Backward: given the merged out and lse of the whole rows, dq is these keys' share of
   the query gradient and dk, dv this query range's share of the key and value
   gradients; the shares over a partition sum to the gradients of the whole problem.
   Valid query rows past a sequence's length get zeros, as in sattn_forward.
   cu_seqlens_q / cu_seqlens_kv: SATTN_ERR_UNSUPPORTED (a packed batch has no single
   global position per row). */
typedef struct sattn_part {
    int64_t q_start, q_rows;   /* 0 <= q_start, q_start + q_rows <= seq_q */
    int64_t kv_start, kv_rows; /* 0 <= kv_start, kv_start + kv_rows <= seq_kv */
    /* >= 0: the tensors' query head h is head h + head_offset of the whole problem for
       the rules that name a head (alibi_slopes[], the head axis of bias and mask, the
       dropout counter), for callers that split the heads too; heads_q and heads_kv in
       p count the tensors' heads. 0: the tensors hold every head. */
    int64_t head_offset;
} sattn_part;

SATTN_API sattn_status sattn_forward_part(const sattn_params *p, const sattn_part *part,
                                          const void *q, const void *k, const void *v,
                                          void *out, float *lse);
SATTN_API sattn_status sattn_backward_part(const sattn_params *p, const sattn_part *part,
                                           const void *q, const void *k, const void *v,
                                           const void *out, const float *lse, const void *dout,
                                           void *dq, void *dk, void *dv);

/* ---- attention weights, recomputed ----

   w = the softmax weights P[i,j] of the rule above (before dropout), recomputed
   exactly from q, k and the forward's lse, for query rows row0 .. row0+rows-1 of
   every sequence: what a fused forward never stores, on request.
     q, k, lse  as given to / returned by sattn_forward with the same params
     w          f32, (batch, heads_q, rows, seq_kv) packed; with average != 0 the mean
                over the query heads, (batch, rows, seq_kv)
   Masked keys, keys j >= len_kv and rows i >= len_q get 0 (a fully masked row is all
   0). 0 <= row0, rows >= 1, row0 + rows <= seq_q. */
SATTN_API sattn_status sattn_attention_weights(const sattn_params *p, const void *q, const void *k,
                                               const float *lse, int64_t row0, int64_t rows,
                                               int average, float *w);

/* ---- the multi-head self-attention layer ----

   y = out_proj(attention(q_proj(x), k_proj(x), v_proj(x))), as
   torch.nn.MultiheadAttention computes it for self-attention, with GQA/MQA:
     Q = x Wqᵀ + bq   (tokens, num_heads * head_dim)
     K = x Wkᵀ + bk   (tokens, num_kv_heads * head_dim)
     V = x Wvᵀ + bv   (tokens, num_kv_heads * head_dim)
     O = attention(Q, K, V) per head, heads concatenated   (tokens, num_heads * head_dim)
     y = O Woᵀ + bo   (tokens, embed_dim)
   One fused projection writes Q, K and V side by side in one row per token; the
   attention reads them there through strides, with no copy in between.

   The layer owns its parameters and their gradients (f32, one allocation each) and
   the activations its last forward saved for the backward. A layer is not safe to
   use from two threads at once; distinct layers are. */
typedef struct sattn_mha sattn_mha;

typedef struct sattn_mha_config {
    int64_t embed_dim;     /* E >= 1 */
    int64_t num_heads;     /* H >= 1 query heads */
    int64_t num_kv_heads;  /* divides H; 0 means H (MHA); 1 is MQA */
    int64_t head_dim;      /* D; 0 means E / H, which must then divide exactly */
    int bias;              /* nonzero: in_proj_bias and out_proj.bias exist */
    sattn_dtype dtype;     /* storage of x, y, dy, dx; parameters and math are f32 */
} sattn_mha_config;

/* Creates a layer with its parameters zeroed (load them with sattn_mha_set) and its
   gradients zeroed. *layer is NULL on failure. */
SATTN_API sattn_status sattn_mha_create(sattn_mha **layer, const sattn_mha_config *cfg);
SATTN_API void sattn_mha_free(sattn_mha *layer);

/* Parameters by PyTorch's names, all f32 row-major, views into one array:
     "in_proj_weight"   (H*D + 2*Hkv*D, E)   q rows, then k rows, then v rows
     "q_proj_weight"    (H*D, E)             the same rows, one projection at a time
     "k_proj_weight"    (Hkv*D, E)
     "v_proj_weight"    (Hkv*D, E)
     "in_proj_bias"     (H*D + 2*Hkv*D)      only with bias
     "out_proj.weight"  (E, H*D)
     "out_proj.bias"    (E)                  only with bias
   name NULL: every parameter, in the order above (in_proj_weight, in_proj_bias,
   out_proj.weight, out_proj.bias). The pointer stays valid for the layer's life;
   *numel (if not NULL) receives the element count. NULL for an unknown name (the
   error message says so). */
SATTN_API float *sattn_mha_param(sattn_mha *layer, const char *name, int64_t *numel);
/* The gradient of the parameter of that name, the same views into a second array.
   The backward adds to it; sattn_mha_zero_grad clears it. */
SATTN_API float *sattn_mha_grad(sattn_mha *layer, const char *name, int64_t *numel);
/* Copies numel floats into the named parameter; numel must be its size. */
SATTN_API sattn_status sattn_mha_set(sattn_mha *layer, const char *name, const float *src, int64_t numel);
SATTN_API void sattn_mha_zero_grad(sattn_mha *layer);

/* y = layer(x).
     x, y  (batch, seq, embed_dim) packed, stored as the layer's dtype; with
           opts->cu_seqlens_q, (total, embed_dim) where total = cu_seqlens_q[batch]
   opts: the masking and score fields of sattn_params (scale, causal, window_*,
   seqlens_q, seqlens_kv, cu_seqlens_q, cu_seqlens_kv, bias, mask, alibi_slopes,
   softcap, dropout_p, seed), with the meaning they have there and heads_q = H; the
   shape, dtype and stride fields must be 0 (the layer sets them). NULL: none.
   Self-attention: cu_seqlens_kv, if given, equals cu_seqlens_q. Query rows past a
   sequence's seqlens_q have attention output 0, so y there is out_proj.bias.
   Saves Q, K, V, O and the log-sum-exp for sattn_mha_backward and
   sattn_mha_attention_weights; what opts points to must stay valid until then. */
SATTN_API sattn_status sattn_mha_forward(sattn_mha *layer, const sattn_params *opts, int64_t batch,
                                         int64_t seq, const void *x, void *y);

/* Gradients of sum(y * dy) for the last forward, which must have had this batch and
   seq and the same opts: adds every parameter's gradient into sattn_mha_grad, and
   writes dx (same layout as x) unless dx is NULL. */
SATTN_API sattn_status sattn_mha_backward(sattn_mha *layer, const sattn_params *opts, int64_t batch,
                                          int64_t seq, const void *x, const void *dy, void *dx);

/* sattn_attention_weights for the last forward: w (batch, H, rows, seq), or
   (batch, rows, seq) averaged over heads. */
SATTN_API sattn_status sattn_mha_attention_weights(const sattn_mha *layer, int64_t row0, int64_t rows,
                                                   int average, float *w);

/* ---- the KV cache ----

   Keys and values of the tokens seen so far, for generation one step at a time:
   a step appends the new tokens' K and V, then attends its queries to every cached
   token with bottom-right causal alignment (new query i is token len - n + i and sees
   the tokens up to itself). Stored head-major, (batch, heads_kv, capacity, dim), in
   the cache's dtype, so each head's keys are one contiguous stream (on Linux, K and V
   buffers of 2 MiB or more ask the kernel for transparent huge pages: a step reads the
   whole cache, and fewer page walks make it faster). All sequences of
   the batch advance together. Append and reset change the cache: nothing else may
   use it meanwhile; attends may run concurrently. */
typedef struct sattn_kvcache sattn_kvcache;

typedef struct sattn_kvcache_config {
    int64_t batch, heads_kv, head_dim; /* >= 1 */
    int64_t head_dim_v;                /* 0 means head_dim */
    sattn_dtype dtype;                 /* storage of the cached K and V */
    int64_t capacity;                  /* tokens allocated at first; 0 = 256. Grows by doubling */
    /* > 0: an append past this many tokens fails, and the capacity never exceeds it;
       0 = no limit (at most INT32_MAX tokens are attended to at once). */
    int64_t max_tokens;
    /* > 0: a sliding-window model. Each query sees itself and the window - 1 tokens
       before it; older tokens are dropped: the buffer stays linear, and when an append
       does not fit, the last window - 1 tokens move to its front (capacity at least
       2 (window - 1), so that costs about one row per token). Memory is
       O(window + the largest append). 0: keep all. */
    int64_t window;
} sattn_kvcache_config;

SATTN_API sattn_status sattn_kvcache_create(sattn_kvcache **cache, const sattn_kvcache_config *cfg);
SATTN_API void sattn_kvcache_free(sattn_kvcache *cache);
/* Forgets every token (keeps the memory). */
SATTN_API void sattn_kvcache_reset(sattn_kvcache *cache);
/* The configuration the cache was created with, head_dim_v resolved and capacity the
   current one. */
SATTN_API sattn_status sattn_kvcache_get_config(const sattn_kvcache *cache, sattn_kvcache_config *cfg);
/* Tokens appended since creation or reset (including those a window dropped); 0 for
   a NULL cache. */
SATTN_API int64_t sattn_kvcache_length(const sattn_kvcache *cache);

/* Appends n >= 1 tokens: k (batch, n, heads_kv, head_dim) and v (batch, n, heads_kv,
   head_dim_v), f32, element strides k_stride / v_stride of (batch, seq, head) with
   the dim contiguous (NULL or all three 0 = packed). Converted to the cache's dtype
   (round to nearest even). On error, out of memory included, nothing is appended. */
SATTN_API sattn_status sattn_kvcache_append(sattn_kvcache *cache, int64_t n, const float *k,
                                            const int64_t k_stride[3], const float *v,
                                            const int64_t v_stride[3]);

/* out = attention of q (batch, p->seq_q, heads_q, head_dim) to the cached tokens,
   bottom-right causal (and the window of the config). p gives seq_q (the number of
   newest tokens the queries stand for: at least 1, at most the tokens of the last
   append with a window, else at most the tokens cached), heads_q (a multiple of
   heads_kv), and any of scale, softcap, alibi_slopes, q_stride, o_stride; p->dtype
   must be the cache's dtype (q and out are stored in it). p->batch, heads_kv,
   head_dim and head_dim_v are 0 or the cache's; every other field must be 0.
   lse (batch, heads_q, seq_q) may be NULL. */
SATTN_API sattn_status sattn_kvcache_attend(const sattn_kvcache *cache, const sattn_params *p,
                                            const void *q, void *out, float *lse);

/* One generation step of the layer: x (batch, n, embed_dim) are the next n tokens;
   their K and V go into the cache (made with the layer's num_kv_heads and head_dim),
   their queries attend to every cached token, and y (batch, n, embed_dim) is written.
   opts may set scale, softcap and alibi_slopes (as in sattn_mha_forward), or be NULL.
   Decoding a sequence token by token gives the outputs of one causal forward.
   Every argument is checked before the cache changes: a refused step appends nothing.
   If memory runs out after the append, the step's tokens are taken out again (with a
   window that the append slid, the cache then keeps what the next step needs, but
   sattn_kvcache_attend refuses until the next append). */
SATTN_API sattn_status sattn_mha_decode(sattn_mha *layer, sattn_kvcache *cache, const sattn_params *opts,
                                        int64_t batch, int64_t n, const void *x, void *y);

/* Which GEMM the layer's projections use: "openblas (CORE)" when a BLAS was found at
   build time, loads, and runs kernels as wide as the CPU's (AVX2, or AVX-512 on a CPU
   with it; OPENBLAS_CORETYPE=Haswell on an AVX-512 CPU does not), else "builtin (ISA)". */
SATTN_API const char *sattn_gemm_backend(void);

/* The message of this thread's last failure ("" if none yet). Valid until this
   thread's next sattn call. */
SATTN_API const char *sattn_last_error(void);

/* The most threads later calls use; 0 (or negative) = OpenMP's default, which is
   OMP_NUM_THREADS when set, else every core. Results do not depend on it: the same
   inputs give the same bits for any thread count.
   Within that bound a call uses one thread when its work is small (a few million
   flops), and, when its last parallel regions found their threads waiting for cores
   that other processes hold, one thread for calls of moderate size (under about
   2 GFLOP) for 0.2 s, then looks again (backing off up to 3.2 s while the machine
   stays busy): a library must not make a busy peer share its core, nor wait on it. */
SATTN_API void sattn_set_num_threads(int n);

/* The bound set by sattn_set_num_threads (or OpenMP's default). */
SATTN_API int sattn_get_num_threads(void);

/* The threads sattn would use now for a parallel loop of `flops` work, by the rules
   above: for a caller's own loops beside sattn's calls (the sattn program's model). */
SATTN_API int sattn_suggest_threads(double flops);

/* C = op(A) · op(B), or C += op(A) · op(B) when accumulate != 0: the layer's own f32
   GEMM (the backend sattn_gemm_backend names, on sattn's threads and thread rules),
   for a caller's layers beside the attention (a model's feed-forward).
     op(A) is M x K: A stored M x K, or K x M when trans_a != 0
     op(B) is K x N: B stored K x N, or N x K when trans_b != 0 (a PyTorch Linear's
                     (out, in) weight is B with trans_b = 1)
   All row-major; lda, ldb, ldc are the row strides as stored, each at least its
   matrix's stored column count. M, N, K >= 0; K = 0 writes zeros (or adds nothing).
   The same inputs give the same bits for any thread count. C must not overlap A or B. */
SATTN_API sattn_status sattn_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, const float *A,
                                   int64_t lda, const float *B, int64_t ldb, int accumulate, float *C,
                                   int64_t ldc);

/* "MAJOR.MINOR.PATCH". */
SATTN_API const char *sattn_version(void);

/* Name of the kernel set chosen for this CPU ("generic", "avx2", "avx512", "avx512bf16"). */
SATTN_API const char *sattn_isa(void);

/* 1 if sattn_forward with storage type dtype and products runs those products on this
   CPU (with the kernel set sattn_isa() names), 0 if it computes them in f32 instead. */
SATTN_API int sattn_products_run(sattn_dtype dtype, sattn_products products);

#ifdef __cplusplus
}
#endif

#endif /* SATTN_H */
