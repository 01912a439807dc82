/* test_ref: the reference checks itself, so that the oracle of every other test is
 * trustworthy.
 *   - Philox4x32-10 against the Random123 known-answer vectors,
 *   - f16 / bf16 conversions: known answers, exhaustive round trips, round to
 *     nearest even against both neighbours, and bf16 against the carry trick,
 *   - hand-computable cases (uniform scores, a single key) of the forward,
 *   - the reference backward against central finite differences of the reference
 *     forward, in double, over every feature.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- Philox ---- */

static void test_philox(void)
{
    /* Random123 kat_vectors, "philox4x32 10": counter[4] key[2] -> output[4] */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
         0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
         0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int t = 0; t < 3; t++) {
        uint32_t out[4];
        sattn_ref_philox4x32_10(kat[t], kat[t] + 4, out);
        tu_check(memcmp(out, kat[t] + 6, sizeof out) == 0,
                 "philox known answer %d: got %08x %08x %08x %08x, want %08x %08x %08x %08x", t,
                 out[0], out[1], out[2], out[3], kat[t][6], kat[t][7], kat[t][8], kat[t][9]);
    }
    /* the keep rule uses lane j & 3 of the counter {j >> 2, i, h, b} */
    uint64_t seed = 0x0123456789abcdefull;
    for (int64_t j = 0; j < 8; j++) {
        uint32_t ctr[4] = {(uint32_t)(j >> 2), 5, 3, 2}, key[2] = {0x89abcdefu, 0x01234567u}, r[4];
        sattn_ref_philox4x32_10(ctr, key, r);
        float u = (float)(r[j & 3] >> 8) * 0x1p-24f;
        float p = 0.5f;
        tu_check(sattn_ref_dropout_keep(seed, p, 2, 3, 5, j) == (u >= p),
                 "dropout keep rule lane for j=%lld", (long long)j);
    }
    /* p = 0 keeps everything (u >= 0) */
    int all = 1;
    for (int64_t j = 0; j < 64; j++)
        all &= sattn_ref_dropout_keep(7, 0.0f, 0, 0, 0, j);
    tu_check(all, "dropout_p = 0 keeps every weight");
}

/* ---- f16 / bf16 ---- */

static void test_conversions(void)
{
    static const struct {
        float x;
        uint16_t f16;
    } f16_kat[] = {
        {1.0f, 0x3c00}, {-2.0f, 0xc000}, {65504.0f, 0x7bff}, {65519.0f, 0x7bff},
        {65520.0f, 0x7c00}, {-65520.0f, 0xfc00}, {0x1p-24f, 0x0001}, {0x1p-25f, 0x0000},
        {0x1.8p-24f, 0x0002}, {0x1p-14f, 0x0400}, {0x1.ffcp-15f, 0x0400}, {0.1f, 0x2e66},
        {1.0f + 0x1p-11f, 0x3c00}, {1.0f + 0x1.8p-10f, 0x3c02}, {3.14159265f, 0x4248},
        {INFINITY, 0x7c00}, {-INFINITY, 0xfc00}, {-0.0f, 0x8000}, {1e-9f, 0x0000},
    };
    for (size_t t = 0; t < sizeof f16_kat / sizeof f16_kat[0]; t++) {
        uint16_t got = sattn_ref_f32_to_f16(f16_kat[t].x);
        tu_check(got == f16_kat[t].f16, "f16(%a) = 0x%04x, want 0x%04x", (double)f16_kat[t].x,
                 got, f16_kat[t].f16);
    }
    static const struct {
        float x;
        uint16_t bf16;
    } bf16_kat[] = {
        {1.0f, 0x3f80}, {-2.0f, 0xc000}, {1.0f + 0x1p-8f, 0x3f80}, {1.0f + 0x1.8p-7f, 0x3f82},
        {3.14159265f, 0x4049}, {0x1.fep127f, 0x7f7f}, {3.4028235e38f, 0x7f80},
        {0x1p-133f, 0x0001}, {0x1p-126f, 0x0080}, {INFINITY, 0x7f80}, {-0.0f, 0x8000},
    };
    for (size_t t = 0; t < sizeof bf16_kat / sizeof bf16_kat[0]; t++) {
        uint16_t got = sattn_ref_f32_to_bf16(bf16_kat[t].x);
        tu_check(got == bf16_kat[t].bf16, "bf16(%a) = 0x%04x, want 0x%04x", (double)bf16_kat[t].x,
                 got, bf16_kat[t].bf16);
    }
    tu_check(isnan(sattn_ref_f16_to_f64(sattn_ref_f32_to_f16(NAN))), "f16 NaN stays NaN");
    tu_check(isnan(sattn_ref_bf16_to_f64(sattn_ref_f32_to_bf16(NAN))), "bf16 NaN stays NaN");

    /* exhaustive: every non-NaN bit pattern decodes to a value that encodes back */
    long bad16 = 0, badb16 = 0;
    for (uint32_t bits = 0; bits < 65536; bits++) {
        double a = sattn_ref_f16_to_f64((uint16_t)bits), b = sattn_ref_bf16_to_f64((uint16_t)bits);
        if (!isnan(a) && sattn_ref_f32_to_f16((float)a) != bits)
            bad16++;
        if (!isnan(b) && sattn_ref_f32_to_bf16((float)b) != bits)
            badb16++;
    }
    tu_check(bad16 == 0, "f16 exhaustive round trip: %ld patterns differ", bad16);
    tu_check(badb16 == 0, "bf16 exhaustive round trip: %ld patterns differ", badb16);

    /* random floats: the result is a nearest neighbour, ties to the even mantissa,
       and bf16 agrees with the classic carry trick on the f32 bits */
    tu_rng r;
    tu_seed(&r, 99);
    long not_nearest = 0, not_trick = 0;
    for (int t = 0; t < 200000; t++) {
        uint32_t fb = (uint32_t)tu_u64(&r);
        float x;
        if (t % 2)
            x = (float)tu_unif(&r, -70000.0, 70000.0) * (float)ldexp(1.0, (int)tu_range(&r, -30, 0));
        else
            memcpy(&x, &fb, sizeof x);
        if (isnan(x))
            continue;
        for (int fmt = 0; fmt < 2; fmt++) {
            uint16_t h = fmt ? sattn_ref_f32_to_bf16(x) : sattn_ref_f32_to_f16(x);
            double (*dec)(uint16_t) = fmt ? sattn_ref_bf16_to_f64 : sattn_ref_f16_to_f64;
            double v = dec(h);
            if (isinf(v))
                continue;
            double up = dec((uint16_t)(h + 1)), dn = h & 0x7fff ? dec((uint16_t)(h - 1)) : -v;
            double e = fabs((double)x - v), eu = fabs((double)x - up), ed = fabs((double)x - dn);
            if (!isnan(up) && (e > eu || (e == eu && (h & 1))))
                not_nearest++;
            if (!isnan(dn) && (e > ed || (e == ed && (h & 1))))
                not_nearest++;
            if (fmt) {
                uint32_t bits;
                memcpy(&bits, &x, sizeof bits);
                uint16_t trick = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
                if (trick != h)
                    not_trick++;
            }
        }
        if ((double)sattn_ref_round_f16(x) != sattn_ref_f16_to_f64(sattn_ref_f32_to_f16(x)) &&
            !isinf(sattn_ref_round_f16(x)))
            not_nearest++;
    }
    tu_check(not_nearest == 0, "f16/bf16 rounding: %ld results not the nearest-even neighbour",
             not_nearest);
    tu_check(not_trick == 0, "bf16 rounding disagrees with the carry trick %ld times", not_trick);
}

/* ---- hand-computable forward cases ---- */

/* With q = 0 every score is equal (no alibi / bias), so out[i] is the plain mean of
   the v rows query i may see; the visibility rule is written here a second time. */
static void test_uniform_visibility(void)
{
    static const struct {
        int64_t sq, skv;
        sattn_causal causal;
        int64_t wl, wr;
    } cases[] = {
        {4, 4, SATTN_CAUSAL_TOP_LEFT, 0, 0},   {3, 6, SATTN_CAUSAL_TOP_LEFT, 0, 0},
        {3, 6, SATTN_CAUSAL_BOTTOM_RIGHT, 0, 0}, {6, 3, SATTN_CAUSAL_BOTTOM_RIGHT, 0, 0},
        {5, 5, SATTN_CAUSAL_NONE, 1, 1},      {4, 7, SATTN_CAUSAL_BOTTOM_RIGHT, 2, 0},
        {7, 4, SATTN_CAUSAL_NONE, 0, 1},      {5, 8, SATTN_CAUSAL_TOP_LEFT, 1, 0},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int64_t sq = cases[t].sq, skv = cases[t].skv, dim = 2;
        sattn_params p;
        memset(&p, 0, sizeof p);
        p.batch = 1, p.seq_q = sq, p.seq_kv = skv, p.heads_q = 1, p.head_dim = dim;
        p.causal = cases[t].causal, p.window_left = cases[t].wl, p.window_right = cases[t].wr;
        double *q = tu_alloc_f64(sq * dim), *k = tu_alloc_f64(skv * dim), *v = tu_alloc_f64(skv * dim);
        double *out = tu_alloc_f64(sq * dim), *lse = tu_alloc_f64(sq);
        for (int64_t j = 0; j < skv; j++) {
            k[j * dim] = (double)j;
            v[j * dim] = (double)(1 << j);   /* a bit per key: the mean reveals the set */
            v[j * dim + 1] = 1.0;
        }
        sattn_ref_forward_f64(&p, q, k, v, out, lse);
        for (int64_t i = 0; i < sq; i++) {
            int64_t d = i + skv - sq, n = 0;
            double sum = 0.0;
            for (int64_t j = 0; j < skv; j++) {
                int vis = 1;
                if (p.causal == SATTN_CAUSAL_TOP_LEFT)
                    vis &= j <= i;
                if (p.causal == SATTN_CAUSAL_BOTTOM_RIGHT)
                    vis &= j <= d;
                if (p.window_left > 0)
                    vis &= j >= d - p.window_left;
                if (p.window_right > 0)
                    vis &= j <= d + p.window_right;
                if (vis) {
                    n++;
                    sum += (double)(1 << j);
                }
            }
            double want0 = n ? sum / (double)n : 0.0, want1 = n ? 1.0 : 0.0;
            double want_lse = n ? log((double)n) : -INFINITY;
            tu_check(fabs(out[i * dim] - want0) < 1e-12 && fabs(out[i * dim + 1] - want1) < 1e-12 &&
                         (n ? fabs(lse[i] - want_lse) < 1e-12 : lse[i] == -INFINITY),
                     "uniform visibility case %zu row %lld: out %g %g lse %g, want %g %g %g", t,
                     (long long)i, out[i * dim], out[i * dim + 1], lse[i], want0, want1, want_lse);
        }
        free(q), free(k), free(v), free(out), free(lse);
    }
}

/* One key: out = v, lse = the score, with softcap, alibi, bias spelled out. */
static void test_single_key(void)
{
    sattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = 1, p.seq_q = 3, p.seq_kv = 1, p.heads_q = 2, p.heads_kv = 1, p.head_dim = 3;
    p.head_dim_v = 2;
    p.softcap = 1.5f;
    float slopes[2] = {0.25f, 0.5f}, bias[1] = {0.75f};
    p.alibi_slopes = slopes;
    p.bias = bias;   /* all bias strides 0: one scalar */
    double q[3 * 2 * 3], k[3] = {0.5, -1.0, 2.0}, v[2] = {3.0, -4.0};
    for (int x = 0; x < 18; x++)
        q[x] = 0.1 * (x - 7);
    double out[3 * 2 * 2], lse[2 * 3];
    sattn_ref_forward_f64(&p, q, k, v, out, lse);
    int ok = 1;
    for (int i = 0; i < 3; i++)
        for (int h = 0; h < 2; h++) {
            const double *qr = q + (i * 2 + h) * 3;
            double s = (qr[0] * k[0] + qr[1] * k[1] + qr[2] * k[2]) / sqrt(3.0);
            s = 1.5 * tanh(s / 1.5);
            s -= slopes[h] * fabs((double)(i + 1 - 3 - 0));
            s += 0.75;
            ok &= fabs(lse[h * 3 + i] - s) < 1e-12;
            ok &= out[(i * 2 + h) * 2] == 3.0 && out[(i * 2 + h) * 2 + 1] == -4.0;
        }
    tu_check(ok, "single key: out = v and lse = softcap/alibi/bias score");
}

/* ---- backward vs finite differences ---- */

/* L = sum over out's elements of out * dout, out from the double reference forward. */
static double loss(const tu_case *c, const double *q, const double *k, const double *v,
                   const double *dout, double *out)
{
    memset(out, 0, sizeof(double) * (size_t)(c->to.count + 1));
    sattn_ref_forward_f64(&c->p, q, k, v, out, NULL);
    double L = 0.0;
    for (int64_t x = 0; x < c->to.count; x++)
        if (c->fo[x] == TU_DOMAIN)
            L += out[x] * dout[x];
    return L;
}

static double *to_f64(const tu_case *c, const void *data, const tu_tensor *t,
                      const unsigned char *flags)
{
    double *d = tu_alloc_f64(t->count);
    for (int64_t x = 0; x < t->count; x++)
        d[x] = flags[x] == TU_DOMAIN ? sattn_ref_load(c->p.dtype, data, x) : NAN;
    return d;
}

static void fd_case(const char *name, const tu_spec *s)
{
    tu_case c;
    tu_case_init(&c, s);
    double *q = to_f64(&c, c.q, &c.tq, c.fq), *k = to_f64(&c, c.k, &c.tk, c.fk);
    double *v = to_f64(&c, c.v, &c.tv, c.fv), *dout = to_f64(&c, c.dout, &c.to, c.fo);
    double *out = tu_alloc_f64(c.to.count);
    double *dq = tu_alloc_f64(c.tq.count), *dk = tu_alloc_f64(c.tk.count), *dv = tu_alloc_f64(c.tv.count);
    sattn_ref_backward_f64(&c.p, q, k, v, dout, dq, dk, dv);

    /* Central differences with h = 1e-5: truncation ~h^2 |L'''| ~ 1e-10 and rounding
       ~1e-16 |L| / h ~ 1e-11, so agreement to 1e-7 of the largest gradient (floor
       1e-3) is expected of a correct gradient; a wrong term is off by O(1). */
    const double h = 1e-5, tol = 1e-7;
    double *in[3] = {q, k, v}, *grad[3] = {dq, dk, dv};
    const unsigned char *fl[3] = {c.fq, c.fk, c.fv};
    int64_t n[3] = {c.tq.count, c.tk.count, c.tv.count};
    const char *names[3] = {"dq", "dk", "dv"};
    for (int t = 0; t < 3; t++) {
        double gmax = 1e-3, emax = 0.0, fd_at = 0.0, an_at = 0.0;
        int64_t at = -1;
        for (int64_t x = 0; x < n[t]; x++)
            if (fl[t][x] == TU_DOMAIN && fabs(grad[t][x]) > gmax)
                gmax = fabs(grad[t][x]);
        tu_check(gmax > 0.01, "finite differences (%s): %s is all ~0, the case tests nothing",
                 name, names[t]);
        for (int64_t x = 0; x < n[t]; x++) {
            if (fl[t][x] != TU_DOMAIN)
                continue;
            double keep = in[t][x];
            in[t][x] = keep + h;
            double lp = loss(&c, q, k, v, dout, out);
            in[t][x] = keep - h;
            double lm = loss(&c, q, k, v, dout, out);
            in[t][x] = keep;
            double fd = (lp - lm) / (2.0 * h), e = fabs(fd - grad[t][x]);
            if (!(e <= emax)) {
                emax = e;
                at = x, fd_at = fd, an_at = grad[t][x];
            }
        }
        tu_check(emax <= tol * gmax,
                 "reference %s vs finite differences (%s): max|err| %.3g > %.1g * %.3g "
                 "(at [%lld]: fd %.12g, analytic %.12g)\n  case %s",
                 names[t], name, emax, tol, gmax, (long long)at, fd_at, an_at, tu_case_str(&c));
    }
    free(q), free(k), free(v), free(dout), free(out), free(dq), free(dk), free(dv);
    tu_case_free(&c);
}

static void test_finite_differences(void)
{
    tu_spec base = tu_spec_basic(4, 5, 3);
    base.batch = 2, base.heads_q = 4, base.heads_kv = 2, base.head_dim_v = 2;
    base.qk_scale = 1.5;
    tu_spec s;

    s = base;
    fd_case("plain gqa", &s);
    s = base, s.softcap = 0.8f, s.scale = 1.3f;
    fd_case("softcap", &s);
    s = base, s.alibi = 1;
    fd_case("alibi", &s);
    s = base, s.bias = 1, s.bias_neginf = 0.2;
    fd_case("bias with -inf", &s);
    s = base, s.bias = 2, s.bias_neginf = 0.1, s.data_seed = 7;
    fd_case("broadcast bias", &s);
    s = base, s.mask = 1, s.mask_zero = 0.4;
    fd_case("mask", &s);
    s = base, s.causal = SATTN_CAUSAL_TOP_LEFT, s.window_left = 3;
    fd_case("causal top-left + window", &s);
    s = base, s.seq_q = 6, s.seq_kv = 4, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
    fd_case("causal bottom-right, seq_q > seq_kv", &s);
    s = base, s.dropout_p = 0.3f, s.seed = 42;
    fd_case("dropout (fixed mask)", &s);
    s = base, s.seqlens_q = 1, s.seqlens_kv = 1, s.lq = TU_PADDED, s.lk = TU_BHSD, s.lo = TU_PADDED;
    fd_case("seqlens, padded layouts", &s);
    s = base, s.cu_q = 1, s.cu_kv = 1, s.batch = 3, s.lv = TU_PADDED, s.data_seed = 3;
    fd_case("cu_seqlens", &s);
    s = base, s.batch = 3, s.seq_q = 7, s.seq_kv = 9, s.heads_kv = 1, s.cu_q = 1, s.seqlens_q = 1, s.seqlens_kv = 1, s.softcap = 2.0f,
    s.alibi = 1, s.bias = 2, s.bias_neginf = 0.1, s.mask = 2, s.mask_zero = 0.2,
    s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.window_left = 2, s.window_right = 1,
    s.dropout_p = 0.25f, s.seed = 9, s.lq = TU_PADDED, s.lk = TU_PADDED, s.lv = TU_PADDED,
    s.lo = TU_PADDED, s.data_seed = 11;
    fd_case("everything, MQA", &s);
}

int main(void)
{
    tu_begin();
    test_philox();
    test_conversions();
    test_uniform_visibility();
    test_single_key();
    test_finite_differences();
    return tu_summary("test_ref");
}
