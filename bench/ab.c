/* Two builds of libsattn side by side in one process: the way to tell whether a change
 * made a call faster on a machine whose speed drifts by more than the change (this
 * project's KVM guests move by up to 2x for minutes at a time).
 *
 *   ab LIB_A LIB_B [--rounds R] [--calls C] [--heads H] CASE...
 *   CASE: fwd|bwd,N,d[,causal]     e.g. fwd,1024,64  bwd,1024,64,causal
 *
 * Both libraries are loaded with dlopen (RTLD_LOCAL, so each keeps its own symbols);
 * each round runs C calls of A then C of B (B first in odd rounds), so both see the
 * same phase of the machine. Prints, per case, each build's GFLOP/s (the median of all
 * its calls), the ratio of the medians and in how many rounds B's median was faster
 * (medians of an even count: the mean of the middle two, bench/timing.h).
 * f32, B=1, H heads (default 8), BSHD, the same inputs for both; the default thread
 * count (OMP_NUM_THREADS). FLOPs: 4·H·N²·d forward, half under causal, 2.5x backward.
 * Reaches each library only through sattn.h's functions. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sattn.h"
#include "timing.h"

typedef sattn_status (*forward_fn)(const sattn_params *, const void *, const void *, const void *, void *, float *);
typedef sattn_status (*backward_fn)(const sattn_params *, const void *, const void *, const void *, const void *,
                                    const float *, const void *, void *, void *, void *);
typedef const char *(*version_fn)(void);

typedef struct build {
    const char *path;
    void *handle;
    forward_fn forward;
    backward_fn backward;
} build;

static int open_build(build *b, const char *path)
{
    b->path = path;
    b->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!b->handle) {
        fprintf(stderr, "ab: cannot load %s: %s\n", path, dlerror());
        return 0;
    }
    b->forward = (forward_fn)dlsym(b->handle, "sattn_forward");
    b->backward = (backward_fn)dlsym(b->handle, "sattn_backward");
    version_fn version = (version_fn)dlsym(b->handle, "sattn_version");
    version_fn isa = (version_fn)dlsym(b->handle, "sattn_isa");
    if (!b->forward || !b->backward) {
        fprintf(stderr, "ab: %s has no sattn_forward / sattn_backward\n", path);
        return 0;
    }
    printf("%s: sattn %s, %s kernels\n", path, version ? version() : "?", isa ? isa() : "?");
    return 1;
}

typedef struct a_case {
    int backward, causal;
    long n, d;
} a_case;

/* "fwd,1024,64" or "bwd,512,128,causal"; 0 if malformed */
static int parse_case(const char *s, a_case *c)
{
    char kind[8], rule[16] = "";
    int got = sscanf(s, "%7[a-z],%ld,%ld,%15s", kind, &c->n, &c->d, rule);
    if (got < 3 || c->n < 1 || c->n > 65536 || c->d < 1 || c->d > 1024) return 0;
    if (strcmp(kind, "fwd") && strcmp(kind, "bwd")) return 0;
    if (got == 4 && strcmp(rule, "causal")) return 0;
    c->backward = kind[0] == 'b';
    c->causal = got == 4;
    return 1;
}

static float uniform(unsigned *x, float lo, float hi)
{
    *x = *x * 1103515245u + 12345u;
    return lo + (hi - lo) * (float)(*x >> 8) / (float)(1u << 24);
}

static int run_case(build b[2], const a_case *c, int heads, int rounds, int calls)
{
    const size_t elems = (size_t)c->n * (size_t)heads * (size_t)c->d;
    float *q = malloc(sizeof(float) * elems), *k = malloc(sizeof(float) * elems), *v = malloc(sizeof(float) * elems);
    float *o = malloc(sizeof(float) * elems), *dout = malloc(sizeof(float) * elems), *dq = malloc(sizeof(float) * elems);
    float *dk = malloc(sizeof(float) * elems), *dv = malloc(sizeof(float) * elems);
    float *lse = malloc(sizeof(float) * (size_t)c->n * (size_t)heads);
    double *t[2] = {malloc(sizeof(double) * (size_t)rounds * (size_t)calls),
                    malloc(sizeof(double) * (size_t)rounds * (size_t)calls)};
    double *round_t = malloc(sizeof(double) * (size_t)calls);
    int ok = q && k && v && o && dout && dq && dk && dv && lse && t[0] && t[1] && round_t;
    if (!ok) fprintf(stderr, "ab: out of memory for N=%ld d=%ld\n", c->n, c->d);
    sattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = 1, p.seq_q = p.seq_kv = c->n, p.heads_q = heads, p.head_dim = c->d, p.dtype = SATTN_F32;
    p.causal = c->causal ? SATTN_CAUSAL_TOP_LEFT : SATTN_CAUSAL_NONE;
    if (ok) {
        unsigned x = 12345;
        for (size_t i = 0; i < elems; i++)
            q[i] = uniform(&x, -2, 2), k[i] = uniform(&x, -2, 2), v[i] = uniform(&x, -1, 1), dout[i] = uniform(&x, -1, 1);
        /* the forward's out and lse, which the backward takes (each build's are the same
           up to rounding); one call of each build first, so neither pays the first touch */
        for (int w = 0; w < 2 && ok; w++) ok = b[w].forward(&p, q, k, v, o, lse) == SATTN_OK;
        if (!ok) fprintf(stderr, "ab: sattn_forward failed for N=%ld d=%ld\n", c->n, c->d);
    }
    int b_wins = 0;
    for (int r = 0; ok && r < rounds; r++) {
        double m[2];
        for (int w = 0; w < 2; w++) {
            const int which = r % 2 ? 1 - w : w;
            for (int i = 0; i < calls; i++) {
                double t0 = bench_seconds();
                sattn_status st = c->backward ? b[which].backward(&p, q, k, v, o, lse, dout, dq, dk, dv)
                                              : b[which].forward(&p, q, k, v, o, lse);
                round_t[i] = t[which][(size_t)r * calls + i] = bench_seconds() - t0;
                if (st != SATTN_OK) ok = 0;
            }
            m[which] = bench_median(round_t, calls);
        }
        b_wins += m[1] < m[0];
    }
    if (ok) {
        const double flop = 4.0 * heads * (double)c->n * (double)c->n * (double)c->d * (c->causal ? 0.5 : 1.0) *
                            (c->backward ? 2.5 : 1.0);
        const double ta = bench_median(t[0], rounds * calls), tb = bench_median(t[1], rounds * calls);
        printf("%s d=%-4ld N=%-5ld %-6s  A %7.1f  B %7.1f GFLOP/s  B/A %.3f  B faster in %d of %d rounds\n",
               c->backward ? "bwd" : "fwd", c->d, c->n, c->causal ? "causal" : "full", flop / ta * 1e-9,
               flop / tb * 1e-9, ta / tb, b_wins, rounds);
    }
    free(q), free(k), free(v), free(o), free(dout), free(dq), free(dk), free(dv), free(lse);
    free(t[0]), free(t[1]), free(round_t);
    return ok;
}

static int usage(void)
{
    fprintf(stderr, "usage: ab LIB_A LIB_B [--rounds R] [--calls C] [--heads H] CASE...\n"
                    "  CASE: fwd|bwd,N,d[,causal]  (N 1..65536, d 1..1024), e.g. fwd,1024,64 bwd,512,64,causal\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 4) return usage();
    int rounds = 10, calls = 10, heads = 8, ncases = 0;
    a_case *cases = calloc((size_t)argc, sizeof *cases);
    if (!cases) return 1;
    for (int i = 3; i < argc; i++) {
        int *opt = !strcmp(argv[i], "--rounds") ? &rounds
                   : !strcmp(argv[i], "--calls") ? &calls
                   : !strcmp(argv[i], "--heads") ? &heads
                                                  : NULL;
        if (opt) {
            char *end;
            long x = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || *end || x < 1 || x > 1000) {
                fprintf(stderr, "ab: %s takes a number from 1 to 1000\n", argv[i]);
                free(cases);
                return 2;
            }
            *opt = (int)x, i++;
        } else if (!parse_case(argv[i], &cases[ncases++])) {
            fprintf(stderr, "ab: bad case '%s'\n", argv[i]);
            free(cases);
            return usage();
        }
    }
    build b[2];
    if (!ncases || !open_build(&b[0], argv[1]) || !open_build(&b[1], argv[2])) {
        free(cases);
        return ncases ? 1 : usage();
    }
    printf("%d rounds of %d calls per build, %d heads\n", rounds, calls, heads);
    int ok = 1;
    for (int i = 0; i < ncases; i++) ok &= run_case(b, &cases[i], heads, rounds, calls);
    free(cases);
    return ok ? 0 : 1;
}
