/* test_dropout: dropout against its contract.
 *   - keep rate, measured with the library alone: q = 0 makes every weight 1/n and
 *     v = identity (seq_kv = head_dim_v = n) makes out[i][j] = keep_ij / ((1-p) n),
 *     so out reveals each keep decision. Over N decisions the rate must be within
 *     5 sigma = 5 sqrt(p (1-p) / N) of 1 - p, overall and per Philox lane j & 3;
 *   - every revealed decision equals the header's rule (Philox4x32-10 of
 *     {j >> 2, i, h, b} under {seed lo, seed hi}, kept iff u >= p), including GQA and
 *     packed variable-length batches (b the sequence, i and j within it);
 *   - forward and backward with dropout against the reference;
 *   - dropout_p = 0 gives bit-identical results whatever the seed; the same seed
 *     gives the same bits; different seeds (also only in the high 32 bits) differ.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- the keep rate and the exact rule, revealed through out ---- */

static void reveal(float p, uint64_t seed, int gqa, int varlen)
{
    const int64_t n = 64, B = 2, Hq = 4, Sq = 48;
    sattn_params prm;
    memset(&prm, 0, sizeof prm);
    prm.batch = B, prm.seq_q = Sq, prm.seq_kv = n, prm.heads_q = Hq, prm.heads_kv = gqa ? 2 : Hq;
    prm.head_dim = 8, prm.head_dim_v = n;
    prm.dropout_p = p, prm.seed = seed;
    int32_t cu_q[3] = {3, 3 + 40, 3 + 40 + Sq}, cu_kv[3] = {0, n, 2 * n};
    int64_t total_q = Sq;
    if (varlen) {
        /* sequence 0 has 40 queries, sequence 1 has 48, after 3 unused rows */
        prm.cu_seqlens_q = cu_q, prm.cu_seqlens_kv = cu_kv;
        total_q = cu_q[2];
    }
    int64_t hkv = prm.heads_kv, rowsq = varlen ? total_q : B * Sq, rowskv = varlen ? 2 * n : B * n;
    float *q = calloc((size_t)(rowsq * Hq * 8), sizeof(float));
    float *k = calloc((size_t)(rowskv * hkv * 8), sizeof(float));
    float *v = calloc((size_t)(rowskv * hkv * n), sizeof(float));
    float *out = calloc((size_t)(rowsq * Hq * n), sizeof(float));
    if (!q || !k || !v || !out)
        abort();
    for (int64_t r = 0; r < rowskv; r++)
        for (int64_t h = 0; h < hkv; h++)
            v[(r * hkv + h) * n + r % n] = 1.0f;   /* row j of every sequence is e_j */
    sattn_status st = sattn_forward(&prm, q, k, v, out, NULL);
    char what[96];
    snprintf(what, sizeof what, "p %.3g seed %llu%s%s", (double)p, (unsigned long long)seed,
             gqa ? " gqa" : "", varlen ? " varlen" : "");
    if (!tu_check(st == SATTN_OK, "dropout reveal (%s): status %d (%s)", what, (int)st, sattn_last_error()))
        goto done;

    long kept = 0, total = 0, lane_kept[4] = {0}, lane_total[4] = {0}, wrong_value = 0, wrong_rule = 0;
    double w = 1.0 / ((1.0 - (double)p) * (double)n);
    for (int64_t b = 0; b < B; b++) {
        int64_t len_q = varlen ? cu_q[b + 1] - cu_q[b] : Sq;
        for (int64_t i = 0; i < len_q; i++)
            for (int64_t h = 0; h < Hq; h++) {
                int64_t row = varlen ? cu_q[b] + i : b * Sq + i;
                const float *o = out + (row * Hq + h) * n;
                for (int64_t j = 0; j < n; j++) {
                    double x = (double)o[j];
                    int keep = x > 0.5 * w;
                    /* a kept weight is 1 / ((1-p) n), within f32 rounding */
                    if (keep ? fabs(x - w) > 1e-5 * w : x != 0.0)
                        wrong_value++;
                    if (keep != sattn_ref_dropout_keep(seed, p, b, h, i, j) && wrong_rule++ < 3)
                        printf("    %s: (b %lld, h %lld, i %lld, j %lld) %s by the library, %s by the rule\n",
                               what, (long long)b, (long long)h, (long long)i, (long long)j,
                               keep ? "kept" : "dropped", keep ? "dropped" : "kept");
                    kept += keep, total++;
                    lane_kept[j & 3] += keep, lane_total[j & 3]++;
                }
            }
    }
    tu_check(wrong_value == 0, "dropout (%s): %ld outputs neither 0 nor 1/((1-p) n)", what, wrong_value);
    tu_check(wrong_rule == 0, "dropout (%s): %ld keep decisions differ from the header's Philox rule",
             what, wrong_rule);
    double pp = (double)p, rate = (double)kept / (double)total;
    double sigma = sqrt(pp * (1.0 - pp) / (double)total);
    tu_check(fabs(rate - (1.0 - pp)) <= 5.0 * sigma,
             "dropout (%s): keep rate %.5f over %ld weights, want %.5f +- 5 sigma (%.5f)", what,
             rate, total, 1.0 - pp, 5.0 * sigma);
    for (int l = 0; l < 4; l++) {
        double lr = (double)lane_kept[l] / (double)lane_total[l];
        double ls = sqrt(pp * (1.0 - pp) / (double)lane_total[l]);
        tu_check(fabs(lr - (1.0 - pp)) <= 5.0 * ls,
                 "dropout (%s): keep rate of lane j&3 = %d is %.5f, want %.5f +- %.5f", what, l, lr,
                 1.0 - pp, 5.0 * ls);
    }
    printf("%-36s keep rate %.5f (want %.5f, 5 sigma %.5f)\n", what, rate, 1.0 - pp, 5.0 * sigma);
done:
    free(q), free(k), free(v), free(out);
}

/* ---- against the reference ---- */

static void vs_reference(void)
{
    static const float ps[] = {0.05f, 0.3f, 0.5f, 0.9f};
    for (int t = 0; t < 8; t++) {
        tu_spec s = tu_spec_basic(23, 31, 16);
        s.batch = 2, s.heads_q = 4, s.heads_kv = t % 2 ? 2 : 4;
        s.dtype = (sattn_dtype)(t % 3);
        s.dropout_p = ps[t % 4];
        s.seed = 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1);
        s.causal = (sattn_causal)(t % 3);
        s.cu_q = t >= 4, s.cu_kv = t >= 6, s.seqlens_kv = t % 3 == 1;
        s.bias = t == 5 ? 2 : 0, s.softcap = t == 7 ? 3.0f : 0.0f;
        s.batch = t >= 4 ? 3 : 2;
        tu_case c;
        tu_case_init(&c, &s);
        char label[64];
        snprintf(label, sizeof label, "dropout vs reference %d", t);
        tu_tol tol = tu_tolerance(s.dtype);
        tu_check(tu_run_case(&c, 1, &tol, label, NULL), "%s", label);
        tu_case_free(&c);
    }
}

/* ---- seeds and bits ---- */

typedef struct {
    void *out, *dq, *dk, *dv;
    float *lse;
    size_t nout, nq, nk, nv, nlse;   /* bytes */
} run_bufs;

static int run(const tu_case *c, const sattn_params *p, run_bufs *r)
{
    size_t es = (size_t)sattn_ref_dtype_size(p->dtype);
    r->nout = (size_t)c->to.count * es, r->nq = (size_t)c->tq.count * es;
    r->nk = (size_t)c->tk.count * es, r->nv = (size_t)c->tv.count * es;
    r->nlse = (size_t)c->nlse * sizeof(float);
    r->out = tu_alloc_sentinel(r->nout), r->dq = tu_alloc_sentinel(r->nq);
    r->dk = tu_alloc_sentinel(r->nk), r->dv = tu_alloc_sentinel(r->nv);
    r->lse = tu_alloc_sentinel(r->nlse);
    sattn_status st = sattn_forward(p, c->q, c->k, c->v, r->out, r->lse);
    if (st == SATTN_OK)
        st = sattn_backward(p, c->q, c->k, c->v, r->out, r->lse, c->dout, r->dq, r->dk, r->dv);
    return tu_check(st == SATTN_OK, "dropout seeds: status %d (%s)", (int)st, sattn_last_error());
}

static void free_run(run_bufs *r)
{
    free(r->out), free(r->dq), free(r->dk), free(r->dv), free(r->lse);
}

static int same_bits(const run_bufs *a, const run_bufs *b)
{
    return memcmp(a->out, b->out, a->nout) == 0 && memcmp(a->lse, b->lse, a->nlse) == 0 &&
           memcmp(a->dq, b->dq, a->nq) == 0 && memcmp(a->dk, b->dk, a->nk) == 0 &&
           memcmp(a->dv, b->dv, a->nv) == 0;
}

static void test_seeds(void)
{
    for (int dt = 0; dt < 3; dt++) {
        tu_spec s = tu_spec_basic(19, 21, 16);
        s.batch = 2, s.heads_q = 4, s.heads_kv = 2, s.dtype = (sattn_dtype)dt;
        s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.seqlens_q = 1;
        tu_case c;
        tu_case_init(&c, &s);
        sattn_params p = c.p;
        run_bufs none, zero_seeded, a1, a2, b, hi;

        /* p = 0 is off: the seed must not matter, bit for bit */
        p.dropout_p = 0.0f, p.seed = 0;
        run(&c, &p, &none);
        p.seed = 0xfeedfacecafebeefull;
        run(&c, &p, &zero_seeded);
        tu_check(same_bits(&none, &zero_seeded),
                 "dropout_p = 0 with a seed differs from no dropout (dtype %d)", dt);

        /* same seed, same bits; another seed, other bits */
        p.dropout_p = 0.5f, p.seed = 1;
        run(&c, &p, &a1);
        run(&c, &p, &a2);
        tu_check(same_bits(&a1, &a2), "dropout: the same seed gave different bits (dtype %d)", dt);
        p.seed = 2;
        run(&c, &p, &b);
        tu_check(memcmp(a1.out, b.out, a1.nout) != 0 && memcmp(a1.dv, b.dv, a1.nv) != 0,
                 "dropout: seeds 1 and 2 gave the same out / dv (dtype %d)", dt);
        p.seed = 1 + (1ull << 32);   /* differs only in the key's high word */
        run(&c, &p, &hi);
        tu_check(memcmp(a1.out, hi.out, a1.nout) != 0,
                 "dropout: seeds 1 and 1 + 2^32 gave the same out: the high 32 bits are ignored (dtype %d)", dt);
        /* lse is of the weights before dropout: the same as without dropout */
        long lse_bad = 0;
        for (int64_t x = 0; x < c.nlse; x++) {
            double l0 = none.lse[x], l1 = a1.lse[x];
            if (c.flse[x] == TU_DOMAIN && !(l0 == l1 || fabs(l0 - l1) <= 2e-5 * fmax(1.0, fabs(l0))))
                lse_bad++;
        }
        tu_check(lse_bad == 0, "dropout changed %ld lse values (dtype %d)", lse_bad, dt);
        free_run(&none), free_run(&zero_seeded), free_run(&a1), free_run(&a2), free_run(&b), free_run(&hi);
        tu_case_free(&c);
    }
}

int main(void)
{
    tu_begin();
    static const float ps[] = {0.01f, 0.1f, 0.25f, 0.5f, 0.75f, 0.9f};
    for (size_t t = 0; t < sizeof ps / sizeof ps[0]; t++)
        reveal(ps[t], 1000 + t, 0, 0);
    reveal(0.3f, 0xdeadbeef00000001ull, 1, 0);
    reveal(0.3f, 0x123456789abcdefull, 0, 1);
    reveal(0.6f, 42, 1, 1);
    vs_reference();
    test_seeds();
    return tu_summary("test_dropout");
}
