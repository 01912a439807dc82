/* test_policy: how many threads a call gets.
 *   - the default count is OpenMP's, so OMP_NUM_THREADS is honoured (ctest runs this
 *     once more with OMP_NUM_THREADS=3 and SATTN_EXPECT_THREADS=3);
 *   - sattn_set_num_threads bounds it, 0 returns to the default;
 *   - work of a few thousand flops gets one thread, a teraflop the whole count;
 *   - the answer never changes a result (test_threads checks the bits).
 */
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

#ifdef _OPENMP
#include <omp.h>
#endif

int main(void)
{
    tu_begin();
#ifdef _OPENMP
    const int omp_default = omp_get_max_threads();
#else
    const int omp_default = 1;
#endif
    const int def = sattn_get_num_threads();
    tu_check(def == omp_default, "the default count %d is OpenMP's %d (OMP_NUM_THREADS honoured)", def, omp_default);
    const char *want = getenv("SATTN_EXPECT_THREADS");
    if (want)
        tu_check(def == atoi(want), "with OMP_NUM_THREADS=%s the default count is %d", want, def);
    tu_check(sattn_suggest_threads(1e3) == 1, "1e3 flops: %d threads, want 1", sattn_suggest_threads(1e3));
    tu_check(sattn_suggest_threads(0.0) == 1 && sattn_suggest_threads(-5.0) == 1 &&
                 sattn_suggest_threads(0.0 / 0.0) == 1,
             "no work (0, negative, NaN): one thread");
    tu_check(sattn_suggest_threads(1e13) == def, "1e13 flops: %d threads, want the whole count %d",
             sattn_suggest_threads(1e13), def);
#ifdef _OPENMP
    sattn_set_num_threads(3);
    tu_check(sattn_get_num_threads() == 3 && sattn_suggest_threads(1e13) == 3, "set 3: count %d, suggested %d",
             sattn_get_num_threads(), sattn_suggest_threads(1e13));
    sattn_set_num_threads(0);
    tu_check(sattn_get_num_threads() == def, "set 0: back to the default %d (got %d)", def, sattn_get_num_threads());
#endif
    return tu_summary("test_policy");
}
