/* test_forward: the library's forward against the double-precision reference over the
 * curated grid of grid.c: odd and empty sequence lengths (0, 1, 7, 63, 65, 257, 1000,
 * seq_q != seq_kv both ways), head dims 8..256 and head_dim_v != head_dim, every
 * masking and scoring feature on its own, layouts (default, explicit BSHD, BHSD,
 * padded strides, broadcast inputs), f32 / f16 / bf16 storage, and combinations.
 * Tolerances: tu_tolerance() in testutil.c, where each is derived. */
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

#define MAX_CASES 512

/* Optional arguments: the first and last case to run (for debugging one case). */
int main(int argc, char **argv)
{
    tu_begin();
    tu_named_spec *cases = malloc(sizeof(tu_named_spec) * MAX_CASES);
    tu_stats all = {0};
    if (!cases)
        return 1;
    int n = tu_grid(cases, MAX_CASES, 0);
    int first = argc > 1 ? atoi(argv[1]) : 0, last = argc > 2 ? atoi(argv[2]) : n - 1;
    for (int t = first; t <= last && t < n; t++) {
        tu_case c;
        tu_stats st = {0};
        tu_tol tol = tu_tolerance(cases[t].s.dtype);
        tu_case_init(&c, &cases[t].s);
        int ok = tu_run_case(&c, 0, &tol, cases[t].label, &st);
        tu_check(ok, "forward case %d: %s", t, cases[t].label);
        printf("%-4s %3d %-44s err/tol out %.3f lse %.3f\n", ok ? "ok" : "FAIL", t,
               cases[t].label, st.worst_out, st.worst_lse);
        if (st.worst_out > all.worst_out) all.worst_out = st.worst_out;
        if (st.worst_lse > all.worst_lse) all.worst_lse = st.worst_lse;
        tu_case_free(&c);
    }
    printf("%d cases; worst error / tolerance: out %.3f, lse %.3f\n", n, all.worst_out,
           all.worst_lse);
    free(cases);
    return tu_summary("test_forward");
}
