/* Internal declarations shared by the library's translation units.
 *
 * Data flow: sattn_forward / sattn_backward (forward.c, backward.c) call
 * sattn__prepare (check.c) once, which validates every argument and resolves the
 * params and the kernel table (kernels/dispatch.c) into a sattn__problem; they then
 * walk the tiles (decode.c for few query rows), calling sattn__tile_* (tile.c) for the
 * score rules and the problem's kernel table for the arithmetic.
 */
#ifndef SATTN_INTERNAL_H
#define SATTN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sattn.h"

/* Tile sizes: query rows and key rows per block. Per-thread scratch is
   O((BQ + BK) * head_dim + BQ * BK) floats. */
#define SATTN__BQ 64
#define SATTN__BK 64
/* Rows per band of a partially masked tile: each band is computed only up to the last
   key its last row sees (sattn__band_keys), which on the diagonal tile of a causal mask
   leaves out 3/8 of the products (BENCHMARKS.md, "Constants and their measurements"). */
#define SATTN__BAND 16
/* How many rows ahead the strided row loads (sattn__load_rows) prefetch. */
#define SATTN__PREFETCH_ROWS 8

/* Largest head_dim / head_dim_v accepted; keeps per-thread scratch bounded. */
#define SATTN__MAX_HEAD_DIM 4096

/* Largest seq_q, seq_kv, batch, heads (and their products where they size a tensor). */
#define SATTN__MAX_EXTENT INT32_MAX
/* A window side this wide spans every key of every row: |d| <= 2 * SATTN__MAX_EXTENT. */
#define SATTN__WINDOW_MAX ((int64_t)4 * SATTN__MAX_EXTENT)

/* ---- overflow-checked sizes ---- */

/* *r = a * b and a + b; 0 if the result does not fit in int64 (then *r is unspecified). */
static inline int sattn__mul_ok(int64_t a, int64_t b, int64_t *r)
{
#if defined(__GNUC__)
    return !__builtin_mul_overflow(a, b, r);
#else
    if (a != 0 && (b > INT64_MAX / (a < 0 ? -a : a) || b < -(INT64_MAX / (a < 0 ? -a : a)))) return 0;
    *r = a * b;
    return 1;
#endif
}
static inline int sattn__add_ok(int64_t a, int64_t b, int64_t *r)
{
#if defined(__GNUC__)
    return !__builtin_add_overflow(a, b, r);
#else
    if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b)) return 0;
    *r = a + b;
    return 1;
#endif
}

/* ---- errors (sattn.c) ---- */

/* Records a printf-style message for sattn_last_error() and returns SATTN_ERR_INVALID. */
sattn_status sattn__fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
sattn_status sattn__fail_nomem(size_t bytes);

/* ---- threads (sattn.c) ----
   A library runs inside other programs, often on machines with other work. The
   configured count (sattn_set_num_threads, else OpenMP's default, which honours
   OMP_NUM_THREADS) is an upper bound; a call uses one thread when its work is small
   (a parallel region costs microseconds to start, and far more when a core is busy),
   and each parallel region measures how long its threads waited for a core (a late
   start, or time holding work without running): when two regions in a row lost over a
   sixth of their time that way, calls smaller than SATTN__LARGE_WORK run on one thread
   for SATTN__BACKOFF_NS (doubling while it persists), so that a busy peer process is
   not made to share its core, nor we to wait on it. Results never depend on the count. Measured in BENCHMARKS.md (bench/shared_machine.c). */

/* The configured thread count (>= 1). */
int sattn__threads(void);
/* Work in flops (or the equivalent): below SMALL one thread; above LARGE threads even
   while the machine looks busy (a region that long pays for a late thread). */
#define SATTN__SMALL_WORK 1.5e6
#define SATTN__LARGE_WORK 2.0e9
#define SATTN__BACKOFF_NS 200000000 /* 0.2 s */
#define SATTN__LOST_NS 500000       /* 0.5 ms */
#define SATTN__BACKOFF_DOUBLINGS 4  /* at most 16 * 0.2 s between looks */
/* The thread count for a call of that much work spread over that many items. */
int sattn__threads_for(double work, int64_t items);
/* The same for a memory-bound loop over `elements` (conversions, copies, sums): such a
   loop moves a few elements per nanosecond, a tenth of the flop rate, so one element
   counts as ten flops. */
static inline int sattn__threads_elementwise(double elements, int64_t items)
{
    return sattn__threads_for(10.0 * elements, items);
}

/* One parallel region's measure: begin before it, enter/leave in each thread around its
   work, end after it. With threads <= 1 all of them do nothing. */
#define SATTN__PAR_MAX 64
typedef struct sattn__par {
    int threads;
    int64_t t0;
    int64_t lost[SATTN__PAR_MAX]; /* ns, per thread */
} sattn__par;
typedef struct sattn__par_mark {
    int64_t wall, cpu;
} sattn__par_mark;
void sattn__par_begin(sattn__par *p, int threads);
void sattn__par_enter(const sattn__par *p, sattn__par_mark *m);
void sattn__par_leave(sattn__par *p, const sattn__par_mark *m);
void sattn__par_end(const sattn__par *p);

/* OpenMP when built with it; the pragmas vanish otherwise. */
#ifdef _OPENMP
#include <omp.h>
#define SATTN__OMP(x) _Pragma(#x)
static inline int sattn__thread_id(void) { return omp_get_thread_num(); }
#else
#define SATTN__OMP(x)
static inline int sattn__thread_id(void) { return 0; }
#endif

/* Per-thread scratch carved from one allocation made before the parallel region:
   thread t owns floats [t * per_thread, (t + 1) * per_thread), 64-byte aligned.
   Returns NULL (and sets the NOMEM message) on failure. */
float *sattn__scratch_alloc(size_t per_thread, int threads, size_t *stride);
void sattn__scratch_free(float *scratch);

/* The next n floats of a thread's scratch, at offset *off from base, keeping 64-byte
   alignment; *off advances past them. With base NULL it only measures (returns NULL),
   so one layout function gives both the pieces and the size to allocate. */
static inline float *sattn__carve(float *base, size_t *off, size_t n)
{
    float *r = base ? base + *off : NULL;
    *off += (n + 15) & ~(size_t)15;
    return r;
}

/* ---- the resolved problem (check.c) ---- */

/* Everything the kernels and the score rules read, resolved from the user's params once
   (the params themselves are not kept): shapes, strides, rules and the kernel table. */
struct sattn__kernels;
typedef struct sattn__problem {
    const struct sattn__kernels *kt;        /* the kernel table of this call (dispatch.c) */
    int64_t batch, seq_q, seq_kv, heads_q, heads_kv, group, head_dim, head_dim_v;
    sattn_dtype dtype;
    size_t elem_size;                       /* bytes of one stored element */
    int64_t qs[3], ks[3], vs[3], os[3];     /* resolved (batch, seq, head) strides */
    float scale;
    float softcap;
    float dropout_p;
    float dropout_scale;                    /* 1 / (1 - dropout_p) */
    uint32_t dropout_threshold;             /* kept iff (r >> 8) >= threshold (see philox.h) */
    int64_t total_q;                        /* rows of the lse's seq axis */
    /* The window's sides, 0 = unbounded, clamped to SATTN__WINDOW_MAX: both sequences
       are at most SATTN__MAX_EXTENT long, so a wider side bounds nothing, and d +- w
       stays far from int64 overflow. */
    int64_t window_left, window_right;
    int has_score_mods;                     /* softcap, alibi, bias or mask present */
    int bf16_products;                      /* SATTN_PRODUCTS_BF16 asked for, bf16 storage, and kt->gemm_dp pays */
    sattn_causal causal;
    uint64_t seed;                          /* dropout's Philox key */
    const float *alibi_slopes;              /* (heads_q) of the tensors, or NULL */
    const float *bias;                      /* as in sattn_params, or NULL */
    int64_t bias_stride[4];
    const uint8_t *mask;
    int64_t mask_stride[4];
    const int32_t *seqlens_q, *seqlens_kv;  /* valid lengths per sequence, or NULL */
    const int32_t *cu_seqlens_q, *cu_seqlens_kv; /* packed sequences' offsets, or NULL */
    /* A part of a longer problem (sattn_forward_part): local query row 0 is global row
       pos_q, local key 0 global key pos_kv, and the whole sequences are glob_seq_q /
       glob_seq_kv long (or glob_seqlens_*[b]). part = 0 and the rest 0 otherwise. */
    int part;
    int64_t pos_q, pos_kv, glob_seq_q, glob_seq_kv;
    const int32_t *glob_seqlens_q, *glob_seqlens_kv;
    int64_t head_off; /* query head h is head h + head_off for alibi, bias, mask, dropout */
} sattn__problem;

/* One sequence of the batch, resolved. Row i, head h of this sequence in q starts at
   element q_batch * qs[0] + (q_row0 + i) * qs[1] + h * qs[2]; likewise for k, v. */
typedef struct sattn__seq {
    int64_t b;
    int64_t len_q, len_kv;     /* valid query / key rows */
    int64_t rows_q, rows_kv;   /* rows this sequence owns in the tensors (>= len) */
    int64_t q_row0, kv_row0;   /* first row on the seq axis (cu_seqlens) or 0 */
    int64_t q_batch, kv_batch; /* index on the batch axis: b, or 0 with cu_seqlens */
    int64_t lse_row0;          /* lse[h * lse_hstride + lse_row0 + i] */
    int64_t lse_hstride;
    /* Positions (sattn_forward_part): local row i is query i + pos_q of a sequence whose
       valid lengths are diag_q, diag_kv (what the bottom-right diagonal and ALiBi
       measure from); local key j is key j + pos_kv. 0, len_q, 0, len_kv otherwise. */
    int64_t pos_q, pos_kv, diag_q, diag_kv;
} sattn__seq;

/* The bottom-right diagonal of local row i in local key coordinates:
   (i + pos_q) + diag_kv - diag_q - pos_kv. */
static inline int64_t sattn__diag(const sattn__seq *s, int64_t i)
{
    return i + s->pos_q + s->diag_kv - s->diag_q - s->pos_kv;
}

enum { SATTN__FORWARD = 0, SATTN__BACKWARD = 1, SATTN__WEIGHTS = 2 };

/* Validates every argument of a forward (which = SATTN__FORWARD) or backward call and
   fills *prob. SATTN__WEIGHTS (sattn_attention_weights) reads q, k and lse only: it
   needs no v or out (pass NULL) and writes nothing through o_stride.
   Returns SATTN_OK or SATTN_ERR_INVALID with the message set. */
sattn_status sattn__prepare(sattn__problem *prob, const sattn_params *p, int which,
                            const void *q, const void *k, const void *v, const void *out,
                            const float *lse, const void *dout,
                            const void *dq, const void *dk, const void *dv);

/* sattn__prepare for a part (sattn_forward_part): checks part and the whole problem p,
   then prepares the local problem, whose params it writes into *local.
   cu_seqlens give SATTN_ERR_UNSUPPORTED. */
sattn_status sattn__prepare_part(sattn__problem *prob, sattn_params *local, const sattn_params *p,
                                 const sattn_part *part, int which, const void *q, const void *k,
                                 const void *v, const void *out, const float *lse, const void *dout,
                                 const void *dq, const void *dk, const void *dv);

void sattn__seq_info(const sattn__problem *prob, int64_t b, sattn__seq *s);

/* out = the element strides of (batch, seq, head) given in (in), or, when in is NULL or
   all zero, those of packed [batch][seq][head][dim]. A negative stride is an error
   naming name[axis]. */
sattn_status sattn__resolve_strides(const char *name, const int64_t in[3], int64_t out[3], int64_t seq,
                                    int64_t heads, int64_t dim);

/* Element offset of row i, head h of sequence s in a q/out-like (q_side) or k/v-like tensor. */
static inline int64_t sattn__q_elem(const sattn__seq *s, const int64_t st[3], int64_t i, int64_t h)
{
    return s->q_batch * st[0] + (s->q_row0 + i) * st[1] + h * st[2];
}
static inline int64_t sattn__kv_elem(const sattn__seq *s, const int64_t st[3], int64_t j, int64_t h)
{
    return s->kv_batch * st[0] + (s->kv_row0 + j) * st[1] + h * st[2];
}

/* ---- tiles: the score rules (tile.c) ---- */

/* Key range [lo, hi) that query row i may see under the causal and window rules
   (hi <= lo means none), clipped to [0, len_kv). */
void sattn__row_range(const sattn__problem *prob, const sattn__seq *s, int64_t i,
                      int64_t *lo, int64_t *hi);

/* Query blocks x key blocks: which part of the tile the causal/window rules leave. */
typedef enum { SATTN__TILE_EMPTY = 0, SATTN__TILE_PARTIAL = 1, SATTN__TILE_FULL = 2 } sattn__tile_kind;
sattn__tile_kind sattn__tile_classify(const sattn__problem *prob, const sattn__seq *s,
                                      int64_t i0, int64_t mq, int64_t j0, int64_t nk);
/* Keys j0 .. j0+n-1 of the tile j0 .. j0+nk-1 that rows i0 .. i0+mq-1 may see (up to the
   last key of the last row; 0 if they see none): a band of a partial tile. */
int sattn__band_keys(const sattn__problem *prob, const sattn__seq *s, int64_t i0, int64_t mq, int64_t j0,
                     int nk);

/* Applies softcap, ALiBi, bias and every mask to the scaled scores S[mq][nk] (row
   stride lds) of rows i0.., keys j0.. of head h; masked scores become -INFINITY.
   If tanh_out is not NULL (backward with softcap) it receives tanh(s / softcap). */
void sattn__tile_scores(const sattn__problem *prob, const sattn__seq *s, int64_t h,
                        int64_t i0, int mq, int64_t j0, int nk, sattn__tile_kind kind,
                        float *S, int lds, float *tanh_out);

/* Z[mq][nk] = dropout_scale where kept, 0 where dropped. */
void sattn__tile_dropout(const sattn__problem *prob, const sattn__seq *s, int64_t h,
                         int64_t i0, int mq, int64_t j0, int nk, float *Z, int ldz);

/* P[r][c] *= Z[r][c] with Z (row stride ldp) filled as sattn__tile_dropout does. */
void sattn__tile_dropout_apply(const sattn__problem *prob, const sattn__seq *s, int64_t h, int64_t i0,
                               int mq, int64_t j0, int nk, float *P, int ldp, float *Z);

/* ---- storage: strided rows of f32/f16/bf16 <-> contiguous f32 tiles (tile.c), with
   the call's kernel table ---- */

/* dst[r][c] = scale * src[r * row_stride + c] for r < rows, c < cols. */
void sattn__load_rows(const struct sattn__kernels *kt, float *dst, int ld, const void *src, int64_t row_stride, int rows, int cols,
                      sattn_dtype dtype, float scale);
/* 1 if any of x[r][c] (r < rows, c < cols, row stride ld) is NaN or Inf, else 0. */
int sattn__rows_nonfinite(const float *x, int ld, int rows, int cols);
/* The transpose: dst[c][r] = src[r * row_stride + c] (row stride of dst: ld). */
void sattn__load_rows_t(const struct sattn__kernels *kt, float *dst, int ld, const void *src, int64_t row_stride, int rows, int cols,
                        sattn_dtype dtype);
/* dst[r * row_stride + c] = scale * src[r][c], rounded to dtype. */
void sattn__store_rows(const struct sattn__kernels *kt, void *dst, int64_t row_stride, const float *src, int ld, int rows, int cols,
                       sattn_dtype dtype, float scale);
/* dst[r * row_stride + c] = 0 for r < rows, c < cols. */
void sattn__zero_rows(void *dst, int64_t row_stride, int rows, int cols, sattn_dtype dtype);

/* Asks for rows of bytes_per_row bytes, stride bytes apart, ahead of their use, into L2
   (what is asked for runs tiles ahead: more than L1 holds). Rows a head apart in memory
   (BSHD: head_dim values every heads x head_dim) are not followed by the hardware's
   prefetchers, which then leave each row's first load waiting on memory. A prefetch
   never faults, whatever it points at. */
static inline void sattn__prefetch_rows(const char *p, int64_t stride, int rows, int64_t bytes_per_row)
{
#if defined(__GNUC__)
    for (int r = 0; r < rows; r++)
        for (int64_t b = 0; b < bytes_per_row; b += 64) __builtin_prefetch(p + r * stride + b, 0, 2);
#else
    (void)p, (void)stride, (void)rows, (void)bytes_per_row;
#endif
}

/* Reads one byte of every cache line of p[0, bytes): demand loads, so that all their
   misses go to memory at once before a kernel works through the block at its own pace
   (the decode path: see forward.c). */
static inline void sattn__touch(const char *p, int64_t bytes)
{
    const volatile unsigned char *m = (const volatile unsigned char *)p;
    unsigned acc = 0;
    for (int64_t b = 0; b < bytes; b += 64) acc |= m[b];
    acc |= m[bytes - 1]; /* the last line of a block that does not start on one */
#if defined(__GNUC__)
    __asm__ volatile("" : : "r"(acc));
#else
    static volatile unsigned sink;
    sink = acc;
#endif
}

static inline const char *sattn__at(const void *base, int64_t elem, size_t elem_size)
{
    return (const char *)base + elem * (int64_t)elem_size;
}

/* ---- the forward's ends (forward.c) and the decode path (decode.c) ---- */

/* Rows i0 .. i0+mq-1 of head h of sequence s: the first mv from their accumulators,
   out = o / sum and lse = mx + log(sum) (o is normalised in place); the rest, padding,
   zeros and -inf. lse may be NULL. */
void sattn__finish_rows(const sattn__problem *pr, void *out, float *lse, const sattn__seq *s, int64_t h, int64_t i0,
                        int mv, int mq, float *o, const float *mx, const float *sum);

/* The forward when the query rows of a kv head's group fit one block (decode); work is
   the call's flops, for its thread count. */
sattn_status sattn__decode(const sattn__problem *pr, const void *q, const void *k, const void *v, void *out,
                           float *lse, double work);

/* ---- the KV cache's step, for sattn_mha_decode (kvcache.c) ---- */

/* Every check that appending n tokens and then sattn_kvcache_attend(c, p, ...) would
   make, without changing the cache: a decode step is refused before it appends. */
sattn_status sattn__kvcache_check_step(const sattn_kvcache *c, const sattn_params *p, int64_t n);
/* The counters of a cache before an append, and the undo of that append of n tokens
   (after a failure later in the step: out of memory). Exact unless the append slid a
   window; then the next append still sees every token it needs. */
typedef struct { int64_t stored, length, last_n; } sattn__kv_mark;
void sattn__kvcache_mark(const sattn_kvcache *c, sattn__kv_mark *m);
void sattn__kvcache_rollback(sattn_kvcache *c, const sattn__kv_mark *m, int64_t n);

#endif /* SATTN_INTERNAL_H */
