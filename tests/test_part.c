/* sattn_forward_part / sattn_backward_part: a problem cut into parts along both
 * sequence axes, at random cut points, then put back together
 *     forward:  lse = log sum_k exp(lse_k), out = sum_k exp(lse_k - lse) out_k
 *     backward: dq, dk, dv = the sums of every part's shares (given the merged out, lse)
 * as a sequence-parallel caller does it (in f32), against the double-precision
 * reference of the whole problem, with the suite's tolerances (tu_tolerance): every
 * position rule (causal both ways, window, lengths, ALiBi, bias and mask indices,
 * dropout) must be applied at global positions for this to hold. Also: one part that
 * is the whole problem gives sattn_forward's bits, and bad parts are refused with the
 * outputs untouched. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* n rows cut into up to max parts at random points; returns the count, starts in at[]
   (at[count] = n). Parts may be empty. */
static int cut(tu_rng *r, int64_t n, int max, int64_t *at)
{
    int parts = (int)tu_range(r, 1, max);
    at[0] = 0;
    for (int k = 1; k < parts; k++) at[k] = tu_range(r, 0, n);
    at[parts] = n;
    for (int x = 1; x < parts; x++) /* sort the inner cuts */
        for (int y = x; y > 1 && at[y] < at[y - 1]; y--) {
            int64_t t = at[y];
            at[y] = at[y - 1], at[y - 1] = t;
        }
    return parts;
}

/* params of the whole problem with explicit packed strides, so that a part's rows are
   a pointer offset into the whole tensors */
static sattn_params with_strides(const tu_case *c)
{
    sattn_params p = c->p;
    for (int a = 0; a < 3; a++) {
        p.q_stride[a] = c->tq.rstride[a];
        p.k_stride[a] = c->tk.rstride[a];
        p.v_stride[a] = c->tv.rstride[a];
        p.o_stride[a] = c->to.rstride[a];
    }
    return p;
}

/* One call's piece: query rows [qa, qb), key rows [ka, kb), and every head or (split)
   only head hh; its params and the element offsets of its first row and head in q, k,
   v (and dq, dk, dv) and out (and dout). */
typedef struct {
    sattn_part part;
    sattn_params p;
    int64_t eq, ek, ev, eo;
} piece;

static piece piece_of(const tu_case *c, const sattn_params *p, int split, int64_t hh, int64_t qa, int64_t qb,
                      int64_t ka, int64_t kb)
{
    const int64_t G = p->heads_q / c->tk.heads, dv = p->head_dim_v ? p->head_dim_v : p->head_dim;
    piece x = {{qa, qb - qa, ka, kb - ka, hh}, *p, 0, 0, 0, 0};
    if (split) x.p.heads_q = x.p.heads_kv = 1;
    x.eq = qa * c->tq.rstride[1] + hh * p->head_dim;
    x.ek = ka * c->tk.rstride[1] + hh / G * p->head_dim;
    x.ev = ka * c->tv.rstride[1] + hh / G * dv;
    x.eo = qa * c->to.rstride[1] + hh * dv;
    return x;
}

static int run_case(const tu_case *c, tu_rng *r, const char *label)
{
    const sattn_params p = with_strides(c);
    const int64_t B = p.batch, H = p.heads_q, Sq = p.seq_q, Skv = p.seq_kv;
    const int64_t dv = p.head_dim_v ? p.head_dim_v : p.head_dim;
    const tu_tol tol = tu_tolerance(SATTN_F32);
    int64_t qa[6], ka[6];
    const int nq = cut(r, Sq, 4, qa), nk = cut(r, Skv, 4, ka);
    const int64_t no = c->to.count, nl = c->nlse;
    float *out = calloc((size_t)no + 1, sizeof(float)), *lse = malloc(sizeof(float) * (size_t)(nl + 1));
    float *po = calloc((size_t)no + 1, sizeof(float)), *pl = malloc(sizeof(float) * (size_t)(nl + 1));
    for (int64_t x = 0; x < nl; x++) lse[x] = -INFINITY;
    int ok = 1;
    char what[160];

    /* ---- forward, part by part (and head by head with hsplit), merged through the lse ---- */
    const int hsplit = tu_chance(r, 0.3);
    const int64_t G = H / c->tk.heads, Hl = hsplit ? 1 : H;
    for (int64_t hh = 0; hh < (hsplit ? H : 1); hh++)
    for (int a = 0; a < nq && ok; a++)
        for (int b = 0; b < nk && ok; b++) {
            const piece x = piece_of(c, &p, hsplit, hh, qa[a], qa[a + 1], ka[b], ka[b + 1]);
            const sattn_part part = x.part;
            const int64_t rows = part.q_rows;
            sattn_status st = sattn_forward_part(&x.p, &part, (const float *)c->q + x.eq, (const float *)c->k + x.ek,
                                                 (const float *)c->v + x.ev, po + x.eo, pl);
            ok &= tu_check(st == SATTN_OK, "%s: forward part q[%lld,+%lld) kv[%lld,+%lld) heads %lld+%lld: %s", label,
                           (long long)part.q_start, (long long)rows, (long long)part.kv_start,
                           (long long)part.kv_rows, (long long)hh, (long long)Hl, sattn_last_error());
            for (int64_t bb = 0; ok && bb < B; bb++)
                for (int64_t hl = 0; hl < Hl; hl++)
                    for (int64_t i = 0; i < rows; i++) {
                        const int64_t h = hh + hl;
                        float lp = pl[(bb * Hl + hl) * rows + i];
                        float *la = &lse[(bb * H + h) * Sq + qa[a] + i];
                        float *oa = out + tu_offset(&c->to, bb, qa[a] + i, h);
                        const float *op = po + tu_offset(&c->to, bb, qa[a] + i, h);
                        if (lp == -INFINITY) continue; /* nothing visible in this part */
                        float m = *la > lp ? *la : lp;
                        float l = m + logf(expf(*la - m) + expf(lp - m));
                        float fa = expf(*la - l), fp = expf(lp - l);
                        for (int64_t e = 0; e < dv; e++) oa[e] = fa * oa[e] + fp * op[e];
                        *la = l;
                    }
        }
    if (!ok) goto done;
    double *rout = tu_alloc_f64(no), *rlse = tu_alloc_f64(nl);
    sattn_ref_forward(&c->p, c->q, c->k, c->v, rout, rlse);
    tu_cmp res;
    /* Each merge weighs a part by exp(lse_k - lse) from f32 lse values, each off by up
       to half an ulp of |lse|: a relative error of |lse| 2^-24 per rounding, two per
       merge (the part's lse and the running one). Under ordinary scores (|lse| ~ 10)
       that is far below the suite's 1e-5; sharp ones (qk_scale 8: |lse| in the
       hundreds) reach it, so the bound grows with the largest |lse|. */
    double lmax = 0;
    for (int64_t x = 0; x < nl; x++)
        if (isfinite(rlse[x]) && fabs(rlse[x]) > lmax) lmax = fabs(rlse[x]);
    tu_bound ob = tol.out;
    ob.atol += 2.0 * nk * lmax * 0x1p-24;
    snprintf(what, sizeof what, "%s: merged out (%d x %d parts)", label, nq, nk);
    ok &= tu_compare(what, SATTN_F32, out, rout, NULL, c->fo, no, &ob, &res);
    snprintf(what, sizeof what, "%s: merged lse", label);
    ok &= tu_compare(what, SATTN_F32, lse, rlse, NULL, c->flse, nl, &tol.lse, &res);
    free(rout);
    free(rlse);
    tu_check(ok, "%s: forward parts", label);
    if (!ok) goto done;

    /* ---- backward: the sum of every part's shares ---- */
    {
        const int64_t n3[3] = {c->tq.count, c->tk.count, c->tv.count};
        float *acc[3], *tmp[3];
        double *ref[3], *mag[3];
        for (int t = 0; t < 3; t++) {
            acc[t] = calloc((size_t)n3[t] + 1, sizeof(float));
            tmp[t] = calloc((size_t)n3[t] + 1, sizeof(float));
            ref[t] = tu_alloc_f64(n3[t]);
            mag[t] = tu_alloc_f64(n3[t]);
        }
        const tu_tensor *ts[3] = {&c->tq, &c->tk, &c->tv};
        for (int64_t hh = 0; hh < (hsplit ? H : 1); hh++)
        for (int a = 0; a < nq && ok; a++)
            for (int b = 0; b < nk && ok; b++) {
                const piece x = piece_of(c, &p, hsplit, hh, qa[a], qa[a + 1], ka[b], ka[b + 1]);
                const sattn_part part = x.part;
                /* the part's lse rows, packed [batch][heads][q_rows] */
                for (int64_t bb = 0; bb < B; bb++)
                    for (int64_t hl = 0; hl < Hl; hl++)
                        for (int64_t i = 0; i < part.q_rows; i++)
                            pl[(bb * Hl + hl) * part.q_rows + i] = lse[(bb * H + hh + hl) * Sq + qa[a] + i];
                sattn_status st = sattn_backward_part(&x.p, &part, (const float *)c->q + x.eq,
                                                      (const float *)c->k + x.ek, (const float *)c->v + x.ev,
                                                      out + x.eo, pl, (const float *)c->dout + x.eo, tmp[0] + x.eq,
                                                      tmp[1] + x.ek, tmp[2] + x.ev);
                ok &= tu_check(st == SATTN_OK, "%s: backward part: %s", label, sattn_last_error());
                /* add the rows and heads this part wrote */
                const int64_t r0[3] = {qa[a], ka[b], ka[b]}, rn[3] = {part.q_rows, part.kv_rows, part.kv_rows};
                const int64_t h0[3] = {hh, hh / G, hh / G};
                const int64_t hn[3] = {Hl, hsplit ? 1 : ts[1]->heads, hsplit ? 1 : ts[2]->heads};
                for (int t = 0; ok && t < 3; t++)
                    for (int64_t bb = 0; bb < B; bb++)
                        for (int64_t i = r0[t]; i < r0[t] + rn[t]; i++)
                            for (int64_t h = h0[t]; h < h0[t] + hn[t]; h++) {
                                int64_t o = tu_offset(ts[t], bb, i, h);
                                for (int64_t e = 0; e < ts[t]->dim; e++) acc[t][o + e] += tmp[t][o + e];
                            }
            }
        if (ok) {
            sattn_ref_backward(&c->p, c->q, c->k, c->v, c->dout, ref[0], ref[1], ref[2]);
            sattn_ref_backward_mag(&c->p, c->q, c->k, c->v, c->dout, tol.grad_d_floor, mag[0], mag[1], mag[2]);
            const unsigned char *fl[3] = {c->fq, c->fk, c->fv};
            const char *names[3] = {"dq", "dk", "dv"};
            for (int t = 0; t < 3; t++) {
                snprintf(what, sizeof what, "%s: summed %s", label, names[t]);
                ok &= tu_compare(what, SATTN_F32, acc[t], ref[t], mag[t], fl[t], n3[t], &tol.grad, &res);
            }
            tu_check(ok, "%s: backward parts", label);
        }
        for (int t = 0; t < 3; t++) free(acc[t]), free(tmp[t]), free(ref[t]), free(mag[t]);
    }
done:
    if (!ok) printf("  in case %s: %s\n", label, tu_case_str(c));
    free(out);
    free(lse);
    free(po);
    free(pl);
    return ok;
}

/* One part spanning the whole problem is sattn_forward, bit for bit. */
static void whole_is_forward(const tu_case *c, const char *label)
{
    const int64_t no = c->to.count, nl = c->nlse;
    float *o1 = calloc((size_t)no + 1, sizeof(float)), *o2 = calloc((size_t)no + 1, sizeof(float));
    float *l1 = calloc((size_t)nl + 1, sizeof(float)), *l2 = calloc((size_t)nl + 1, sizeof(float));
    sattn_part all = {0, c->p.seq_q, 0, c->p.seq_kv, 0};
    sattn_status s1 = sattn_forward(&c->p, c->q, c->k, c->v, o1, l1);
    sattn_status s2 = sattn_forward_part(&c->p, &all, c->q, c->k, c->v, o2, l2);
    tu_check(s1 == SATTN_OK && s2 == SATTN_OK && !memcmp(o1, o2, sizeof(float) * (size_t)no) &&
                 !memcmp(l1, l2, sizeof(float) * (size_t)nl),
             "%s: the whole problem as one part differs from sattn_forward", label);
    free(o1), free(o2), free(l1), free(l2);
}

static void refusals(void)
{
    tu_spec s = tu_spec_basic(8, 8, 4);
    tu_case c;
    tu_case_init(&c, &s);
    float out[8 * 4 + 1], lse[9];
    memset(out, 0x5a, sizeof out);
    memset(lse, 0x5a, sizeof lse);
    const unsigned char sentinel = 0x5a;
    struct {
        sattn_part part;
        const char *why;
    } bad[] = {
        {{-1, 2, 0, 8, 0}, "q_start < 0"},
        {{7, 2, 0, 8, 0}, "q rows past seq_q"},
        {{0, 8, 3, 6, 0}, "kv rows past seq_kv"},
        {{0, -1, 0, 8, 0}, "q_rows < 0"},
        {{0, 8, 9, 0, 0}, "kv_start past seq_kv"},
    };
    for (size_t x = 0; x < sizeof bad / sizeof bad[0]; x++) {
        sattn_status st = sattn_forward_part(&c.p, &bad[x].part, c.q, c.k, c.v, out, lse);
        tu_check(st == SATTN_ERR_INVALID && strstr(sattn_last_error(), "part"),
                 "part with %s: status %d, message '%s'", bad[x].why, (int)st, sattn_last_error());
    }
    sattn_part ok = {0, 8, 0, 8, 0};
    tu_check(sattn_forward_part(&c.p, NULL, c.q, c.k, c.v, out, lse) == SATTN_ERR_INVALID, "NULL part accepted");
    tu_check(sattn_forward_part(NULL, &ok, c.q, c.k, c.v, out, lse) == SATTN_ERR_INVALID, "NULL params accepted");
    int32_t cu[2] = {0, 8};
    sattn_params pc = c.p;
    pc.cu_seqlens_q = cu;
    tu_check(sattn_forward_part(&pc, &ok, c.q, c.k, c.v, out, lse) == SATTN_ERR_UNSUPPORTED &&
                 strstr(sattn_last_error(), "cu_seqlens"),
             "a part with cu_seqlens_q: not refused as unsupported ('%s')", sattn_last_error());
    /* a mask whose strides reach past int64 for the WHOLE problem, though not for the part */
    uint8_t m = 1;
    sattn_params pm = c.p;
    pm.mask = &m;
    pm.mask_stride[2] = INT64_MAX / 4;
    sattn_part small = {0, 1, 0, 8, 0};
    tu_check(sattn_forward_part(&pm, &small, c.q, c.k, c.v, out, lse) == SATTN_ERR_INVALID,
             "a mask too large for the whole problem passed with a one-row part");
    int untouched = 1;
    for (size_t x = 0; x < sizeof out; x++) untouched &= ((unsigned char *)out)[x] == sentinel;
    for (size_t x = 0; x < sizeof lse; x++) untouched &= ((unsigned char *)lse)[x] == sentinel;
    tu_check(untouched, "a refused part wrote its outputs");
    tu_case_free(&c);
}

int main(int argc, char **argv)
{
    tu_begin();
    int cases = argc > 1 ? atoi(argv[1]) : 300;
    tu_rng r;
    tu_seed(&r, 20261203);
    static const int64_t sizes[] = {1, 2, 7, 16, 33, 63, 65, 100, 130};
    static const int64_t dims[] = {1, 8, 16, 32, 64, 65};
    int failed = 0;
    refusals();
    for (int n = 0; n < cases; n++) {
        tu_spec s = tu_spec_basic(sizes[tu_range(&r, 0, 8)], sizes[tu_range(&r, 0, 8)], dims[tu_range(&r, 0, 5)]);
        if (n % 4 == 0) s.seq_kv = s.seq_q; /* self-attention shapes often */
        s.batch = tu_range(&r, 1, 2);
        s.heads_kv = tu_range(&r, 1, 2);
        s.heads_q = s.heads_kv * tu_range(&r, 1, 3); /* MHA, GQA */
        if (tu_chance(&r, 0.2)) s.head_dim_v = dims[tu_range(&r, 1, 5)];
        s.causal = (sattn_causal)tu_range(&r, 0, 2);
        if (tu_chance(&r, 0.3)) s.window_left = tu_range(&r, 1, 40);
        if (tu_chance(&r, 0.2)) s.window_right = tu_range(&r, 1, 40);
        s.seqlens_q = tu_chance(&r, 0.25);
        s.seqlens_kv = tu_chance(&r, 0.25);
        s.alibi = tu_chance(&r, 0.2);
        if (tu_chance(&r, 0.15)) s.softcap = 5.0f;
        if (tu_chance(&r, 0.15)) s.bias = 1, s.bias_neginf = 0.1;
        if (tu_chance(&r, 0.15)) s.mask = 1, s.mask_zero = 0.3;
        if (tu_chance(&r, 0.3)) s.dropout_p = 0.2f, s.seed = tu_u64(&r);
        if (tu_chance(&r, 0.1)) s.qk_scale = 8.0; /* sharp softmax: the merge must stay exact */
        s.data_seed = tu_u64(&r);
        tu_case c;
        if (tu_case_init(&c, &s) != 0) {
            tu_check(0, "case %d: out of memory", n);
            break;
        }
        char label[32];
        snprintf(label, sizeof label, "case %d", n);
        if (n % 10 == 0) whole_is_forward(&c, label);
        failed += !run_case(&c, &r, label);
        tu_case_free(&c);
        if (failed > 5) break;
    }
    printf("part: %d cases, %d failed\n", cases, failed);
    return tu_summary("part");
}
