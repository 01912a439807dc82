/* test_random: thousands of small random cases, each drawing a random combination of
 * every feature (shape, GQA, layouts, dtype, causal kind, windows, seqlens,
 * cu_seqlens, bias with random broadcast strides and -inf entries, mask, ALiBi,
 * softcap, dropout, scale, NaN/Inf in padding), forward and backward against the
 * reference. Prints the number of cases and the worst relative error.
 *
 * Usage: test_random [cases [seed]]   (default 2500 cases, seed 2024)
 * Tolerances: tu_tolerance() in testutil.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static tu_layout pick_layout(tu_rng *r)
{
    return (tu_layout)tu_range(r, TU_DEFAULT, TU_PADDED);
}

static int64_t pick_dim(tu_rng *r)
{
    static const int64_t dims[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 24, 31, 32, 40, 64};
    return dims[tu_range(r, 0, (int64_t)(sizeof dims / sizeof dims[0]) - 1)];
}

static int64_t pick_seq(tu_rng *r)
{
    if (tu_chance(r, 0.04))
        return 0;
    if (tu_chance(r, 0.1))
        return 1;
    return tu_range(r, 1, tu_chance(r, 0.2) ? 70 : 20);
}

static int64_t pick_window(tu_rng *r)
{
    return tu_chance(r, 0.65) ? 0 : tu_range(r, -2, 12);
}

/* One random spec; *bwd says whether the backward runs too (not with inputs
   broadcast by a 0 stride). */
static tu_spec random_spec(tu_rng *r, int *bwd)
{
    tu_spec s;
    s = tu_spec_basic(pick_seq(r), pick_seq(r), pick_dim(r));
    s.batch = tu_range(r, 1, 3);
    int64_t hkv = tu_range(r, 1, 3), group = tu_range(r, 1, 3);
    s.heads_q = hkv * group;
    s.heads_kv = hkv == s.heads_q && tu_chance(r, 0.5) ? 0 : hkv;
    s.head_dim_v = tu_chance(r, 0.5) ? 0 : pick_dim(r);
    s.dtype = (sattn_dtype)tu_range(r, 0, 2);
    s.lq = pick_layout(r), s.lk = pick_layout(r), s.lv = pick_layout(r), s.lo = pick_layout(r);
    s.scale = tu_chance(r, 0.6) ? 0.0f : (float)tu_unif(r, 0.01, 2.0);
    s.causal = (sattn_causal)tu_range(r, 0, 2);
    s.window_left = pick_window(r);
    s.window_right = pick_window(r);
    s.seqlens_q = tu_chance(r, 0.3);
    s.seqlens_kv = tu_chance(r, 0.3);
    s.cu_q = tu_chance(r, 0.25);
    s.cu_kv = tu_chance(r, 0.25);
    s.cu_garbage_stride = tu_chance(r, 0.3);
    s.bias = (int)tu_range(r, 0, 3) - 1;
    if (s.bias < 0)
        s.bias = 0;
    if (s.bias == 2 && tu_chance(r, 0.3)) {
        s.bias = 3;
        s.bias_bcast = (unsigned)tu_range(r, 0, 15);
    }
    s.bias_neginf = tu_chance(r, 0.5) ? 0.0 : tu_unif(r, 0.05, 0.4);
    s.bias_scale = tu_chance(r, 0.8) ? 1.0 : 5.0;
    s.mask = tu_chance(r, 0.6) ? 0 : (int)tu_range(r, 1, 2);
    s.mask_zero = tu_unif(r, 0.1, 0.6);
    s.alibi = tu_chance(r, 0.25);
    s.softcap = tu_chance(r, 0.7) ? 0.0f : (float)tu_unif(r, 0.5, 20.0);
    s.dropout_p = tu_chance(r, 0.7) ? 0.0f : (float)tu_unif(r, 0.05, 0.8);
    s.seed = tu_u64(r);
    s.nan_pad = tu_chance(r, 0.5);
    s.qk_scale = tu_chance(r, 0.7) ? 1.0 : tu_unif(r, 0.2, 3.0);
    s.data_seed = tu_u64(r);
    *bwd = 1;
    if (tu_chance(r, 0.1)) {
        /* forward only: a broadcast input (batch stride 0) */
        *bwd = 0;
        if (!s.cu_kv) {
            s.lk = TU_BCAST_BATCH;
            s.lv = tu_chance(r, 0.5) ? TU_BCAST_BATCH : s.lv;
        }
        if (!s.cu_q && tu_chance(r, 0.5))
            s.lq = TU_BCAST_BATCH;
    }
    return s;
}

int main(int argc, char **argv)
{
    tu_begin();
    int ncases = argc > 1 ? atoi(argv[1]) : 2500;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 2024;
    tu_rng r;
    tu_stats by_dtype[3];
    memset(by_dtype, 0, sizeof by_dtype);
    int failed = 0, nbwd = 0;
    tu_seed(&r, seed);
    for (int t = 0; t < ncases; t++) {
        int bwd;
        tu_spec s = random_spec(&r, &bwd);
        tu_case c;
        tu_tol tol = tu_tolerance(s.dtype);
        char label[64];
        snprintf(label, sizeof label, "random case %d (seed %llu)", t, (unsigned long long)seed);
        tu_case_init(&c, &s);
        int ok = tu_run_case(&c, bwd, &tol, label, &by_dtype[s.dtype]);
        tu_check(ok, "%s", label);
        nbwd += bwd;
        tu_case_free(&c);
        if (!ok && ++failed == 20) {
            printf("20 cases failed: details of further failures are not printed\n");
            tu_quiet = 1;
        }
    }
    tu_quiet = 0;
    printf("%d random cases (%d with backward), %d failed\n", ncases, nbwd, failed);
    static const char *names[3] = {"f32", "f16", "bf16"};
    for (int d = 0; d < 3; d++) {
        const tu_stats *st = &by_dtype[d];
        printf("%-4s worst |err| relative to max(1, max|out|) %.3g, to the gradient's largest mag %.3g;"
               " worst err / tolerance: out %.3f, lse %.3f, grad %.3f\n",
               names[d], st->max_rel_out, st->max_rel_grad, st->worst_out, st->worst_lse,
               st->worst_grad);
    }
    return tu_summary("test_random");
}
