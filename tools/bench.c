/* sattn bench: runs the benchmark program (bench/bench.c), which is built beside the
 * library where OpenBLAS is found and installed in libexec/sattn, with the same
 * arguments. It stays its own program: it links OpenBLAS, which this one does not
 * need, and sets OPENBLAS_CORETYPE before OpenBLAS loads. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char bench_help[] =
    "usage: sattn bench [--quick] [--reps R] [--only fwd|bwd|layer|decode|mem]\n"
    "\n"
    "Measures this machine's FMA peak and memory read bandwidth, then times sattn\n"
    "against unfused attention on OpenBLAS (cblas_sgemm for Q K^T and P V, a vectorized\n"
    "softmax) on the same inputs: the forward and backward at 512 to 4096 tokens, head\n"
    "dims 64 and 128, full and causal, f32 and bf16; the multi-head layer; decode of one\n"
    "token against a 4096-token KV cache; the peak memory of a 65536-token forward.\n"
    "A progress line on stderr names the case being timed; the table (median time,\n"
    "GFLOP/s, % of the measured peak or bandwidth, baseline time, speedup) is printed\n"
    "on stdout at the end, with the CPU and the OpenBLAS it ran on. Measured on 2-core\n"
    "machines, --quick takes 15 s (AMD Zen 5) to 2.5 min (Zen 2 with the other core\n"
    "busy); the whole run about four times as long.\n"
    "\n"
    "  --quick          512 and 1024 tokens only\n"
    "  --reps R         runs per case; the median is reported (default 5)\n"
    "  --only GROUP     one group: fwd, bwd, layer, decode or mem\n"
    "\n"
    "Needs the benchmark program, built when OpenBLAS with cblas.h is found (Debian:\n"
    "libopenblas-openmp-dev), on x86-64 with OpenMP.\n"
    "\n";

int cli_bench(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            fputs(bench_help, stdout);
            fputs(cli_exit_codes_help, stdout);
            return CLI_OK;
        }
#ifndef SATTN_BENCH_PATH
    (void)argv;
    cli_error("bench", "this sattn was built without the benchmark program, which needs OpenBLAS with cblas.h "
                       "(Debian: apt-get install libopenblas-openmp-dev), x86-64, OpenMP and SATTN_BUILD_BENCH=ON: "
                       "install them and build again");
    return CLI_ERR_RUNTIME;
#else
    /* installed: SATTN_BENCH_RELPATH from the directory of this program; in the build
       tree: where CMake built it */
    char self[PATH_MAX], installed[PATH_MAX + 64];
    const char *candidates[2] = {NULL, SATTN_BENCH_PATH};
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(installed, sizeof installed, "%s/%s", self, SATTN_BENCH_RELPATH);
            candidates[0] = installed;
        }
    }
    for (int c = 0; c < 2; c++) {
        if (!candidates[c] || access(candidates[c], X_OK) != 0) continue;
        char **args = calloc((size_t)argc + 1, sizeof *args);
        if (!args) return cli_error("bench", "out of memory"), CLI_ERR_RUNTIME;
        args[0] = (char *)"sattn bench"; /* its messages then name the command the user ran */
        for (int i = 1; i < argc; i++) args[i] = argv[i];
        fflush(NULL);
        execv(candidates[c], args);
        cli_error("bench", "cannot run %s: %s", candidates[c], strerror(errno));
        free(args);
        return CLI_ERR_RUNTIME;
    }
    cli_error("bench", "the benchmark program is missing (looked for %s%s%s): build the 'bench' target",
              candidates[0] ? candidates[0] : "", candidates[0] ? " and " : "", SATTN_BENCH_PATH);
    return CLI_ERR_RUNTIME;
#endif
}
