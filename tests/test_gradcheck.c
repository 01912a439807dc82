/* test_gradcheck: the library's backward against central finite differences of the
 * library's own forward, on tiny f32 cases with well-conditioned inputs. This
 * checks the gradient plumbing without the reference: L = sum(out * dout), and each
 * element of q, k, v is moved by +-h through sattn_forward.
 *
 * Tolerance: h = 2^-6 gives a truncation error h^2/6 |L'''| ~ 4e-5 for these O(1)
 * inputs, and the f32 outputs (relative error ~1e-7 per element, uncorrelated between
 * the two evaluations) put ~1e-6 of noise on L, 5e-5 after dividing by 2h. So
 * |fd - grad| <= 2e-3 * max(0.1, max|grad| of the tensor) passes a correct gradient
 * with margin and fails a wrong or missing term (an O(1) relative error). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* L = sum over out's elements of out * dout, with out from the library forward. */
static double lib_loss(const tu_case *c, float *out)
{
    if (sattn_forward(&c->p, c->q, c->k, c->v, out, NULL) != SATTN_OK)
        return NAN;
    const float *dout = c->dout;
    double L = 0.0;
    for (int64_t x = 0; x < c->to.count; x++)
        if (c->fo[x] == TU_DOMAIN)
            L += (double)out[x] * (double)dout[x];
    return L;
}

static void gradcheck(const char *name, tu_spec s)
{
    tu_case c;
    s.dtype = SATTN_F32;
    tu_case_init(&c, &s);
    float *out = tu_alloc_sentinel((size_t)(c.to.count + 1) * sizeof(float));
    float *lse = tu_alloc_sentinel((size_t)(c.nlse + 1) * sizeof(float));
    float *dq = tu_alloc_sentinel((size_t)(c.tq.count + 1) * sizeof(float));
    float *dk = tu_alloc_sentinel((size_t)(c.tk.count + 1) * sizeof(float));
    float *dv = tu_alloc_sentinel((size_t)(c.tv.count + 1) * sizeof(float));
    sattn_status st = sattn_forward(&c.p, c.q, c.k, c.v, out, lse);
    if (st == SATTN_OK)
        st = sattn_backward(&c.p, c.q, c.k, c.v, out, lse, c.dout, dq, dk, dv);
    if (!tu_check(st == SATTN_OK, "gradcheck %s: library returned %d (%s)", name, (int)st,
                  sattn_last_error()))
        goto done;

    const float h = 0x1p-6f;
    float *in[3] = {c.q, c.k, c.v}, *grad[3] = {dq, dk, dv};
    const unsigned char *fl[3] = {c.fq, c.fk, c.fv};
    int64_t n[3] = {c.tq.count, c.tk.count, c.tv.count};
    const char *names[3] = {"dq", "dk", "dv"};
    for (int t = 0; t < 3; t++) {
        double gmax = 0.1, emax = 0.0, fd_at = 0.0, an_at = 0.0;
        int64_t at = -1;
        for (int64_t x = 0; x < n[t]; x++)
            if (fl[t][x] == TU_DOMAIN && fabs((double)grad[t][x]) > gmax)
                gmax = fabs((double)grad[t][x]);
        for (int64_t x = 0; x < n[t]; x++) {
            if (fl[t][x] != TU_DOMAIN)
                continue;
            float keep = in[t][x], up = keep + h, dn = keep - h;
            in[t][x] = up;
            double lp = lib_loss(&c, out);
            in[t][x] = dn;
            double lm = lib_loss(&c, out);
            in[t][x] = keep;
            double fd = (lp - lm) / ((double)up - (double)dn);
            double e = fabs(fd - (double)grad[t][x]);
            if (!(e <= emax)) {
                emax = e;
                at = x, fd_at = fd, an_at = grad[t][x];
            }
        }
        tu_check(emax <= 2e-3 * gmax,
                 "gradcheck %s: library %s vs finite differences of the library forward: "
                 "max|err| %.3g > 2e-3 * %.3g (at [%lld]: fd %.7g, backward %.7g)\n  case %s",
                 name, names[t], emax, gmax, (long long)at, fd_at, an_at, tu_case_str(&c));
        printf("%-26s %s: max|grad| %.3f, max|fd - grad| / max(0.1, max|grad|) = %.2e\n", name,
               names[t], gmax, emax / gmax);
    }
done:
    free(out), free(lse), free(dq), free(dk), free(dv);
    tu_case_free(&c);
}

int main(void)
{
    tu_begin();
    tu_spec base = tu_spec_basic(3, 5, 4);
    base.batch = 2;
    base.heads_q = 2;
    tu_spec s;

    s = base;                                              gradcheck("plain", s);
    s = base, s.heads_q = 4, s.heads_kv = 2;               gradcheck("gqa", s);
    s = base, s.heads_q = 3, s.heads_kv = 1, s.head_dim_v = 3;
    gradcheck("mqa, head_dim_v 3", s);
    s = base, s.seq_q = 6, s.seq_kv = 4, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
    gradcheck("causal bottom-right", s);
    s = base, s.seq_q = 5, s.causal = SATTN_CAUSAL_TOP_LEFT, s.window_left = 2;
    gradcheck("top-left + window", s);
    s = base, s.softcap = 1.0f, s.qk_scale = 1.5;          gradcheck("softcap", s);
    s = base, s.alibi = 1;                                 gradcheck("alibi", s);
    s = base, s.bias = 1, s.bias_neginf = 0.2;             gradcheck("bias with -inf", s);
    s = base, s.mask = 1, s.mask_zero = 0.3;               gradcheck("mask", s);
    s = base, s.dropout_p = 0.3f, s.seed = 77;             gradcheck("dropout", s);
    s = base, s.scale = 0.9f;                              gradcheck("explicit scale", s);
    s = base, s.batch = 3, s.seq_q = 5, s.seq_kv = 6, s.seqlens_q = 1, s.seqlens_kv = 1;
    gradcheck("seqlens", s);
    s = base, s.batch = 3, s.seq_q = 5, s.seq_kv = 6, s.cu_q = 1, s.cu_kv = 1;
    gradcheck("cu_seqlens", s);
    s = base, s.lq = TU_PADDED, s.lk = TU_BHSD, s.lv = TU_PADDED, s.lo = TU_PADDED;
    gradcheck("padded / bhsd layouts", s);
    s = base, s.batch = 3, s.seq_q = 5, s.seq_kv = 6, s.heads_q = 4, s.heads_kv = 2,
    s.head_dim_v = 2, s.cu_q = 1, s.seqlens_kv = 1, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT,
    s.window_left = 3, s.softcap = 2.0f, s.alibi = 1, s.bias = 2, s.bias_neginf = 0.1,
    s.mask = 2, s.mask_zero = 0.2, s.dropout_p = 0.2f, s.seed = 5, s.lq = TU_PADDED,
    s.lk = TU_PADDED, s.lv = TU_BHSD, s.lo = TU_PADDED;
    gradcheck("everything", s);
    return tu_summary("test_gradcheck");
}
