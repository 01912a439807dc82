/* test_backward: the library's backward against the double-precision reference over the
 * curated grid of grid.c: odd and empty sequence lengths (0, 1, 7, 63, 65, 257, 1000,
 * seq_q != seq_kv both ways), head dims 8..256 and head_dim_v != head_dim, every
 * masking and scoring feature on its own, layouts (default, explicit BSHD, BHSD,
 * padded strides), f32 / f16 / bf16 storage, and combinations.
 * Tolerances: tu_tolerance() in testutil.c, where each is derived. */
#include "testutil.h"

/* Optional arguments: the first and last case to run (for debugging one case). */
int main(int argc, char **argv) { return tu_grid_main(argc, argv, 1, "test_backward"); }
