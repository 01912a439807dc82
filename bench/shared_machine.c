/* sattn on a shared machine: the same calls with the default thread count and with one
 * thread, on an idle machine and with a peer process busy on one core, side by side.
 *
 *   shared_machine [--busy] [--reps R]
 *
 * --busy starts a child that spins on the CPU for the whole run (the peer). Cases:
 *   small   3000 causal forwards, B=1 H=4 N=96 d=64 (decoding-sized calls)
 *   mid     100 causal forwards, B=1 H=8 N=512 d=64
 *   large   10 forwards, B=1 H=8 N=2048 d=64
 *   layer   50 forward+backward steps of the layer, B=4 N=64 E=256 H=4 (the demo's size)
 * For each: wall seconds and the CPU seconds the process used (both threads), median
 * of R runs (default 3), default threads first, then one thread, alternating.
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sattn.h"
#include "timing.h"

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

typedef struct {
    const char *name;
    int calls, B, H, N, D, causal;
} fwd_case;

static void fill(float *x, size_t n)
{
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)(s >> 40) * 0x1p-24f - 0.5f;
    }
}

/* wall and CPU seconds of c.calls forwards */
static void run_fwd(const fwd_case *c, double *wall, double *cpu)
{
    size_t n = (size_t)c->B * c->N * c->H * c->D;
    float *q = malloc(n * 4), *o = malloc(n * 4), *lse = malloc((size_t)c->B * c->H * c->N * 4);
    fill(q, n);
    sattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = c->B, p.seq_q = p.seq_kv = c->N, p.heads_q = c->H, p.head_dim = c->D;
    p.causal = c->causal ? SATTN_CAUSAL_TOP_LEFT : SATTN_CAUSAL_NONE;
    double t0 = bench_seconds(), c0 = cpu_seconds();
    for (int i = 0; i < c->calls; i++)
        if (sattn_forward(&p, q, q, q, o, lse) != SATTN_OK) {
            fprintf(stderr, "shared_machine: %s\n", sattn_last_error());
            exit(1);
        }
    *wall = bench_seconds() - t0, *cpu = cpu_seconds() - c0;
    free(q), free(o), free(lse);
}

static void run_layer(double *wall, double *cpu)
{
    const int B = 4, N = 64, E = 256, steps = 50;
    sattn_mha_config cfg = {E, 4, 0, 0, 1, SATTN_F32};
    sattn_mha *m;
    if (sattn_mha_create(&m, &cfg) != SATTN_OK) exit(1);
    int64_t np;
    float *prm = sattn_mha_param(m, NULL, &np);
    fill(prm, (size_t)np);
    for (int64_t i = 0; i < np; i++) prm[i] *= 0.1f;
    float *x = malloc(sizeof(float) * B * N * E), *y = malloc(sizeof(float) * B * N * E);
    float *dx = malloc(sizeof(float) * B * N * E);
    fill(x, (size_t)B * N * E);
    sattn_params o;
    memset(&o, 0, sizeof o);
    double t0 = bench_seconds(), c0 = cpu_seconds();
    for (int s = 0; s < steps; s++) {
        sattn_mha_forward(m, &o, B, N, x, y);
        sattn_mha_backward(m, &o, B, N, x, y, dx);
    }
    *wall = bench_seconds() - t0, *cpu = cpu_seconds() - c0;
    free(x), free(y), free(dx);
    sattn_mha_free(m);
}

int main(int argc, char **argv)
{
    int busy = 0, reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--busy")) busy = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: shared_machine [--busy] [--reps R]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 99) reps = 3;
    pid_t peer = -1;
    if (busy) {
        peer = fork();
        if (peer == 0) {
            volatile unsigned long x = 0;
            for (;;) x++;
        }
    }
    const int def = sattn_get_num_threads();
    printf("sattn %s (%s kernels): default %d threads vs 1 thread%s; medians of %d runs\n", sattn_version(),
           sattn_isa(), def, busy ? ", with a peer process spinning on one core" : ", idle machine", reps);
    printf("%-44s %10s %10s %10s %10s %8s\n", "case", "wall dflt", "wall 1T", "cpu dflt", "cpu 1T", "dflt/1T");
    static const fwd_case cases[] = {
        {"small: 3000 x causal B1 H4 N96 d64", 3000, 1, 4, 96, 64, 1},
        {"mid: 100 x causal B1 H8 N512 d64", 100, 1, 8, 512, 64, 1},
        {"large: 10 x full B1 H8 N2048 d64", 10, 1, 8, 2048, 64, 0},
    };
    for (int c = 0; c < 4; c++) {
        double w[2][99], u[2][99];
        for (int r = 0; r < reps; r++)
            for (int t = 0; t < 2; t++) {
                sattn_set_num_threads(t ? 1 : 0);
                if (c < 3) run_fwd(&cases[c], &w[t][r], &u[t][r]);
                else run_layer(&w[t][r], &u[t][r]);
            }
        for (int t = 0; t < 2; t++) qsort(w[t], (size_t)reps, sizeof(double), bench_cmp_double), qsort(u[t], (size_t)reps, sizeof(double), bench_cmp_double);
        printf("%-44s %10.3f %10.3f %10.3f %10.3f %7.2fx\n",
               c < 3 ? cases[c].name : "layer: 50 x fwd+bwd B4 N64 E256 H4", w[0][reps / 2], w[1][reps / 2],
               u[0][reps / 2], u[1][reps / 2], w[0][reps / 2] / w[1][reps / 2]);
        fflush(stdout);
    }
    sattn_set_num_threads(0);
    if (peer > 0) kill(peer, SIGKILL), waitpid(peer, NULL, 0);
    return 0;
}
