/* Peak memory of one long forward: seq_q = seq_kv = N (default 65536), one head,
 * head_dim 64, f32. The fused forward must stay under inputs + outputs + 64 MiB:
 * it never holds an N x N matrix. Exits 1 if the bound is broken.
 *
 *   peak_memory [N] [head_dim] [causal 0|1]
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sattn.h"
#include "timing.h"

/* Peak resident memory of this process image: VmHWM on Linux (getrusage's maxrss
   would carry over the peak of a process that exec'd this one). */
static double peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        long kib = -1;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
        fclose(f);
        if (kib >= 0) return kib / 1024.0;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? atoll(argv[1]) : 65536;
    int64_t d = argc > 2 ? atoll(argv[2]) : 64;
    int causal = argc > 3 ? atoi(argv[3]) : 0;
    if (n < 1 || d < 1) {
        fprintf(stderr, "usage: peak_memory [N >= 1] [head_dim >= 1] [causal 0|1]\n");
        return 2;
    }
    double before = peak_rss_mib();

    size_t elems = (size_t)n * (size_t)d;
    float *q = malloc(elems * sizeof(float)), *k = malloc(elems * sizeof(float));
    float *v = malloc(elems * sizeof(float)), *out = malloc(elems * sizeof(float));
    float *lse = malloc((size_t)n * sizeof(float));
    if (!q || !k || !v || !out || !lse) {
        fprintf(stderr, "peak_memory: cannot allocate the inputs\n");
        return 2;
    }
    /* touch everything so the inputs and outputs are resident before we measure */
    uint32_t x = 12345;
    for (size_t i = 0; i < elems; i++) {
        x = x * 1664525u + 1013904223u;
        q[i] = (float)(x >> 8) * 0x1p-24f - 0.5f;
        k[i] = (float)((x * 747796405u) >> 8) * 0x1p-24f - 0.5f;
        v[i] = (float)((x ^ (x >> 13)) >> 8) * 0x1p-24f - 0.5f;
    }
    memset(out, 0, elems * sizeof(float));
    memset(lse, 0, (size_t)n * sizeof(float));
    double io_mib = (4.0 * (double)elems + (double)n) * sizeof(float) / (1024.0 * 1024.0);

    sattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = 1, p.seq_q = n, p.seq_kv = n, p.heads_q = 1, p.head_dim = d;
    p.causal = causal ? SATTN_CAUSAL_TOP_LEFT : SATTN_CAUSAL_NONE;
    double t0 = bench_seconds();
    sattn_status st = sattn_forward(&p, q, k, v, out, lse);
    double t1 = bench_seconds();
    if (st != SATTN_OK) {
        fprintf(stderr, "peak_memory: sattn_forward failed: %s\n", sattn_last_error());
        return 1;
    }
    double peak = peak_rss_mib();
    double extra = peak - before - io_mib;
    double flops = 4.0 * (double)n * (double)n * (double)d * (causal ? 0.5 : 1.0);
    printf("forward N=%lld head_dim=%lld %s: %.2f s, %.1f GFLOP/s, %d threads, isa %s\n",
           (long long)n, (long long)d, causal ? "causal" : "non-causal", t1 - t0,
           flops / (t1 - t0) * 1e-9, sattn_get_num_threads(), sattn_isa());
    printf("process before: %.1f MiB, inputs+outputs: %.1f MiB, peak: %.1f MiB, "
           "extra over inputs+outputs: %.1f MiB (bound 64 MiB; an N x N f32 matrix is %.0f MiB)\n",
           before, io_mib, peak, extra, (double)n * (double)n * 4.0 / (1024.0 * 1024.0));
    int ok = extra < 64.0;
    printf("%s\n", ok ? "PASS: peak memory within inputs + outputs + 64 MiB"
                      : "FAIL: peak memory over inputs + outputs + 64 MiB");
    free(q), free(k), free(v), free(out), free(lse);
    return ok ? 0 : 1;
}
