/* test_products: the forward with SATTN_PRODUCTS_BF16 against the double-precision
 * reference, over the curated grid of grid.c with every case stored as bf16 (odd sizes,
 * every mask kind, GQA, strided layouts, fully masked rows, NaN in padding, dropout,
 * the score rules), plus the extreme-logit cases.
 *
 * Tolerance (sattn.h, sattn_products): the weights are rounded to bf16 before P·V, so
 *     |out_i - ref_i| <= 2^-8 mag_i + (f32 sums) + (bf16 store of out)
 * with mag_i = sum_j dropout(P_ij) |v_j|, computed by the reference itself as the
 * forward of |v|: allowed_i = (2^-8 + 1e-5) 1.05 mag_i + 2^-8 1.05 |ref_i| (half a bf16
 * ulp of the stored out), and exactly 0 where no weight reaches the row. The scores'
 * products are exact as in the f32 mode, so lse keeps the f32 mode's tolerance.
 *
 * Where this CPU runs the bf16 products (sattn_products_run), some outputs must differ
 * from the f32 mode's (else the mode did not run); where it does not, every bit must
 * match the f32 mode. Results must not depend on the thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* The reference forward of |v|: per output element, sum_j dropout(P_ij) |v_jc|. */
static int magnitudes(const tu_case *c, double *mag, double *lse_unused)
{
    uint16_t *av = malloc(sizeof(uint16_t) * (size_t)(c->tv.count + 1));
    if (!av) return -1;
    const uint16_t *v = c->v;
    for (int64_t i = 0; i < c->tv.count; i++) av[i] = (uint16_t)(v[i] & 0x7fffu);
    int r = sattn_ref_forward(&c->p, c->q, c->k, av, mag, lse_unused);
    free(av);
    return r;
}

static long differing_cases, run_cases;
static double worst_out; /* largest error / allowed */

/* One case: products BF16 against the reference, against the f32 mode (differs or is
   bit-identical, as above), and 1 thread against 2. */
static int check_case(tu_case *c, const char *label)
{
    const size_t es = 2;
    const tu_tol base = tu_tolerance(SATTN_BF16);
    tu_bound bout = {(0x1p-8 + 1e-5) * 1.05, 0x1p-8 * 1.05, 1e-30, 0.0, TU_NORM_MAG};
    void *out = tu_alloc_sentinel((size_t)(c->to.count + 1) * es);
    void *out32 = tu_alloc_sentinel((size_t)(c->to.count + 1) * es);
    void *out1 = tu_alloc_sentinel((size_t)(c->to.count + 1) * es);
    float *lse = tu_alloc_sentinel((size_t)(c->nlse + 1) * sizeof(float));
    float *lse1 = tu_alloc_sentinel((size_t)(c->nlse + 1) * sizeof(float));
    double *rout = tu_alloc_f64(c->to.count), *rlse = tu_alloc_f64(c->nlse);
    double *mag = tu_alloc_f64(c->to.count), *mlse = tu_alloc_f64(c->nlse);
    int ok = 1;
    tu_cmp r;

    c->p.products = SATTN_PRODUCTS_F32;
    sattn_status st32 = sattn_forward(&c->p, c->q, c->k, c->v, out32, NULL);
    c->p.products = SATTN_PRODUCTS_BF16;
    sattn_set_num_threads(2);
    sattn_status st = sattn_forward(&c->p, c->q, c->k, c->v, out, lse);
    sattn_set_num_threads(1);
    sattn_status st1 = sattn_forward(&c->p, c->q, c->k, c->v, out1, lse1);
    sattn_set_num_threads(0);
    if (st != SATTN_OK || st1 != SATTN_OK || st32 != SATTN_OK) {
        printf("  %s: sattn_forward returned %d / %d / %d (%s)\n", label, (int)st, (int)st1, (int)st32,
               sattn_last_error());
        ok = 0;
        goto done;
    }
    if (sattn_ref_forward(&c->p, c->q, c->k, c->v, rout, rlse) != 0 || magnitudes(c, mag, mlse) != 0) {
        printf("  %s: the reference refused the case\n", label);
        ok = 0;
        goto done;
    }
    ok &= tu_compare("out", SATTN_BF16, out, rout, mag, c->fo, c->to.count, &bout, &r);
    if (r.worst > worst_out) worst_out = r.worst;
    ok &= tu_compare("lse", SATTN_F32, lse, rlse, NULL, c->flse, c->nlse, &base.lse, &r);
    if (memcmp(out, out1, (size_t)c->to.count * es) != 0 || memcmp(lse, lse1, (size_t)c->nlse * sizeof(float)) != 0) {
        printf("  %s: 1 and 2 threads differ\n", label);
        ok = 0;
    }
    int differs = memcmp(out, out32, (size_t)c->to.count * es) != 0;
    if (!sattn_products_run(SATTN_BF16, SATTN_PRODUCTS_BF16) && differs) {
        printf("  %s: the bf16 products do not run here, yet out differs from the f32 mode's\n", label);
        ok = 0;
    }
    differing_cases += differs;
    run_cases++;
done:
    if (!ok) printf("  in case %s: %s\n", label, tu_case_str(c));
    free(out), free(out32), free(out1), free(lse), free(lse1), free(rout), free(rlse), free(mag), free(mlse);
    return ok;
}

static void extreme(const char *label, int via_bias, double sign, sattn_dtype dt)
{
    if (dt != SATTN_BF16) return;
    tu_case c;
    tu_extreme_case_init(&c, via_bias, sign, dt);
    tu_check(check_case(&c, label), "extreme case %s", label);
    tu_case_free(&c);
}

int main(void)
{
    enum { MAX_CASES = 512 };
    tu_begin();
    const int runs = sattn_products_run(SATTN_BF16, SATTN_PRODUCTS_BF16);
    printf("kernels %s: bf16 products %s\n", sattn_isa(), runs ? "run" : "do not run (the f32 products run instead)");

    /* a bad value is refused before anything is written */
    {
        tu_spec s = tu_spec_basic(5, 5, 8);
        s.dtype = SATTN_BF16;
        tu_case c;
        tu_case_init(&c, &s);
        c.p.products = (sattn_products)7;
        unsigned char *out = tu_alloc_sentinel(64 * 2);
        sattn_status st = sattn_forward(&c.p, c.q, c.k, c.v, out, NULL);
        int untouched = 1;
        for (int i = 0; i < 128; i++) untouched &= out[i] == TU_SENTINEL;
        tu_check(st == SATTN_ERR_INVALID && untouched && strstr(sattn_last_error(), "products"),
                 "products = 7 is refused (status %d, \"%s\") and out is untouched", (int)st, sattn_last_error());
        free(out);
        tu_case_free(&c);
    }
    tu_check(sattn_products_run(SATTN_F16, SATTN_PRODUCTS_BF16) == 0 &&
                 sattn_products_run(SATTN_F32, SATTN_PRODUCTS_BF16) == 0 &&
                 sattn_products_run(SATTN_F32, SATTN_PRODUCTS_F32) == 1,
             "bf16 products run for bf16 storage only; f32 products always");

    tu_named_spec *cases = malloc(sizeof(tu_named_spec) * MAX_CASES);
    if (!cases) return 1;
    int n = tu_grid(cases, MAX_CASES, 0);
    for (int t = 0; t < n; t++) {
        tu_spec s = cases[t].s;
        s.dtype = SATTN_BF16;
        tu_case c;
        tu_case_init(&c, &s);
        int ok = check_case(&c, cases[t].label);
        tu_check(ok, "case %d: %s", t, cases[t].label);
        if (!ok) printf("FAIL %3d %s\n", t, cases[t].label);
        tu_case_free(&c);
    }
    free(cases);
    tu_for_each_extreme_case(extreme);
    /* a group's rows within one query block go to the decode path, which does not round
       the weights: those cases match the f32 mode's bits */
    printf("%ld cases, %ld with out differing from the f32 mode's; worst error / allowed %.3f\n", run_cases,
           differing_cases, worst_out);
    if (runs)
        tu_check(differing_cases > 0,
                 "the bf16 products ran: out differs from the f32 mode's in %ld of %ld cases", differing_cases,
                 run_cases);
    return tu_summary("test_products");
}
