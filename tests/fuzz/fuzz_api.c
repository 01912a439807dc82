/* libFuzzer target: the public C API (sattn_forward, sattn_backward).
 *
 * The input draws a problem: shapes (odd sizes, GQA, head_dim_v), dtype, layouts
 * (packed, BHSD, padded with gaps), causal rules, windows (huge bounds too), key and
 * query lengths, packed variable-length batches, bias and mask in broadcast shapes,
 * ALiBi, softcap, dropout, NaN in padding. tests/testutil builds its
 * buffers exactly as sattn.h sizes them, with sentinel gaps; the library's forward and
 * backward must match the double-precision reference (tests/ref) within the suite's
 * tolerances, and give the same bits with one thread as with two.
 * Then one field is broken the way the input says: the call must fail with a message
 * and leave every output byte as it was. Any finding aborts, and libFuzzer keeps the
 * input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    const uint8_t *d;
    size_t n, at;
} bytes;

static unsigned take(bytes *b, unsigned range) /* 0 .. range-1 */
{
    unsigned v = b->at < b->n ? b->d[b->at] : 0;
    b->at++;
    if (b->at < b->n) v = v << 8 | b->d[b->at++];
    return range ? v % range : 0;
}

static void finding(const char *what, const tu_case *c)
{
    fflush(stdout);
    fprintf(stderr, "fuzz_api: %s\n  case: %s\n", what, tu_case_str(c));
    abort();
}

static int all_sentinel(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != TU_SENTINEL) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) tu_quiet = getenv("FUZZ_VERBOSE") == NULL, init = 1;
    bytes b = {data, size, 0};
    static const int64_t sizes[] = {0, 1, 2, 7, 13, 63, 64, 65, 97};
    static const int64_t windows[] = {0, 1, 3, 17, -5, INT64_MAX, INT64_MAX - 1, (int64_t)1 << 40};
    tu_spec s = tu_spec_basic(sizes[take(&b, 9)], sizes[take(&b, 9)], 1 + take(&b, 72));
    s.batch = 1 + take(&b, 3);
    s.heads_kv = 1 + take(&b, 3);
    s.heads_q = s.heads_kv * (1 + take(&b, 3));
    s.head_dim_v = take(&b, 3) == 0 ? 1 + take(&b, 40) : s.head_dim;
    s.dtype = (sattn_dtype)take(&b, 3);
    s.lq = (tu_layout)take(&b, 4), s.lk = (tu_layout)take(&b, 5), s.lv = (tu_layout)take(&b, 5);
    s.lo = (tu_layout)take(&b, 4);
    s.causal = (sattn_causal)take(&b, 3);
    s.window_left = windows[take(&b, 8)], s.window_right = windows[take(&b, 8)];
    s.seqlens_q = take(&b, 4) == 0, s.seqlens_kv = take(&b, 3) == 0;
    s.cu_q = take(&b, 4) == 0, s.cu_kv = take(&b, 4) == 0;
    if (s.cu_q || s.cu_kv) { /* packed tensors have no batch axis to broadcast */
        if (s.lk == TU_BCAST_BATCH) s.lk = TU_BSHD;
        if (s.lv == TU_BCAST_BATCH) s.lv = TU_BSHD;
    }
    s.bias = (int)take(&b, 4), s.bias_neginf = take(&b, 4) * 0.1;
    s.mask = (int)take(&b, 4), s.mask_zero = take(&b, 5) * 0.2;
    s.alibi = take(&b, 4) == 0;
    s.softcap = take(&b, 4) == 0 ? (float)(1 + take(&b, 30)) : 0.0f;
    s.dropout_p = take(&b, 5) == 0 ? (float)take(&b, 90) / 100.0f : 0.0f;
    s.seed = take(&b, 65536);
    s.nan_pad = take(&b, 2);
    s.scale = take(&b, 4) == 0 ? (float)(take(&b, 100) + 1) / 64.0f : 0.0f;
    /* q and k of spread 1: the suite's tolerances are derived for that; extreme logits are
       test_masks_edge's, built so that every score is exact */
    s.data_seed = take(&b, 65536);
    const int backward = take(&b, 2);
    /* a broadcast batch axis is read-only: the backward writes dq/dk/dv with those strides */
    if (backward && (s.lk == TU_BCAST_BATCH || s.lv == TU_BCAST_BATCH)) s.lk = s.lv = TU_BSHD;

    tu_case c;
    if (tu_case_init(&c, &s) != 0) return 0;
    tu_tol tol = tu_tolerance(s.dtype);
    if (!tu_run_case(&c, backward, &tol, "fuzz", NULL)) finding("differs from the reference", &c);

    /* the same bits with one thread and with two */
    const size_t es = (size_t)sattn_ref_dtype_size(s.dtype);
    const size_t nout = (size_t)(c.to.count + 1) * es, nlse = (size_t)(c.nlse + 1) * sizeof(float);
    void *o1 = tu_alloc_sentinel(nout), *o2 = tu_alloc_sentinel(nout);
    float *l1 = tu_alloc_sentinel(nlse), *l2 = tu_alloc_sentinel(nlse);
    sattn_set_num_threads(1);
    sattn_status st1 = sattn_forward(&c.p, c.q, c.k, c.v, o1, l1);
    sattn_set_num_threads(2);
    sattn_status st2 = sattn_forward(&c.p, c.q, c.k, c.v, o2, l2);
    sattn_set_num_threads(0);
    if (st1 != SATTN_OK || st2 != SATTN_OK || memcmp(o1, o2, nout) || memcmp(l1, l2, nlse))
        finding("one thread and two threads differ", &c);

    /* one field broken: refused, with a message, and nothing written */
    sattn_params p = c.p;
    const unsigned breakage = take(&b, 10);
    switch (breakage) {
    case 0: p.scale = NAN; break;
    case 1: p.head_dim = -p.head_dim; break;
    case 2: p.heads_kv = p.heads_q + 1; break;
    case 3: p.o_stride[0] = 1, p.o_stride[1] = -3, p.o_stride[2] = 1; break;
    case 4: p.softcap = -1.0f; break;
    case 5: p.dropout_p = 1.0f; break;
    case 6: p.causal = (sattn_causal)7; break;
    case 7: p.q_stride[1] = -1, p.q_stride[0] = p.q_stride[2] = 1; break;
    case 8: p.batch = 0; break;
    default: p.dtype = (sattn_dtype)9; break;
    }
    void *o3 = tu_alloc_sentinel(nout);
    float *l3 = tu_alloc_sentinel(nlse);
    sattn_status st3 = sattn_forward(&p, c.q, c.k, c.v, o3, l3);
    if (st3 == SATTN_OK || !sattn_last_error()[0] || !all_sentinel(o3, nout) || !all_sentinel(l3, nlse)) {
        fprintf(stderr, "fuzz_api: breakage %u: status %d, message \"%s\"\n", breakage, (int)st3, sattn_last_error());
        finding("a broken field was not refused cleanly (status, message, untouched outputs)", &c);
    }
    free(o3), free(l3);
    free(o1), free(o2), free(l1), free(l2);
    tu_case_free(&c);
    return 0;
}
