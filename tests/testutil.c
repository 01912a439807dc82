/* testutil: shared pieces of the sattn tests (see testutil.h). */
#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- pass / fail ---- */

long tu_checks, tu_failures;
int tu_quiet;

void tu_begin(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* A run for one kernel set (SATTN_ISA) must test that set: if this CPU cannot run
       it, the library picks another, and the run is reported as skipped, not passed. */
    const char *want = getenv("SATTN_ISA");
    if (want && *want) {
        if (strcmp(want, sattn_isa()) != 0) {
            printf("SKIPPED: SATTN_ISA=%s asked, but the library runs %s on this CPU\n", want, sattn_isa());
            exit(TU_SKIP_STATUS);
        }
        printf("kernels: %s\n", sattn_isa());
    }
}

int tu_check(int ok, const char *fmt, ...)
{
    tu_checks++;
    if (!ok) {
        va_list ap;
        tu_failures++;
        printf("FAIL: ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
    }
    return ok;
}

int tu_summary(const char *test_name)
{
    if (tu_checks == 0) {
        printf("%s: FAIL (no checks ran)\n", test_name);
        return 1;
    }
    printf("%s: %s (%ld checks, %ld failed)\n", test_name, tu_failures ? "FAIL" : "PASS",
           tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}

/* ---- rng: splitmix64 ---- */

void tu_seed(tu_rng *r, uint64_t seed)
{
    r->s = seed ^ 0x243F6A8885A308D3ull;
}

uint64_t tu_u64(tu_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double tu_unif(tu_rng *r, double lo, double hi)
{
    return lo + (hi - lo) * ((double)(tu_u64(r) >> 11) * 0x1p-53);
}

int64_t tu_range(tu_rng *r, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + (int64_t)(tu_u64(r) % (uint64_t)(hi - lo + 1));
}

int tu_chance(tu_rng *r, double prob)
{
    return tu_unif(r, 0.0, 1.0) < prob;
}

/* ---- layouts ---- */

const char *tu_layout_name(tu_layout l)
{
    switch (l) {
    case TU_DEFAULT: return "default";
    case TU_BSHD: return "bshd";
    case TU_BHSD: return "bhsd";
    case TU_PADDED: return "padded";
    case TU_BCAST_BATCH: return "bcast";
    case TU_NLAYOUTS: break;
    }
    return "?";
}

void tu_tensor_init(tu_tensor *t, tu_rng *r, tu_layout l, int64_t batch, int64_t seq,
                    int64_t heads, int64_t dim, const int32_t *cu)
{
    int64_t nb = cu ? 1 : batch;                 /* batch axis extent in memory */
    int64_t rows = cu ? cu[batch] : seq;         /* seq axis extent in memory */
    int64_t ext[3] = {nb, rows, heads};
    int64_t tail = 0;
    memset(t, 0, sizeof *t);
    t->batch = batch;
    t->seq = seq;
    t->heads = heads;
    t->dim = dim;
    t->cu = cu;
    switch (l) {
    case TU_DEFAULT:
    case TU_BSHD:
    case TU_NLAYOUTS:
        t->rstride[0] = rows * heads * dim;
        t->rstride[1] = heads * dim;
        t->rstride[2] = dim;
        break;
    case TU_BHSD:
        t->rstride[0] = heads * rows * dim;
        t->rstride[1] = dim;
        t->rstride[2] = rows * dim;
        break;
    case TU_BCAST_BATCH:
        t->rstride[0] = 0;
        t->rstride[1] = heads * dim;
        t->rstride[2] = dim;
        ext[0] = 1;
        break;
    case TU_PADDED: {
        /* a random order of the axes (inner to outer), each padded by a random gap */
        int order[3] = {0, 1, 2};
        for (int a = 2; a > 0; a--) {
            int o = (int)tu_range(r, 0, a), tmp = order[a];
            order[a] = order[o];
            order[o] = tmp;
        }
        int64_t inner = dim;
        for (int a = 0; a < 3; a++) {
            int ax = order[a];
            if (ax == 0 && cu)
                continue;
            int64_t stride = inner + tu_range(r, 0, 5);
            t->rstride[ax] = stride;
            inner = stride * (ext[ax] > 0 ? ext[ax] : 1);
        }
        if (cu)
            t->rstride[0] = 0;
        tail = tu_range(r, 0, 7);
        break;
    }
    }
    if (l == TU_DEFAULT) {
        t->stride[0] = t->stride[1] = t->stride[2] = 0;
    } else {
        memcpy(t->stride, t->rstride, sizeof t->stride);
        if (cu)
            t->stride[0] = 0;   /* unused with cu_seqlens */
    }
    if (ext[0] == 0 || ext[1] == 0 || ext[2] == 0 || dim == 0) {
        t->count = 0;
        return;
    }
    t->count = dim + tail;
    for (int a = 0; a < 3; a++)
        if (!(a == 0 && cu))
            t->count += (ext[a] - 1) * t->rstride[a];
}

int64_t tu_offset(const tu_tensor *t, int64_t b, int64_t i, int64_t h)
{
    if (t->cu)
        return ((int64_t)t->cu[b] + i) * t->rstride[1] + h * t->rstride[2];
    return b * t->rstride[0] + i * t->rstride[1] + h * t->rstride[2];
}

int64_t tu_rows(const tu_tensor *t, int64_t b)
{
    return t->cu ? (int64_t)t->cu[b + 1] - t->cu[b] : t->seq;
}

unsigned char *tu_domain_flags(const tu_tensor *t)
{
    unsigned char *f = calloc((size_t)t->count + 1, 1);
    if (!f)
        abort();
    if (t->cu) {
        /* rows of the packed tensor before cu[0] belong to no sequence */
        for (int64_t row = 0; row < t->cu[0]; row++)
            for (int64_t h = 0; h < t->heads; h++)
                for (int64_t c = 0; c < t->dim; c++)
                    f[row * t->rstride[1] + h * t->rstride[2] + c] = TU_DONTCARE;
    }
    for (int64_t b = 0; b < t->batch; b++)
        for (int64_t i = 0; i < tu_rows(t, b); i++)
            for (int64_t h = 0; h < t->heads; h++)
                for (int64_t c = 0; c < t->dim; c++)
                    f[tu_offset(t, b, i, h) + c] = TU_DOMAIN;
    return f;
}

/* ---- allocation ---- */

void *tu_alloc_sentinel(size_t bytes)
{
    void *p = malloc(bytes + 16);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        abort();
    }
    memset(p, TU_SENTINEL, bytes + 16);
    return p;
}

double *tu_alloc_f64(int64_t n)
{
    double *p = calloc((size_t)n + 1, sizeof(double));
    if (!p) {
        fprintf(stderr, "out of memory (%lld doubles)\n", (long long)n);
        abort();
    }
    return p;
}

/* ---- cases ---- */

tu_spec tu_spec_basic(int64_t seq_q, int64_t seq_kv, int64_t head_dim)
{
    tu_spec s;
    memset(&s, 0, sizeof s);
    s.batch = 1;
    s.seq_q = seq_q;
    s.seq_kv = seq_kv;
    s.heads_q = 1;
    s.head_dim = head_dim;
    s.dtype = SATTN_F32;
    s.data_seed = 1;
    return s;
}

/* cu_seqlens with random lengths in [0, maxlen], one of them maxlen, start >= 0. */
static int32_t *make_cu(tu_rng *r, int64_t batch, int64_t maxlen)
{
    int32_t *cu = malloc(sizeof(int32_t) * (size_t)(batch + 1));
    int64_t longest = tu_range(r, 0, batch - 1);
    if (!cu)
        abort();
    cu[0] = tu_chance(r, 0.3) ? (int32_t)tu_range(r, 1, 3) : 0;
    for (int64_t b = 0; b < batch; b++) {
        int64_t len = b == longest ? maxlen : tu_range(r, 0, maxlen);
        cu[b + 1] = (int32_t)(cu[b] + len);
    }
    return cu;
}

/* seqlens[b] in [0, rows of b], often the full length. */
static int32_t *make_seqlens(tu_rng *r, int64_t batch, const int32_t *cu, int64_t seq)
{
    int32_t *sl = malloc(sizeof(int32_t) * (size_t)batch);
    if (!sl)
        abort();
    for (int64_t b = 0; b < batch; b++) {
        int64_t rows = cu ? (int64_t)cu[b + 1] - cu[b] : seq;
        sl[b] = (int32_t)(tu_chance(r, 0.25) ? rows : tu_range(r, 0, rows));
    }
    return sl;
}

/* Strides of a (batch, heads_q, seq_q, seq_kv) bias or mask: mode 1 dense packed,
   mode 2 each axis broadcast (stride 0) with probability 0.4, small gaps otherwise,
   mode 3 the axes in bcast broadcast, the others packed. Returns the number of
   elements to allocate. */
static int64_t make_4d_strides(tu_rng *r, int mode, unsigned bcast, const int64_t ext[4],
                               int64_t stride[4])
{
    int64_t inner = 1, count = 1;
    for (int a = 3; a >= 0; a--) {
        if ((mode == 2 && tu_chance(r, 0.4)) || (mode == 3 && ((bcast >> a) & 1u))) {
            stride[a] = 0;
            continue;
        }
        stride[a] = inner + (mode == 2 ? tu_range(r, 0, 2) : 0);
        inner = stride[a] * (ext[a] > 0 ? ext[a] : 1);
    }
    for (int a = 0; a < 4; a++)
        if (ext[a] > 0)
            count += (ext[a] - 1) * stride[a];
    return count;
}

/* Fills tensor data: DOMAIN elements used by some valid row get a value in
   [-spread, spread), everything else NaN; with nan_pad the unused domain elements
   get NaN / +Inf / -Inf instead of a value. len(b) is the valid row count. */
static void fill_tensor(tu_rng *r, const tu_case *c, const tu_tensor *t, void *data,
                        const unsigned char *flags, double spread, int is_q_side)
{
    sattn_dtype dt = c->p.dtype;
    unsigned char *used = calloc((size_t)t->count + 1, 1);
    if (!used)
        abort();
    for (int64_t b = 0; b < t->batch; b++) {
        int64_t len = is_q_side ? sattn_ref_len_q(&c->p, b) : sattn_ref_len_kv(&c->p, b);
        if (!c->s.nan_pad)
            len = tu_rows(t, b);
        for (int64_t i = 0; i < len; i++)
            for (int64_t h = 0; h < t->heads; h++)
                for (int64_t e = 0; e < t->dim; e++)
                    used[tu_offset(t, b, i, h) + e] = 1;
    }
    static const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int64_t x = 0; x < t->count; x++) {
        float val;
        if (used[x])
            val = (float)tu_unif(r, -spread, spread);
        else if (flags[x] == TU_DOMAIN)
            val = bad[x % 3];
        else
            val = NAN;
        sattn_ref_store(dt, data, x, val);
    }
    free(used);
}

static void *alloc_tensor(const tu_tensor *t, sattn_dtype dt)
{
    return tu_alloc_sentinel((size_t)(t->count + 1) * (size_t)sattn_ref_dtype_size(dt));
}

int tu_case_init(tu_case *c, const tu_spec *s)
{
    tu_rng r;
    memset(c, 0, sizeof *c);
    c->s = *s;
    tu_seed(&r, s->data_seed * 0x9E3779B97F4A7C15ull + 12345);
    int64_t B = s->batch, hkv = s->heads_kv ? s->heads_kv : s->heads_q;
    int64_t dv = s->head_dim_v ? s->head_dim_v : s->head_dim;

    if (s->cu_q)
        c->cu_q = make_cu(&r, B, s->seq_q);
    if (s->cu_kv)
        c->cu_kv = make_cu(&r, B, s->seq_kv);
    if (s->seqlens_q)
        c->seqlens_q = make_seqlens(&r, B, c->cu_q, s->seq_q);
    if (s->seqlens_kv)
        c->seqlens_kv = make_seqlens(&r, B, c->cu_kv, s->seq_kv);

    sattn_params *p = &c->p;
    p->batch = B;
    p->seq_q = s->seq_q;
    p->seq_kv = s->seq_kv;
    p->heads_q = s->heads_q;
    p->heads_kv = s->heads_kv;
    p->head_dim = s->head_dim;
    p->head_dim_v = s->head_dim_v;
    p->dtype = s->dtype;
    p->scale = s->scale;
    p->causal = s->causal;
    p->window_left = s->window_left;
    p->window_right = s->window_right;
    p->seqlens_q = c->seqlens_q;
    p->seqlens_kv = c->seqlens_kv;
    p->cu_seqlens_q = c->cu_q;
    p->cu_seqlens_kv = c->cu_kv;
    p->softcap = s->softcap;
    p->dropout_p = s->dropout_p;
    p->seed = s->seed;

    tu_tensor_init(&c->tq, &r, s->lq, B, s->seq_q, s->heads_q, s->head_dim, c->cu_q);
    tu_tensor_init(&c->tk, &r, s->lk, B, s->seq_kv, hkv, s->head_dim, c->cu_kv);
    tu_tensor_init(&c->tv, &r, s->lv, B, s->seq_kv, hkv, dv, c->cu_kv);
    tu_tensor_init(&c->to, &r, s->lo, B, s->seq_q, s->heads_q, dv, c->cu_q);
    if (s->cu_garbage_stride) {
        /* the batch stride is unused with cu_seqlens: give it a random value */
        tu_tensor *ts[4] = {&c->tq, &c->tk, &c->tv, &c->to};
        for (int a = 0; a < 4; a++)
            if (ts[a]->cu && (ts[a]->stride[1] | ts[a]->stride[2]) != 0)
                ts[a]->stride[0] = tu_range(&r, 1, 1000000);
    }
    memcpy(p->q_stride, c->tq.stride, sizeof p->q_stride);
    memcpy(p->k_stride, c->tk.stride, sizeof p->k_stride);
    memcpy(p->v_stride, c->tv.stride, sizeof p->v_stride);
    memcpy(p->o_stride, c->to.stride, sizeof p->o_stride);

    int64_t ext4[4] = {B, s->heads_q, s->seq_q, s->seq_kv};
    if (s->bias) {
        int64_t n = make_4d_strides(&r, s->bias, s->bias_bcast, ext4, p->bias_stride);
        double spread = s->bias_scale > 0 ? s->bias_scale : 1.0;
        c->bias = malloc(sizeof(float) * (size_t)n);
        if (!c->bias)
            abort();
        for (int64_t x = 0; x < n; x++)
            c->bias[x] = tu_chance(&r, s->bias_neginf) ? -INFINITY
                                                        : (float)tu_unif(&r, -spread, spread);
        p->bias = c->bias;
    }
    if (s->mask) {
        int64_t n = make_4d_strides(&r, s->mask, s->mask_bcast, ext4, p->mask_stride);
        c->mask = malloc((size_t)n);
        if (!c->mask)
            abort();
        for (int64_t x = 0; x < n; x++)
            c->mask[x] = tu_chance(&r, s->mask_zero) ? 0 : (uint8_t)tu_range(&r, 1, 255);
        p->mask = c->mask;
    }
    if (s->alibi) {
        c->alibi = malloc(sizeof(float) * (size_t)s->heads_q);
        if (!c->alibi)
            abort();
        int standard = tu_chance(&r, 0.5);
        for (int64_t h = 0; h < s->heads_q; h++)   /* ALiBi's 2^(-8(h+1)/H), or random */
            c->alibi[h] = standard ? (float)pow(2.0, -8.0 * (double)(h + 1) / (double)s->heads_q)
                                   : (float)tu_unif(&r, 0.0, 0.6);
        p->alibi_slopes = c->alibi;
    }

    c->fq = tu_domain_flags(&c->tq);
    c->fk = tu_domain_flags(&c->tk);
    c->fv = tu_domain_flags(&c->tv);
    c->fo = tu_domain_flags(&c->to);
    c->nlse = sattn_ref_lse_count(p);
    c->flse = calloc((size_t)c->nlse + 1, 1);
    if (!c->flse)
        abort();
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < s->heads_q; h++)
            for (int64_t i = 0; i < sattn_ref_rows_q(p, b); i++)
                c->flse[sattn_ref_lse_index(p, b, h, i)] = TU_DOMAIN;
    if (c->cu_q)   /* lse rows before cu[0]: no sequence */
        for (int64_t x = 0; x < c->nlse; x++)
            if (c->flse[x] != TU_DOMAIN)
                c->flse[x] = TU_DONTCARE;

    double qk = s->qk_scale > 0 ? s->qk_scale : 1.0;
    c->q = alloc_tensor(&c->tq, s->dtype);
    c->k = alloc_tensor(&c->tk, s->dtype);
    c->v = alloc_tensor(&c->tv, s->dtype);
    c->dout = alloc_tensor(&c->to, s->dtype);
    fill_tensor(&r, c, &c->tq, c->q, c->fq, qk, 1);
    fill_tensor(&r, c, &c->tk, c->k, c->fk, qk, 0);
    fill_tensor(&r, c, &c->tv, c->v, c->fv, 1.0, 0);
    fill_tensor(&r, c, &c->to, c->dout, c->fo, 1.0, 1);
    return 0;
}

void tu_case_free(tu_case *c)
{
    free(c->seqlens_q);
    free(c->seqlens_kv);
    free(c->cu_q);
    free(c->cu_kv);
    free(c->bias);
    free(c->mask);
    free(c->alibi);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->dout);
    free(c->fq);
    free(c->fk);
    free(c->fv);
    free(c->fo);
    free(c->flse);
    memset(c, 0, sizeof *c);
}

const char *tu_case_str(const tu_case *c)
{
    static char buf[1024];
    const tu_spec *s = &c->s;
    static const char *dts[] = {"f32", "f16", "bf16"};
    static const char *cs[] = {"none", "top_left", "bottom_right"};
    snprintf(buf, sizeof buf,
             "B=%lld Sq=%lld Skv=%lld Hq=%lld Hkv=%lld D=%lld Dv=%lld %s layout(q,k,v,o)=%s,%s,%s,%s"
             " scale=%g causal=%s window=(%lld,%lld) seqlens(q,kv)=(%d,%d) cu(q,kv)=(%d,%d)%s"
             " bias=%d(-inf %.2f) mask=%d(zero %.2f) alibi=%d softcap=%g dropout=%g seed=%llu"
             " nan_pad=%d qk_scale=%g data_seed=%llu",
             (long long)s->batch, (long long)s->seq_q, (long long)s->seq_kv,
             (long long)s->heads_q, (long long)s->heads_kv, (long long)s->head_dim,
             (long long)s->head_dim_v, (unsigned)s->dtype < 3 ? dts[s->dtype] : "?",
             tu_layout_name(s->lq), tu_layout_name(s->lk), tu_layout_name(s->lv),
             tu_layout_name(s->lo), (double)s->scale,
             (unsigned)s->causal < 3 ? cs[s->causal] : "?", (long long)s->window_left,
             (long long)s->window_right, s->seqlens_q, s->seqlens_kv, s->cu_q, s->cu_kv,
             s->cu_garbage_stride ? " cu_garbage_stride" : "", s->bias, s->bias_neginf,
             s->mask, s->mask_zero, s->alibi, (double)s->softcap, (double)s->dropout_p,
             (unsigned long long)s->seed, s->nan_pad, s->qk_scale,
             (unsigned long long)s->data_seed);
    return buf;
}

/* ---- comparison ---- */

int tu_compare(const char *what, sattn_dtype dtype, const void *lib, const double *ref,
               const double *mag, const unsigned char *flags, int64_t n,
               const tu_bound *bound, tu_cmp *res)
{
    int es = sattn_ref_dtype_size(dtype);
    double tmax = 0.0;
    tu_cmp cmp = {0.0, 0.0, 0.0, 0};
    int64_t worst_idx = -1, printed = 0, gaps_bad = 0;
    for (int64_t x = 0; x < n; x++)
        if (flags[x] == TU_DOMAIN && isfinite(ref[x]) && fabs(ref[x]) > tmax)
            tmax = fabs(ref[x]);
    double tnorm = tmax > bound->floor ? tmax : bound->floor;
    cmp.norm = tnorm;
    if (bound->norm == TU_NORM_MAG)   /* the reported scale: the largest error magnitude */
        for (int64_t x = 0; x < n; x++)
            if (flags[x] == TU_DOMAIN && mag[x] > cmp.norm)
                cmp.norm = mag[x];
    for (int64_t x = 0; x < n; x++) {
        if (flags[x] == TU_GAP) {
            const unsigned char *bytes = (const unsigned char *)lib + x * es;
            for (int e = 0; e < es; e++)
                if (bytes[e] != TU_SENTINEL) {
                    if (!tu_quiet && gaps_bad++ < 3)
                        printf("    %s: gap element %lld (no (b,i,h,c) of the tensor) was written\n",
                               what, (long long)x);
                    cmp.nbad++;
                    break;
                }
            continue;
        }
        if (flags[x] != TU_DOMAIN)
            continue;
        double l = sattn_ref_load(dtype, lib, x), rv = ref[x];
        double err, allowed, ratio;
        if (!isfinite(rv) || !isfinite(l)) {
            int same = !isnan(rv) && l == rv;
            err = same ? 0.0 : INFINITY;
            allowed = 1.0;
        } else {
            double norm = tnorm;
            if (bound->norm == TU_NORM_ELEM)
                norm = fabs(rv) > bound->floor ? fabs(rv) : bound->floor;
            else if (bound->norm == TU_NORM_MAG)
                norm = mag[x];
            err = fabs(l - rv);
            allowed = bound->atol * norm + bound->rtol * fabs(rv) + bound->abs;
        }
        ratio = allowed > 0.0 ? err / allowed : (err > 0.0 ? INFINITY : 0.0);
        if (isfinite(err) && err > cmp.max_abs)
            cmp.max_abs = err;
        if (ratio > cmp.worst || worst_idx < 0) {
            if (ratio > cmp.worst)
                cmp.worst = ratio;
            worst_idx = x;
        }
        if (!(ratio <= 1.0)) {
            cmp.nbad++;
            if (!tu_quiet && printed++ < 4)
                printf("    %s[%lld]: lib % .9g  ref % .9g  |err| %.3g  allowed %.3g\n", what,
                       (long long)x, l, rv, err, allowed);
        }
    }
    if (cmp.nbad && !tu_quiet) {
        static const char *norms[3] = {"max(floor, max|ref|)", "max(floor, |ref|)", "mag"};
        printf("    %s: %ld bad of %lld elements; max|err| %.3g, max|ref| %.3g, worst err/allowed"
               " %.3g; allowed = %.3g * %s + %.3g * |ref| + %.3g\n",
               what, cmp.nbad, (long long)n, cmp.max_abs, tmax, cmp.worst, bound->atol,
               norms[bound->norm], bound->rtol, bound->abs);
        if (worst_idx >= 0)
            printf("    %s worst at [%lld]: lib % .9g ref % .9g%s%.3g\n", what, (long long)worst_idx,
                   sattn_ref_load(dtype, lib, worst_idx), ref[worst_idx],
                   mag ? " mag " : "", mag ? mag[worst_idx] : 0.0);
    }
    if (res)
        *res = cmp;
    return cmp.nbad == 0;
}

/* ---- tolerances ---- */

tu_tol tu_tolerance(sattn_dtype dtype)
{
    tu_tol t;
    memset(&t, 0, sizeof t);
    /* out: each output is a convex combination of v rows (times 1/(1-p) with dropout),
       so its error is measured against the output scale max(1, max|out|). f32 dot
       products over head_dim (<= 256) and softmax sums over seq_kv (<= 1000 terms)
       against a double reference: 1e-5 of that scale, ~170 f32 ulps (the library
       measures ~1e-6 at seq_kv 1000). */
    t.out.atol = 1e-5, t.out.floor = 1.0, t.out.norm = TU_NORM_TENSOR;
    /* lse: the f32 scores carry ~eps * sum|scale q_c k_c| of absolute error and lse
       itself is stored as f32: 1e-5 of max(1, |lse|). */
    t.lse.atol = 1e-5, t.lse.floor = 1.0, t.lse.norm = TU_NORM_ELEM;
    /* grad: per element, against its error magnitude mag (sattn_ref_backward_mag: the
       gradient formula in absolute values, >= |grad|). f32 rounding of the dP and D
       row sums and of the sums over seq_q / seq_kv stays below 5e-5 of it (the library
       measures ~2e-6 at seq 1000 and with scores spread over +-20); an exact 0
       (no weight reaches the element) must come out exactly 0, up to 1e-30 for f32
       underflow of exp() on weights the double reference still resolves. */
    t.grad.atol = 5e-5, t.grad.abs = 1e-30, t.grad.norm = TU_NORM_MAG;
    if (dtype == SATTN_F16) {
        /* Stores round to nearest even: half an ulp is 2^-11 relative (+5% for the f32
           error being rounded too), and half the smallest subnormal (2^-25) absolute. The
           backward reads the rounded out for D = dout . out, off by up to 2^-11 of
           |dout| . |out| <= |D| in mag: 1e-3 of mag. */
        t.out.rtol = 0x1p-11 * 1.05, t.out.abs = 0x1p-25 * 1.05;
        t.grad.atol = 1e-3, t.grad.rtol = 0x1p-11 * 1.05, t.grad.abs = 0x1p-25 * 1.05;
        /* Tiny outputs round to f16 subnormals with an absolute error up to 2^-25, which
           reaches D as sum_c |dout_c| 2^-25: give it room in mag at twice 2^-25 / atol. */
        t.grad_d_floor = 2.0 * 0x1p-25 / t.grad.atol;
    } else if (dtype == SATTN_BF16) {
        /* bf16: half an ulp is 2^-8 relative; D from the rounded out: 8e-3 of mag. */
        t.out.rtol = 0x1p-8 * 1.05;
        t.grad.atol = 8e-3, t.grad.rtol = 0x1p-8 * 1.05;
    }
    return t;
}

/* ---- running a case ---- */

static void stats_max(double *slot, double v)
{
    if (v > *slot)
        *slot = v;
}

int tu_run_case(const tu_case *c, int bwd, const tu_tol *tol, const char *label,
                tu_stats *stats)
{
    const sattn_params *p = &c->p;
    size_t es = (size_t)sattn_ref_dtype_size(p->dtype);
    int ok = 1;
    tu_cmp r;
    void *out = tu_alloc_sentinel((size_t)(c->to.count + 1) * es);
    float *lse = tu_alloc_sentinel((size_t)(c->nlse + 1) * sizeof(float));
    double *rout = tu_alloc_f64(c->to.count), *rlse = tu_alloc_f64(c->nlse);
    void *dq = NULL, *dk = NULL, *dv = NULL;
    double *rdq = NULL, *rdk = NULL, *rdv = NULL, *mdq = NULL, *mdk = NULL, *mdv = NULL;

    sattn_status st = sattn_forward(p, c->q, c->k, c->v, out, lse);
    if (st != SATTN_OK) {
        if (!tu_quiet)
            printf("  %s: sattn_forward returned %d (%s)\n", label, (int)st, sattn_last_error());
        ok = 0;
        goto done;
    }
    if (sattn_ref_forward(p, c->q, c->k, c->v, rout, rlse) != 0) {
        printf("  %s: reference forward refused the case\n", label);
        ok = 0;
        goto done;
    }
    ok &= tu_compare("out", p->dtype, out, rout, NULL, c->fo, c->to.count, &tol->out, &r);
    if (stats) {
        stats_max(&stats->worst_out, r.worst);
        stats_max(&stats->max_rel_out, r.max_abs / r.norm);
    }
    ok &= tu_compare("lse", SATTN_F32, lse, rlse, NULL, c->flse, c->nlse, &tol->lse, &r);
    if (stats)
        stats_max(&stats->worst_lse, r.worst);
    if (!bwd)
        goto done;

    dq = tu_alloc_sentinel((size_t)(c->tq.count + 1) * es);
    dk = tu_alloc_sentinel((size_t)(c->tk.count + 1) * es);
    dv = tu_alloc_sentinel((size_t)(c->tv.count + 1) * es);
    rdq = tu_alloc_f64(c->tq.count);
    rdk = tu_alloc_f64(c->tk.count);
    rdv = tu_alloc_f64(c->tv.count);
    mdq = tu_alloc_f64(c->tq.count);
    mdk = tu_alloc_f64(c->tk.count);
    mdv = tu_alloc_f64(c->tv.count);
    st = sattn_backward(p, c->q, c->k, c->v, out, lse, c->dout, dq, dk, dv);
    if (st != SATTN_OK) {
        if (!tu_quiet)
            printf("  %s: sattn_backward returned %d (%s)\n", label, (int)st, sattn_last_error());
        ok = 0;
        goto done;
    }
    if (sattn_ref_backward(p, c->q, c->k, c->v, c->dout, rdq, rdk, rdv) != 0 ||
        sattn_ref_backward_mag(p, c->q, c->k, c->v, c->dout, tol->grad_d_floor, mdq, mdk, mdv) != 0) {
        printf("  %s: reference backward refused the case\n", label);
        ok = 0;
        goto done;
    }
    {
        const char *names[3] = {"dq", "dk", "dv"};
        const void *lib[3] = {dq, dk, dv};
        const double *ref[3] = {rdq, rdk, rdv}, *mag[3] = {mdq, mdk, mdv};
        const unsigned char *fl[3] = {c->fq, c->fk, c->fv};
        int64_t n[3] = {c->tq.count, c->tk.count, c->tv.count};
        for (int t = 0; t < 3; t++) {
            ok &= tu_compare(names[t], p->dtype, lib[t], ref[t], mag[t], fl[t], n[t], &tol->grad, &r);
            if (stats) {
                stats_max(&stats->worst_grad, r.worst);
                stats_max(&stats->max_rel_grad, r.norm > 0 ? r.max_abs / r.norm : 0.0);
            }
        }
    }
done:
    if (!ok && !tu_quiet)
        printf("  in case %s: %s\n", label, tu_case_str(c));
    free(out);
    free(lse);
    free(rout);
    free(rlse);
    free(dq);
    free(dk);
    free(dv);
    free(rdq);
    free(rdk);
    free(rdv);
    free(mdq);
    free(mdk);
    free(mdv);
    return ok;
}

void tu_extreme_case_init(tu_case *c, int via_bias, double sign, sattn_dtype dt)
{
    tu_spec s = tu_spec_basic(7, 9, 8);
    s.batch = 2, s.heads_q = 2, s.dtype = dt;
    s.scale = via_bias ? 0.125f : 1.0f;
    s.bias = via_bias ? 1 : 0;
    tu_rng r;
    tu_seed(&r, 5);
    tu_case_init(c, &s);
    for (int64_t b = 0; b < s.batch; b++)
        for (int64_t h = 0; h < s.heads_q; h++) {
            for (int64_t i = 0; i < s.seq_q; i++)
                for (int64_t e = 0; e < s.head_dim; e++) {
                    float x = (float)tu_range(&r, -3, 3);
                    if (!via_bias && e == 0) x = (float)(100.0 * sign);
                    sattn_ref_store(dt, c->q, tu_offset(&c->tq, b, i, h) + e, x);
                }
            for (int64_t j = 0; j < s.seq_kv; j++)
                for (int64_t e = 0; e < s.head_dim; e++) {
                    float x = (float)tu_range(&r, -3, 3);
                    if (!via_bias && e == 0) x = h == 1 && j == 0 ? -100.0f : 100.0f; /* head 1: one key at -1e4 */
                    sattn_ref_store(dt, c->k, tu_offset(&c->tk, b, j, h) + e, x);
                }
        }
    if (via_bias) {
        const int64_t *bs = c->p.bias_stride;
        for (int64_t b = 0; b < s.batch; b++)
            for (int64_t h = 0; h < s.heads_q; h++)
                for (int64_t i = 0; i < s.seq_q; i++)
                    for (int64_t j = 0; j < s.seq_kv; j++)
                        c->bias[b * bs[0] + h * bs[1] + i * bs[2] + j * bs[3]] =
                            (float)(sign * 1e4 + (double)tu_range(&r, -4, 4)) * (h == 1 && j == 0 ? -1.0f : 1.0f);
    }
}

void tu_for_each_extreme_case(void (*check)(const char *label, int via_bias, double sign, sattn_dtype dt))
{
    for (int dt = 0; dt < 3; dt++)
        for (int via_bias = 0; via_bias < 2; via_bias++)
            for (int neg = 0; neg < 2; neg++) {
                char label[96];
                snprintf(label, sizeof label, "scores ~ %c1e4 from %s (dtype %d)", neg ? '-' : '+',
                         via_bias ? "bias" : "q.k", dt);
                check(label, via_bias, neg ? -1.0 : 1.0, (sattn_dtype)dt);
            }
}
