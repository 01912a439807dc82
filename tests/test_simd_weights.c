/* The AVX2 softmax-weight primitives (simd.h: sv_exp2_weight, sv_exp_weight) against
 * exp2 and exp in double precision, and against the bits of sv_exp2 and sv_exp where
 * simd.h says they agree: n = round(x) (or round(x log2 e)) in [-127, 126], 0 below
 * that range, inf above, NaN kept. This file alone is compiled with -mavx2 -mfma
 * -mf16c; where the library would not run its AVX2 table (sattn__cpu_runs) it reports
 * itself skipped (77).
 *
 * Tolerance against double: 2 ulps of the result where it is normal (the polynomials
 * are Cephes', within about 1 ulp on their range, plus the rounding of the products),
 * and 2^-149 absolutely where it is subnormal. */
#define SATTN_SIMD_AVX2
#include <immintrin.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

static int failures;

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* x log2 e rounded to float, as sv_exp_weight computes it (C11: no contraction) */
static float fl_mul_log2e(float x) { return x * 1.44269504088896341f; }

static float lane0(sv v)
{
    float out[SV_N];
    sv_store(out, v);
    return out[0];
}

static void fail(const char *what, float x, float got, double want)
{
    if (failures++ < 10) printf("FAIL: %s(%a) = %a, want %a\n", what, (double)x, (double)got, want);
}

/* one argument: base2 selects exp2 */
static void check(int base2, float x)
{
    const char *name = base2 ? "sv_exp2_weight" : "sv_exp_weight";
    const float got = lane0(base2 ? sv_exp2_weight(sv_set1(x)) : sv_exp_weight(sv_set1(x)));
    const float full = lane0(base2 ? sv_exp2(sv_set1(x)) : sv_exp(sv_set1(x)));
    const double y = base2 ? (double)x : (double)fl_mul_log2e(x);
    const double n = nearbyint(y); /* the n of simd.h: round to nearest even */
    if (isnan(x)) {
        if (!isnan(got)) fail(name, x, got, NAN);
        return;
    }
    if (n < -127.0) { /* below the range: 0 */
        if (got != 0.0f) fail(name, x, got, 0.0);
        return;
    }
    if (n > 126.0) { /* above: inf */
        if (!isinf(got) || got < 0) fail(name, x, got, INFINITY);
        return;
    }
    if (bits_of(got) != bits_of(full)) fail(name, x, got, (double)full);
    const double want = base2 ? exp2((double)x) : exp((double)x);
    const double tol = want < 0x1p-126 ? 0x1p-149 : 2.0 * want * 0x1p-24;
    if (!(fabs((double)got - want) <= tol)) fail(name, x, got, want);
}

static void check_both(float x)
{
    check(1, x);
    check(0, x);
}

int main(void)
{
    if (!sattn__cpu_runs("avx2")) { /* the dispatcher's rule: AVX2, FMA and F16C */
        printf("SKIP: this CPU lacks AVX2, FMA or F16C: the AVX2 weights were not tested\n");
        return 77;
    }
    long count = 0;
    /* every 97th float of [-200, 200] by its bits, both signs */
    const uint32_t top = bits_of(200.0f);
    for (uint32_t u = 0; u <= top; u += 97) {
        float x;
        memcpy(&x, &u, sizeof x);
        check_both(x);
        check_both(-x);
        count += 4;
    }
    /* the ties and the edges of the range: every multiple of 1/2 in [-130, 130] and the
       floats either side of it, and for exp the arguments whose x log2 e lands there */
    for (int h = -260; h <= 260; h++) {
        const float t = 0.5f * (float)h, te = t / 1.44269504088896341f;
        const float xs[6] = {t, nextafterf(t, -INFINITY), nextafterf(t, INFINITY),
                             te, nextafterf(te, -INFINITY), nextafterf(te, INFINITY)};
        for (int i = 0; i < 6; i++) check_both(xs[i]);
        count += 12;
    }
    const float special[] = {-INFINITY, INFINITY, NAN, -NAN, 0.0f, -0.0f, -1e30f, 1e30f, -FLT_MAX, FLT_MAX};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) check_both(special[i]);
    /* what simd.h promises of the ends themselves */
    if (lane0(sv_exp2_weight(sv_set1(-INFINITY))) != 0.0f || lane0(sv_exp_weight(sv_set1(-INFINITY))) != 0.0f)
        fail("weight of -inf", -INFINITY, 1.0f, 0.0);
    if (lane0(sv_exp2_weight(sv_set1(0.0f))) != 1.0f || lane0(sv_exp_weight(sv_set1(0.0f))) != 1.0f)
        fail("weight of 0", 0.0f, 0.0f, 1.0);
    printf("simd weights (avx2): %ld values, %d failures\n", count, failures);
    printf("test_simd_weights: %s\n", failures ? "FAIL" : "PASS");
    return failures != 0;
}
