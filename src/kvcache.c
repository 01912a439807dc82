/* The KV cache: keys and values of the tokens seen so far, for generation one step
 * at a time.
 *
 * Storage is head-major, (batch, heads_kv, capacity, dim) in the cache's dtype, so
 * each head's keys are one contiguous stream; attend hands the stored rows to
 * sattn_forward through strides, bottom-right causal, without a copy.
 *
 * Growth: an append that does not fit doubles the capacity (at least to what it
 * needs), copying each head's rows into the new buffers; nothing changes until both
 * are allocated.
 *
 * Sliding window (window W > 0): a step's queries see at most the W - 1 tokens
 * before its first new token, so no older token is read again. The buffer stays
 * linear: new tokens go after the stored ones, and an append that does not fit first
 * moves the last min(stored, W - 1) tokens to the front. The capacity is kept at
 * least twice what such a move copies, so a move of k rows comes at most once per k
 * appended tokens: amortized one row copy per token, memory O(W + largest append).
 */
#if defined(__linux__)
#define _DEFAULT_SOURCE /* madvise under -std=c11 */
#include <sys/mman.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "sattn_internal.h"

#define SATTN__KV_DEFAULT_CAPACITY 256

struct sattn_kvcache {
    /* ---- configuration, defaults resolved ---- */
    int64_t batch, heads_kv, head_dim, head_dim_v;
    sattn_dtype dtype;
    size_t es;           /* bytes of one stored element */
    int64_t max_tokens;  /* > 0: bound on length; 0 = none */
    int64_t window;      /* > 0: sliding window; 0 = keep every token */

    /* ---- state ---- */
    int64_t capacity;    /* token rows allocated per (batch, kv head) */
    int64_t stored;      /* rows 0 .. stored-1 hold the newest tokens, oldest first */
    int64_t length;      /* tokens appended since creation or reset */
    int64_t last_n;      /* tokens of the last append; 0 before any */

    void *k;             /* (batch, heads_kv, capacity, head_dim)   dtype */
    void *v;             /* (batch, heads_kv, capacity, head_dim_v) dtype */
    /* window 1 only: 2 * capacity bytes 1, 0, 1, 0, ... (see diag_mask below) */
    uint8_t *diag;
};

#define TRY(x)                           \
    do {                                 \
        sattn_status st_ = (x);          \
        if (st_ != SATTN_OK) return st_; \
    } while (0)

/* ---- memory ---- */

/* bytes = a * b * c, 0 if it overflows. */
static size_t bytes3(int64_t a, int64_t b, int64_t c)
{
    size_t r = 1;
    int64_t f[3] = {a, b, c};
    for (int x = 0; x < 3; x++) {
        if (f[x] < 0 || (f[x] > 0 && r > SIZE_MAX / (size_t)f[x])) return 0;
        r *= (size_t)f[x];
    }
    return r;
}

#define SATTN__HUGE_PAGE ((size_t)2 << 20)

/* K or V storage, 64-byte aligned (aligned_alloc wants a size that is a multiple of the
   alignment). From 2 MiB up, on Linux, the buffer starts on a 2 MiB boundary and its
   whole 2 MiB stretches are offered transparent huge pages (madvise, before anything
   touches them; the kernel may refuse, and then nothing changes): a decode step streams
   the whole cache, and on 4 KiB pages a cold step spends its time in page walks
   (BENCHMARKS.md, "Constants and their measurements"). */
static void *alloc_kv(size_t bytes)
{
    if (bytes == 0 || bytes > SIZE_MAX - SATTN__HUGE_PAGE) return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= SATTN__HUGE_PAGE) {
        void *p = aligned_alloc(SATTN__HUGE_PAGE, (bytes + SATTN__HUGE_PAGE - 1) & ~(SATTN__HUGE_PAGE - 1));
        if (p) (void)madvise(p, bytes & ~(SATTN__HUGE_PAGE - 1), MADV_HUGEPAGE);
        return p;
    }
#endif
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}

typedef struct {
    void *k, *v;
    uint8_t *diag;
} kv_buffers;

/* Buffers for cap tokens per head. Returns SATTN_OK, or SATTN_ERR_NOMEM with
   nothing allocated. */
static sattn_status buffers_alloc(const sattn_kvcache *c, int64_t cap, kv_buffers *b)
{
    int64_t heads = c->batch * c->heads_kv;
    size_t kb = bytes3(heads, cap, c->head_dim * (int64_t)c->es);
    size_t vb = bytes3(heads, cap, c->head_dim_v * (int64_t)c->es);
    size_t db = c->window == 1 ? bytes3(2, cap, 1) : 0;
    b->k = kb ? alloc_kv(kb) : NULL;
    b->v = vb ? alloc_kv(vb) : NULL;
    b->diag = db ? malloc(db) : NULL;
    if (!b->k || !b->v || (c->window == 1 && !b->diag)) {
        free(b->k);
        free(b->v);
        free(b->diag);
        size_t want = !b->k ? kb : !b->v ? vb : db;
        return sattn__fail_nomem(want ? want : SIZE_MAX);
    }
    for (size_t x = 0; x < db; x++) b->diag[x] = (uint8_t)((x & 1) == 0);
    return SATTN_OK;
}

/* Rows [from, from + rows) of every head of src (cap src_cap) become rows [0, rows)
   of dst (cap dst_cap). src and dst may be the same buffer. */
static void move_rows(void *dst, int64_t dst_cap, const void *src, int64_t src_cap, int64_t heads,
                      int64_t from, int64_t rows, size_t row_bytes)
{
    if (rows == 0) return;
    for (int64_t h = 0; h < heads; h++)
        memmove((char *)dst + (size_t)(h * dst_cap) * row_bytes,
                (const char *)src + (size_t)(h * src_cap + from) * row_bytes, (size_t)rows * row_bytes);
}

/* Makes room for n new tokens after the newest `keep` stored ones (older ones are
   dropped): moves them to the front, growing first if needed. Changes nothing on
   failure. */
static sattn_status make_room(sattn_kvcache *c, int64_t keep, int64_t n)
{
    const int64_t heads = c->batch * c->heads_kv;
    const size_t krow = (size_t)c->head_dim * c->es, vrow = (size_t)c->head_dim_v * c->es;
    const int64_t from = c->stored - keep;
    /* with a window, capacity >= 2 * keep makes the moves amortized O(1) per token */
    int64_t target = keep + n;
    if (c->window > 0 && target < 2 * keep) target = 2 * keep;
    if (target <= c->capacity) {
        move_rows(c->k, c->capacity, c->k, c->capacity, heads, from, keep, krow);
        move_rows(c->v, c->capacity, c->v, c->capacity, heads, from, keep, vrow);
        c->stored = keep;
        return SATTN_OK;
    }
    int64_t cap = c->capacity * 2 > target ? c->capacity * 2 : target;
    /* never beyond what can be stored: keep + n <= max_tokens and <= SATTN__MAX_EXTENT */
    if (c->max_tokens > 0 && cap > c->max_tokens) cap = c->max_tokens;
    if (cap > SATTN__MAX_EXTENT) cap = SATTN__MAX_EXTENT;
    kv_buffers b;
    TRY(buffers_alloc(c, cap, &b));
    move_rows(b.k, cap, c->k, c->capacity, heads, from, keep, krow);
    move_rows(b.v, cap, c->v, c->capacity, heads, from, keep, vrow);
    free(c->k);
    free(c->v);
    free(c->diag);
    c->k = b.k, c->v = b.v, c->diag = b.diag;
    c->capacity = cap;
    c->stored = keep;
    return SATTN_OK;
}

/* ---- lifetime ---- */

static sattn_status check_config(const sattn_kvcache_config *cfg)
{
    static const char *names[3] = {"batch", "heads_kv", "head_dim"};
    const int64_t vals[3] = {cfg->batch, cfg->heads_kv, cfg->head_dim};
    const int64_t hi[3] = {SATTN__MAX_EXTENT, SATTN__MAX_EXTENT, SATTN__MAX_HEAD_DIM};
    for (int x = 0; x < 3; x++)
        if (vals[x] < 1 || vals[x] > hi[x])
            return sattn__fail("cfg->%s must be in [1, %lld] (got %lld)", names[x], (long long)hi[x],
                               (long long)vals[x]);
    if (cfg->batch * cfg->heads_kv > SATTN__MAX_EXTENT)
        return sattn__fail("cfg->batch * cfg->heads_kv must be <= %lld (got %lld)",
                           (long long)SATTN__MAX_EXTENT, (long long)(cfg->batch * cfg->heads_kv));
    if (cfg->head_dim_v < 0 || cfg->head_dim_v > SATTN__MAX_HEAD_DIM)
        return sattn__fail("cfg->head_dim_v must be in [1, %d], or 0 for head_dim (got %lld)",
                           SATTN__MAX_HEAD_DIM, (long long)cfg->head_dim_v);
    if (cfg->dtype != SATTN_F32 && cfg->dtype != SATTN_F16 && cfg->dtype != SATTN_BF16)
        return sattn__fail("cfg->dtype must be SATTN_F32, SATTN_F16 or SATTN_BF16 (got %d)",
                           (int)cfg->dtype);
    if (cfg->capacity < 0 || cfg->capacity > SATTN__MAX_EXTENT)
        return sattn__fail("cfg->capacity must be in [1, %lld], or 0 for %d (got %lld)",
                           (long long)SATTN__MAX_EXTENT, SATTN__KV_DEFAULT_CAPACITY,
                           (long long)cfg->capacity);
    if (cfg->max_tokens < 0)
        return sattn__fail("cfg->max_tokens must be >= 0, 0 for no limit (got %lld)",
                           (long long)cfg->max_tokens);
    if (cfg->window < 0)
        return sattn__fail("cfg->window must be >= 0, 0 for no window (got %lld)", (long long)cfg->window);
    return SATTN_OK;
}

sattn_status sattn_kvcache_create(sattn_kvcache **cache, const sattn_kvcache_config *cfg)
{
    if (cache == NULL) return sattn__fail("cache is NULL: it receives the new cache");
    *cache = NULL;
    if (cfg == NULL) return sattn__fail("cfg is NULL");
    TRY(check_config(cfg));

    sattn_kvcache *c = calloc(1, sizeof *c);
    if (!c) return sattn__fail_nomem(sizeof *c);
    c->batch = cfg->batch;
    c->heads_kv = cfg->heads_kv;
    c->head_dim = cfg->head_dim;
    c->head_dim_v = cfg->head_dim_v ? cfg->head_dim_v : cfg->head_dim;
    c->dtype = cfg->dtype;
    c->es = (size_t)sattn__dtype_size(cfg->dtype);
    c->max_tokens = cfg->max_tokens;
    c->window = cfg->window;
    int64_t cap = cfg->capacity ? cfg->capacity : SATTN__KV_DEFAULT_CAPACITY;
    if (c->max_tokens > 0 && cap > c->max_tokens) cap = c->max_tokens; /* never needs more */
    kv_buffers b;
    sattn_status st = buffers_alloc(c, cap, &b);
    if (st != SATTN_OK) {
        free(c);
        return st;
    }
    c->k = b.k, c->v = b.v, c->diag = b.diag;
    c->capacity = cap;
    *cache = c;
    return SATTN_OK;
}

void sattn_kvcache_free(sattn_kvcache *cache)
{
    if (!cache) return;
    free(cache->k);
    free(cache->v);
    free(cache->diag);
    free(cache);
}

void sattn_kvcache_reset(sattn_kvcache *cache)
{
    if (!cache) return;
    cache->stored = 0;
    cache->length = 0;
    cache->last_n = 0;
}

sattn_status sattn_kvcache_get_config(const sattn_kvcache *cache, sattn_kvcache_config *cfg)
{
    if (cache == NULL) return sattn__fail("cache is NULL");
    if (cfg == NULL) return sattn__fail("cfg is NULL: it receives the configuration");
    memset(cfg, 0, sizeof *cfg);
    cfg->batch = cache->batch;
    cfg->heads_kv = cache->heads_kv;
    cfg->head_dim = cache->head_dim;
    cfg->head_dim_v = cache->head_dim_v;
    cfg->dtype = cache->dtype;
    cfg->capacity = cache->capacity;
    cfg->max_tokens = cache->max_tokens;
    cfg->window = cache->window;
    return SATTN_OK;
}

int64_t sattn_kvcache_length(const sattn_kvcache *cache)
{
    if (!cache) {
        sattn__fail("cache is NULL");
        return 0;
    }
    return cache->length;
}

/* ---- append ---- */

/* Rows t = 0 .. n-1 of src (strides st) into rows row0 + t of every head of dst,
   rounded to the cache's dtype. */
static void store_tokens(const sattn_kvcache *c, void *dst, int64_t dim, const float *src,
                         const int64_t st[3], int64_t row0, int64_t n)
{
    const sattn__kernels *kt = sattn__kernels_get();
    const int64_t heads = c->batch * c->heads_kv;
    const size_t row_bytes = (size_t)dim * c->es;
    const int dt = (int)c->dtype;
    const int64_t cap = c->capacity, hkv = c->heads_kv;
    const int threads = sattn__threads_elementwise((double)heads * (double)n * (double)dim, heads);
    (void)threads; /* unused without OpenMP */
    SATTN__OMP(omp parallel for num_threads(threads) schedule(static) if (threads > 1))
    for (int64_t bh = 0; bh < heads; bh++) {
        const float *s = src + (bh / hkv) * st[0] + (bh % hkv) * st[2];
        char *d = (char *)dst + (size_t)(bh * cap + row0) * row_bytes;
        for (int64_t t = 0; t < n; t++) kt->store_row(d + (size_t)t * row_bytes, s + t * st[1], (int)dim, dt, 1.0f);
    }
}

/* The append's checks of n against the cache's bounds; *after = the rows stored once
   the n tokens are in (an append that does not fit keeps only the window's last
   W - 1 tokens). */
static sattn_status check_append_n(const sattn_kvcache *c, int64_t n, int64_t *after)
{
    if (n < 1 || n > SATTN__MAX_EXTENT)
        return sattn__fail("n must be in [1, %lld] (got %lld)", (long long)SATTN__MAX_EXTENT, (long long)n);
    if (c->max_tokens > 0 && n > c->max_tokens - c->length)
        return sattn__fail("max_tokens is %lld: the cache has %lld tokens and cannot take %lld more",
                           (long long)c->max_tokens, (long long)c->length, (long long)n);
    int64_t keep = c->stored;
    if (c->stored + n > c->capacity && c->window > 0 && keep > c->window - 1) keep = c->window - 1;
    if (keep + n > SATTN__MAX_EXTENT)
        return sattn__fail("n: %lld more tokens would make %lld to attend to, over %lld",
                           (long long)n, (long long)(keep + n), (long long)SATTN__MAX_EXTENT);
    *after = keep + n;
    return SATTN_OK;
}

sattn_status sattn_kvcache_append(sattn_kvcache *cache, int64_t n, const float *k,
                                  const int64_t k_stride[3], const float *v, const int64_t v_stride[3])
{
    sattn_kvcache *c = cache;
    if (c == NULL) return sattn__fail("cache is NULL");
    int64_t after = 0;
    TRY(check_append_n(c, n, &after));
    if (k == NULL) return sattn__fail("k is NULL");
    if (v == NULL) return sattn__fail("v is NULL");
    int64_t ks[3], vs[3];
    TRY(sattn__resolve_strides("k_stride", k_stride, ks, n, c->heads_kv, c->head_dim));
    TRY(sattn__resolve_strides("v_stride", v_stride, vs, n, c->heads_kv, c->head_dim_v));
    if (c->stored + n > c->capacity) TRY(make_room(c, after - n, n));
    store_tokens(c, c->k, c->head_dim, k, ks, c->stored, n);
    store_tokens(c, c->v, c->head_dim_v, v, vs, c->stored, n);
    c->stored += n;
    c->length += n;
    c->last_n = n;
    return SATTN_OK;
}

/* ---- attend ---- */

/* The fields of p that attend sets itself must be 0. */
static sattn_status check_zero_fields(const sattn_params *p)
{
    static const char *axis4[4] = {"batch", "head", "q", "kv"};
    if (p->seq_kv != 0)
        return sattn__fail("seq_kv must be 0: the cache supplies the keys (got %lld)", (long long)p->seq_kv);
    for (int a = 0; a < 3; a++) {
        if (p->k_stride[a] != 0)
            return sattn__fail("k_stride[%d] must be 0: the cache lays out its keys (got %lld)", a,
                               (long long)p->k_stride[a]);
        if (p->v_stride[a] != 0)
            return sattn__fail("v_stride[%d] must be 0: the cache lays out its values (got %lld)", a,
                               (long long)p->v_stride[a]);
    }
    if (p->causal != SATTN_CAUSAL_NONE)
        return sattn__fail("causal must be 0: the cache always attends bottom-right causal (got %d)",
                           (int)p->causal);
    if (p->window_left != 0)
        return sattn__fail("window_left must be 0: the window is the cache's (got %lld)",
                           (long long)p->window_left);
    if (p->window_right != 0)
        return sattn__fail("window_right must be 0: the cache attends causally (got %lld)",
                           (long long)p->window_right);
    if (p->seqlens_q) return sattn__fail("seqlens_q must be NULL with a KV cache");
    if (p->seqlens_kv) return sattn__fail("seqlens_kv must be NULL with a KV cache");
    if (p->cu_seqlens_q) return sattn__fail("cu_seqlens_q must be NULL with a KV cache");
    if (p->cu_seqlens_kv) return sattn__fail("cu_seqlens_kv must be NULL with a KV cache");
    if (p->bias) return sattn__fail("bias must be NULL with a KV cache");
    if (p->mask) return sattn__fail("mask must be NULL with a KV cache");
    for (int a = 0; a < 4; a++) {
        if (p->bias_stride[a] != 0)
            return sattn__fail("bias_stride[%d] (the %s stride) must be 0 with a KV cache (got %lld)", a,
                               axis4[a], (long long)p->bias_stride[a]);
        if (p->mask_stride[a] != 0)
            return sattn__fail("mask_stride[%d] (the %s stride) must be 0 with a KV cache (got %lld)", a,
                               axis4[a], (long long)p->mask_stride[a]);
    }
    if (p->dropout_p != 0.0f)
        return sattn__fail("dropout_p must be 0 with a KV cache (got %g)", (double)p->dropout_p);
    if (p->seed != 0)
        return sattn__fail("seed must be 0 with a KV cache: there is no dropout (got %llu)",
                           (unsigned long long)p->seed);
    return SATTN_OK;
}

/* Checks p against a cache holding `stored` rows, the last append of last_n tokens. */
static sattn_status check_attend(const sattn_kvcache *c, const sattn_params *p, int64_t stored, int64_t last_n)
{
    TRY(check_zero_fields(p));
    if (p->dtype != c->dtype)
        return sattn__fail("dtype (%d) must be the cache's dtype (%d): q and out are stored in it",
                           (int)p->dtype, (int)c->dtype);
    static const char *names[4] = {"batch", "heads_kv", "head_dim", "head_dim_v"};
    const int64_t given[4] = {p->batch, p->heads_kv, p->head_dim, p->head_dim_v};
    const int64_t have[4] = {c->batch, c->heads_kv, c->head_dim, c->head_dim_v};
    for (int x = 0; x < 4; x++)
        if (given[x] != 0 && given[x] != have[x])
            return sattn__fail("%s must be 0 or the cache's %lld (got %lld)", names[x], (long long)have[x],
                               (long long)given[x]);
    if (p->heads_q < 1 || p->heads_q > SATTN__MAX_EXTENT || p->heads_q % c->heads_kv != 0)
        return sattn__fail("heads_q must be a positive multiple of the cache's heads_kv = %lld (got %lld)",
                           (long long)c->heads_kv, (long long)p->heads_q);
    if (stored == 0)
        return sattn__fail("seq_q: the cache is empty; append the tokens the queries stand for first");
    const int64_t most = c->window > 0 ? last_n : stored;
    if (p->seq_q < 1 || p->seq_q > most)
        return sattn__fail("seq_q must be in [1, %lld], %s (got %lld)", (long long)most,
                           c->window > 0 ? "the tokens of the last append (sliding window)"
                                         : "the tokens cached",
                           (long long)p->seq_q);
    return SATTN_OK;
}

/* f = the forward over the `stored` cached rows that attend runs for p. */
static void attend_params(const sattn_kvcache *c, const sattn_params *p, int64_t stored, sattn_params *f)
{
    const int64_t cap = c->capacity, d = c->head_dim, dv = c->head_dim_v;
    memset(f, 0, sizeof *f);
    f->batch = c->batch;
    f->seq_q = p->seq_q;
    f->seq_kv = stored;
    f->heads_q = p->heads_q;
    f->heads_kv = c->heads_kv;
    f->head_dim = d;
    f->head_dim_v = dv;
    f->dtype = c->dtype;
    for (int a = 0; a < 3; a++) {
        f->q_stride[a] = p->q_stride[a];
        f->o_stride[a] = p->o_stride[a];
    }
    /* head-major (batch, heads_kv, capacity, dim): BHSD with capacity rows per head */
    f->k_stride[0] = c->heads_kv * cap * d, f->k_stride[1] = d, f->k_stride[2] = cap * d;
    f->v_stride[0] = c->heads_kv * cap * dv, f->v_stride[1] = dv, f->v_stride[2] = cap * dv;
    f->scale = p->scale;
    f->softcap = p->softcap;
    f->alibi_slopes = p->alibi_slopes;
    /* The stored tokens are the newest ones, so bottom-right alignment puts query i on
       its own token d = i + stored - seq_q. */
    f->causal = SATTN_CAUSAL_BOTTOM_RIGHT;
    if (c->window > 1) {
        f->window_left = c->window - 1; /* keys d - (W - 1) .. d */
    } else if (c->window == 1) {
        /* Only key d, which window_left cannot say (0 means unbounded). window_left = 1
           leaves keys d - 1 and d; a mask read at i + j + off over 1, 0, 1, 0, ... keeps
           the one where i + j + off is even: with off = (stored - seq_q) & 1 that is
           j = d, since i + d + off = 2i + (stored - seq_q) + off. Its largest index,
           seq_q + stored - 1, is below 2 * capacity. */
        f->window_left = 1;
        f->mask = c->diag + ((stored - p->seq_q) & 1);
        f->mask_stride[2] = 1, f->mask_stride[3] = 1;
    }
}

sattn_status sattn_kvcache_attend(const sattn_kvcache *cache, const sattn_params *p, const void *q,
                                  void *out, float *lse)
{
    const sattn_kvcache *c = cache;
    if (c == NULL) return sattn__fail("cache is NULL");
    if (p == NULL) return sattn__fail("params is NULL");
    TRY(check_attend(c, p, c->stored, c->last_n));
    sattn_params f;
    attend_params(c, p, c->stored, &f);
    return sattn_forward(&f, q, c->k, c->v, out, lse);
}

/* ---- a whole step, checked first (sattn_mha_decode) ---- */

sattn_status sattn__kvcache_check_step(const sattn_kvcache *c, const sattn_params *p, int64_t n)
{
    int64_t after = 0;
    TRY(check_append_n(c, n, &after));
    TRY(check_attend(c, p, after, n));
    /* every rule of sattn_forward, on the call attend will make (the data pointers are
       not read by the check: any non-NULL address stands for them) */
    static const char any;
    sattn_params f;
    attend_params(c, p, after, &f);
    sattn__problem prob;
    return sattn__prepare(&prob, &f, SATTN__FORWARD, &any, &any, &any, &any, NULL, NULL, NULL, NULL, NULL);
}

void sattn__kvcache_mark(const sattn_kvcache *c, sattn__kv_mark *m)
{
    m->stored = c->stored, m->length = c->length, m->last_n = c->last_n;
}

void sattn__kvcache_rollback(sattn_kvcache *c, const sattn__kv_mark *m, int64_t n)
{
    c->length = m->length;
    if (c->stored == m->stored + n) { /* the tokens went after the old ones: exact */
        c->stored = m->stored, c->last_n = m->last_n;
        return;
    }
    /* The append slid the window: only the W - 1 newest old tokens are left, all that the
       next step reads; no query of the old last append has its whole window any more. */
    c->stored -= n, c->last_n = 0;
}
