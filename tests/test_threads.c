/* test_threads: results do not depend on the thread count. Forward (out, lse) and
 * backward (dq, dk, dv) must be bit-identical (memcmp) with 1, 2 and 3 threads and
 * every core, across features (GQA, causal, windows, varlen, bias, mask, dropout,
 * softcap, f16/bf16), and a repeated call must give the same bits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    void *out, *dq, *dk, *dv;
    float *lse;
    size_t nout, nq, nk, nv, nlse;   /* bytes */
    int ok;
} result;

static result run(const tu_case *c, int threads)
{
    result r;
    size_t es = (size_t)sattn_ref_dtype_size(c->p.dtype);
    sattn_set_num_threads(threads);
    r.nout = (size_t)c->to.count * es, r.nq = (size_t)c->tq.count * es;
    r.nk = (size_t)c->tk.count * es, r.nv = (size_t)c->tv.count * es;
    r.nlse = (size_t)c->nlse * sizeof(float);
    r.out = tu_alloc_sentinel(r.nout), r.lse = tu_alloc_sentinel(r.nlse);
    r.dq = tu_alloc_sentinel(r.nq), r.dk = tu_alloc_sentinel(r.nk), r.dv = tu_alloc_sentinel(r.nv);
    sattn_status st = sattn_forward(&c->p, c->q, c->k, c->v, r.out, r.lse);
    if (st == SATTN_OK)
        st = sattn_backward(&c->p, c->q, c->k, c->v, r.out, r.lse, c->dout, r.dq, r.dk, r.dv);
    r.ok = tu_check(st == SATTN_OK, "threads %d: status %d (%s)", threads, (int)st, sattn_last_error());
    return r;
}

static void release(result *r)
{
    free(r->out), free(r->lse), free(r->dq), free(r->dk), free(r->dv);
}

/* Which of out, lse, dq, dk, dv differ (empty string if none). */
static const char *differs(const result *a, const result *b)
{
    static char buf[64];
    buf[0] = '\0';
    if (memcmp(a->out, b->out, a->nout)) strcat(buf, " out");
    if (memcmp(a->lse, b->lse, a->nlse)) strcat(buf, " lse");
    if (memcmp(a->dq, b->dq, a->nq)) strcat(buf, " dq");
    if (memcmp(a->dk, b->dk, a->nk)) strcat(buf, " dk");
    if (memcmp(a->dv, b->dv, a->nv)) strcat(buf, " dv");
    return buf;
}

static void check_case(const char *label, const tu_spec *s)
{
    static const int counts[] = {2, 3, 0};
    tu_case c;
    tu_case_init(&c, s);
    result one = run(&c, 1), again = run(&c, 1);
    if (one.ok && again.ok)
        tu_check(differs(&one, &again)[0] == '\0', "%s: a repeated call with 1 thread differs in%s",
                 label, differs(&one, &again));
    for (size_t t = 0; t < sizeof counts / sizeof counts[0]; t++) {
        result r = run(&c, counts[t]);
        if (one.ok && r.ok)
            tu_check(differs(&one, &r)[0] == '\0', "%s: %d threads%s differ from 1 thread in%s", label,
                     counts[t], counts[t] ? "" : " (every core)", differs(&one, &r));
        result r2 = run(&c, counts[t]);
        if (r.ok && r2.ok)
            tu_check(differs(&r, &r2)[0] == '\0', "%s: a repeated call with %d threads differs in%s",
                     label, counts[t], differs(&r, &r2));
        release(&r), release(&r2);
    }
    release(&one), release(&again);
    tu_case_free(&c);
}

int main(void)
{
    tu_begin();
    sattn_set_num_threads(1);
    tu_check(sattn_get_num_threads() == 1, "sattn_get_num_threads() is %d after set(1)",
             sattn_get_num_threads());
    sattn_set_num_threads(0);
    tu_check(sattn_get_num_threads() >= 1, "sattn_get_num_threads() is %d after set(0)",
             sattn_get_num_threads());

    tu_spec s, base = tu_spec_basic(150, 170, 32);
    base.batch = 2, base.heads_q = 4;
    s = base;                                                     check_case("plain", &s);
    s = base, s.heads_kv = 2, s.causal = SATTN_CAUSAL_TOP_LEFT;   check_case("gqa, causal top-left", &s);
    s = base, s.heads_kv = 1, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.window_left = 40;
    check_case("mqa, local causal", &s);
    s = base, s.batch = 5, s.cu_q = 1, s.cu_kv = 1, s.seqlens_q = 1, s.seqlens_kv = 1;
    check_case("varlen", &s);
    s = base, s.dropout_p = 0.3f, s.seed = 99, s.heads_kv = 2;    check_case("dropout, gqa", &s);
    s = base, s.bias = 2, s.bias_neginf = 0.1, s.mask = 2, s.mask_zero = 0.2, s.alibi = 1,
    s.softcap = 5.0f;
    check_case("bias, mask, alibi, softcap", &s);
    s = base, s.dtype = SATTN_F16, s.lq = TU_PADDED, s.lo = TU_BHSD;  check_case("f16, layouts", &s);
    s = base, s.dtype = SATTN_BF16, s.heads_kv = 2, s.dropout_p = 0.1f, s.seed = 7,
    s.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
    check_case("bf16, dropout, causal", &s);
    s = tu_spec_basic(1, 700, 64), s.heads_q = 2;                  check_case("one query, long kv", &s);
    s = tu_spec_basic(700, 3, 16), s.heads_q = 2;                  check_case("long q, three keys", &s);
    /* decode: stacked query heads, keys split into several chunks, 16-bit in-kernel reads */
    s = tu_spec_basic(1, 1500, 64), s.heads_q = 8, s.heads_kv = 2, s.dtype = SATTN_F16;
    s.dropout_p = 0.2f, s.seed = 5, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
    check_case("decode, gqa, f16, dropout", &s);
    /* decode over contiguous rows: spans of fully visible tiles, bf16 in pair order,
       a window edge and padded keys breaking the runs */
    s = tu_spec_basic(2, 5000, 128), s.heads_q = 4, s.heads_kv = 1, s.batch = 2, s.dtype = SATTN_BF16;
    s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.window_left = 3000, s.seqlens_kv = 1, s.lk = TU_BHSD, s.lv = TU_BHSD;
    check_case("decode, bf16, spans, window", &s);
    sattn_set_num_threads(0);
    return tu_summary("test_threads");
}
