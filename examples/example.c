/* sattn example: attention over a padded, causal, grouped-query batch, checked
 * against the naive double-precision reference that lives in tests/ref.
 *
 *   example [seq_len] [head_dim]
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sattn.h"
#include "sattn_ref.h"

static float uniform(uint64_t *state) /* splitmix64 -> [-1, 1) */
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (float)((z ^ (z >> 31)) >> 40) * 0x1p-23f - 1.0f;
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    const int64_t n = argc > 1 ? atoll(argv[1]) : 512, d = argc > 2 ? atoll(argv[2]) : 64;
    const int64_t batch = 2, heads_q = 8, heads_kv = 2;
    int32_t seqlens_kv[2] = {(int32_t)n, (int32_t)(n * 3 / 4)}; /* the second sequence is padded */

    sattn_params p = {0};
    p.batch = batch, p.seq_q = n, p.seq_kv = n, p.heads_q = heads_q, p.heads_kv = heads_kv;
    p.head_dim = d;
    p.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
    p.seqlens_kv = seqlens_kv;

    size_t nq = (size_t)(batch * n * heads_q * d), nkv = (size_t)(batch * n * heads_kv * d);
    float *q = malloc(nq * sizeof *q), *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v);
    float *out = malloc(nq * sizeof *out), *lse = malloc((size_t)(batch * heads_q * n) * sizeof *lse);
    double *ref = malloc(nq * sizeof *ref), *ref_lse = malloc((size_t)(batch * heads_q * n) * sizeof *ref_lse);
    if (!q || !k || !v || !out || !lse || !ref || !ref_lse) return fprintf(stderr, "out of memory\n"), 1;
    uint64_t rng = 42;
    for (size_t i = 0; i < nq; i++) q[i] = uniform(&rng);
    for (size_t i = 0; i < nkv; i++) k[i] = uniform(&rng), v[i] = uniform(&rng);

    double t0 = seconds();
    if (sattn_forward(&p, q, k, v, out, lse) != SATTN_OK)
        return fprintf(stderr, "sattn_forward: %s\n", sattn_last_error()), 1;
    double t1 = seconds();
    if (sattn_ref_forward(&p, q, k, v, ref, ref_lse) != 0)
        return fprintf(stderr, "reference failed\n"), 1;

    double worst = 0, scale = 0;
    for (size_t i = 0; i < nq; i++) {
        double e = fabs(out[i] - ref[i]);
        worst = e > worst ? e : worst;
        scale = fabs(ref[i]) > scale ? fabs(ref[i]) : scale;
    }
    printf("sattn %s (%s kernels, %d threads)\n", sattn_version(), sattn_isa(), sattn_get_num_threads());
    printf("attention: batch %lld, seq %lld, %lld query heads over %lld kv heads, head_dim %lld,\n"
           "           bottom-right causal, second sequence padded to %d keys: %.2f ms\n",
           (long long)batch, (long long)n, (long long)heads_q, (long long)heads_kv, (long long)d,
           seqlens_kv[1], 1e3 * (t1 - t0));
    for (size_t i = 0; i < nq; i += nq / 4)
        printf("  out[%zu] = % .7f   reference % .7f\n", i, out[i], ref[i]);
    const double tol = 1e-5; /* f32 sums of head_dim products and seq_kv weights, vs double */
    int ok = worst <= tol * (scale > 1 ? scale : 1);
    printf("check against the double-precision reference: max |error| %.2e (tolerance %.0e): %s\n",
           worst, tol, ok ? "PASS" : "FAIL");
    free(q), free(k), free(v), free(out), free(lse), free(ref), free(ref_lse);
    return ok ? 0 : 1;
}
