/* Kernel experiments for the forward's inner loop, in the manner of llm.c's dev/:
 * numbered variants of one query block (64 rows) against N keys of one head, each
 * checked against the double-precision reference (tests/ref) before it is timed.
 *
 *   dev_attn_tile [variant] [N] [d] [reps]     variant 0 = all (default), N = 1024, d = 64
 *   dev_attn_tile --check                      every variant and the softmax step at odd
 *                                              sizes, no timing (ctest)
 *   dev_attn_tile --gemm M N K                 the table's gemm alone, operands in L1: the
 *                                              ceiling of the variants' products
 *   dev_attn_tile --dp M N K                   the same for gemm_dp (bf16 products, K even)
 *   dev_attn_tile --softmax N                  the table's softmax step (log2 units) on 64
 *                                              rows of N scores, in L1: its cost per vector
 *
 * Variants:
 *   1  plain C: scores, a two-pass softmax, P·V (the shape of the math)
 *   2  a tile loop on this CPU's kernel table: key blocks of 64, online softmax (the
 *      library's forward before runs of tiles)
 *   3  as 2 with key blocks of 128: does a longer block pay for its larger S tile?
 *   4  as 2 with 256 keys per softmax step and the scores in units of log2 e (exp2): the
 *      library's forward now (forward.c, full_run)
 * A new idea becomes variant 5, is checked here, timed against 2 side by side, and
 * moves into the library only if it wins (BENCHMARKS.md records the result). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "convert.h"
#include "kernels/kernels.h"
#include "sattn.h"
#include "sattn_ref.h"

#define BQ 64

typedef struct problem {
    int n, d;
    const float *q, *k, *v; /* (BQ, d), (n, d), (n, d) */
    float *out;             /* (BQ, d) */
} problem;

/* ---- variant 1: plain C ---- */

static void variant1(const problem *p)
{
    const float scale = 1.0f / sqrtf((float)p->d);
    float *s = malloc(sizeof(float) * (size_t)p->n);
    for (int i = 0; i < BQ; i++) {
        float mx = -INFINITY, sum = 0;
        for (int j = 0; j < p->n; j++) {
            float acc = 0;
            for (int c = 0; c < p->d; c++) acc += p->q[i * p->d + c] * p->k[j * p->d + c];
            s[j] = scale * acc;
            mx = s[j] > mx ? s[j] : mx;
        }
        for (int j = 0; j < p->n; j++) sum += s[j] = expf(s[j] - mx);
        float *o = p->out + i * p->d;
        memset(o, 0, sizeof(float) * (size_t)p->d);
        for (int j = 0; j < p->n; j++)
            for (int c = 0; c < p->d; c++) o[c] += s[j] / sum * p->v[j * p->d + c];
    }
    free(s);
}

/* ---- variants 2 and 3: the library's kernels, key blocks of bk ---- */

static void tile_loop(const problem *p, int bk, int log2)
{
    const sattn__kernels *kt = sattn__kernels_get();
    const int d = p->d;
    float *q = malloc(sizeof(float) * BQ * (size_t)d), *kT = malloc(sizeof(float) * (size_t)(d * bk));
    float *s = malloc(sizeof(float) * BQ * (size_t)bk), *o = p->out, mx[BQ], sum[BQ];
    kt->load_row(q, p->q, BQ * d, SATTN_F32, (log2 ? 1.44269504088896341f : 1.0f) / sqrtf((float)d));
    for (int r = 0; r < BQ; r++) mx[r] = -INFINITY, sum[r] = 0;
    memset(o, 0, sizeof(float) * BQ * (size_t)d);
    for (int j0 = 0; j0 < p->n; j0 += bk) {
        int nk = p->n - j0 < bk ? p->n - j0 : bk;
        kt->load_rows_t(kT, bk, p->k + (size_t)j0 * d, d, nk, d, SATTN_F32);
        kt->gemm(s, bk, q, d, 1, kT, bk, BQ, nk, d, 0, 0);
        if (log2) kt->softmax_online_log2(s, bk, BQ, nk, mx, sum, o, d, d);
        else kt->softmax_online(s, bk, BQ, nk, mx, sum, o, d, d);
        kt->gemm(o, d, s, bk, 1, p->v + (size_t)j0 * d, d, BQ, d, nk, 1, 0);
    }
    for (int r = 0; r < BQ; r++)
        for (int c = 0; c < d; c++) o[r * d + c] /= sum[r];
    free(q), free(kT), free(s);
}

static void variant2(const problem *p) { tile_loop(p, 64, 0); }
static void variant3(const problem *p) { tile_loop(p, 128, 0); }
static void variant4(const problem *p) { tile_loop(p, 256, 1); }

static void (*const variants[])(const problem *) = {NULL, variant1, variant2, variant3, variant4};
#define NVAR 5

/* ---- check and time ---- */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Largest |out - ref| over max(1, max |ref|): f32 sums of n terms, bounded by a few n ulp. */
static double check(int var, const problem *p, const double *ref)
{
    variants[var](p);
    double e = 0, m = 1;
    for (int i = 0; i < BQ * p->d; i++) {
        e = fmax(e, fabs((double)p->out[i] - ref[i]));
        m = fmax(m, fabs(ref[i]));
    }
    return e / m;
}

static int run(int which, int n, int d, int reps, int timing)
{
    problem p = {n, d, NULL, NULL, NULL, NULL};
    float *q = malloc(sizeof(float) * BQ * (size_t)d), *k = malloc(sizeof(float) * (size_t)n * d);
    float *v = malloc(sizeof(float) * (size_t)n * d);
    double *ref = malloc(sizeof(double) * BQ * (size_t)d);
    p.out = malloc(sizeof(float) * BQ * (size_t)d);
    unsigned x = 12345;
    for (int i = 0; i < BQ * d; i++) q[i] = (float)((x = x * 1103515245u + 12345u) >> 8) / (1 << 24) * 4 - 2;
    for (int i = 0; i < n * d; i++) k[i] = (float)((x = x * 1103515245u + 12345u) >> 8) / (1 << 24) * 4 - 2;
    for (int i = 0; i < n * d; i++) v[i] = (float)((x = x * 1103515245u + 12345u) >> 8) / (1 << 24) * 2 - 1;
    p.q = q, p.k = k, p.v = v;
    sattn_params sp;
    memset(&sp, 0, sizeof sp); /* zero: every option off */
    sp.batch = 1, sp.seq_q = BQ, sp.seq_kv = n, sp.heads_q = 1, sp.head_dim = d, sp.dtype = SATTN_F32;
    int bad = 0;
    if (sattn_ref_forward(&sp, q, k, v, ref, NULL) != 0) {
        fprintf(stderr, "reference failed\n");
        return 1;
    }
    const double tol = 4.0 * (n + d) * 0x1p-24; /* f32 sums of n and d terms */
    for (int var = 1; var < NVAR; var++) {
        if (which && var != which) continue;
        double e = check(var, &p, ref);
        int ok = e <= tol;
        bad += !ok;
        printf("variant %d  N=%-5d d=%-4d error %.2e (tolerance %.2e) %s", var, n, d, e, tol, ok ? "ok" : "WRONG");
        if (ok && timing) {
            double best = 1e30;
            for (int r = 0; r < reps; r++) {
                double t0 = now();
                variants[var](&p);
                double t = now() - t0;
                best = t < best ? t : best;
            }
            printf("  %.3f ms  %.1f GFLOP/s (best of %d, one thread)", best * 1e3, 4.0 * BQ * n * d / best * 1e-9, reps);
        }
        printf("\n");
    }
    free(q), free(k), free(v), free(ref), free(p.out);
    return bad;
}

/* One product C (M x N) = A (M x K) · B (K x N) with this CPU's kernel table: gemm on
   f32 operands, or (dp) gemm_dp on the same values rounded to bf16, B in pairs of rows. */
typedef struct product {
    int dp, m, n, k;
    float *A, *B, *C;     /* f32 operands (gemm) */
    uint16_t *A2, *B2;    /* bf16 operands (gemm_dp) */
} product;

static void product_call(const sattn__kernels *kt, const product *p)
{
    if (p->dp) kt->gemm_dp(p->C, p->n, p->A2, p->k, p->B2, p->n, p->m, p->n, p->k / 2, 0, 1.0f, 0);
    else kt->gemm(p->C, p->n, p->A, p->k, 1, p->B, p->n, p->m, p->n, p->k, 0, 0);
}

/* A[i][c] and B[c][j] as the kernel reads them */
static double product_a(const product *p, int i, int c)
{
    return p->dp ? sattn__bf16_to_f32(p->A2[i * p->k + c]) : p->A[i * p->k + c];
}
static double product_b(const product *p, int c, int j)
{
    return p->dp ? sattn__bf16_to_f32(p->B2[2 * ((c / 2) * p->n + j) + c % 2]) : p->B[c * p->n + j];
}

/* Checks the product against double sums, then times it on the same operands (hot in
   L1 when they fit: the products' ceiling). */
static int product_only(int dp, int m, int n, int k)
{
    const sattn__kernels *kt = sattn__kernels_get();
    product p = {dp, m, n, k, NULL, NULL, NULL, NULL, NULL};
    p.C = malloc(sizeof(float) * (size_t)m * n);
    if (dp) {
        p.A2 = malloc(sizeof(uint16_t) * (size_t)m * k), p.B2 = malloc(sizeof(uint16_t) * (size_t)k * n);
        for (int i = 0; i < m * k; i++) p.A2[i] = sattn__f32_to_bf16((float)((i * 37) % 101) / 101.0f - 0.5f);
        for (int i = 0; i < k * n; i++) p.B2[i] = sattn__f32_to_bf16((float)((i * 53) % 97) / 97.0f - 0.5f);
    } else {
        p.A = malloc(sizeof(float) * (size_t)m * k), p.B = malloc(sizeof(float) * (size_t)k * n);
        for (int i = 0; i < m * k; i++) p.A[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
        for (int i = 0; i < k * n; i++) p.B[i] = (float)((i * 53) % 97) / 97.0f - 0.5f;
    }
    product_call(kt, &p);
    double e = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double ref = 0;
            for (int c = 0; c < k; c++) ref += product_a(&p, i, c) * product_b(&p, c, j);
            e = fmax(e, fabs(ref - p.C[i * n + j]));
        }
    const double tol = 2.0 * k * 0x1p-24 * k; /* |a|, |b| <= 1/2: sums below k/4 */
    int ok = e <= tol;
    printf("%s %dx%dx%d (%s): error %.2e (tolerance %.2e) %s", dp ? "gemm_dp" : "gemm", m, n, k, kt->name, e, tol,
           ok ? "ok" : "WRONG");
    if (ok) {
        const int reps = (int)(2e8 / ((double)m * n * k)) + 1;
        double best = 1e30;
        for (int r = 0; r < 5; r++) {
            double t0 = now();
            for (int i = 0; i < reps; i++) product_call(kt, &p);
            double t = now() - t0;
            best = t < best ? t : best;
        }
        printf("  %.1f GFLOP/s (best of 5, one thread)", 2.0 * m * n * k * reps / best * 1e-9);
    }
    printf("\n");
    free(p.A), free(p.B), free(p.A2), free(p.B2), free(p.C);
    return !ok;
}

/* One step of softmax_online_log2 on BQ rows of n scores from an empty state, checked
   against double sums (P = 2^(s - max), sum = Σ P), then timed on the same scores as a
   later step of a row sees them: its max already reached (no rescale of O). */
static int softmax_only(int n, int timing)
{
    const sattn__kernels *kt = sattn__kernels_get();
    float *s0 = malloc(sizeof(float) * BQ * (size_t)n), *s = malloc(sizeof(float) * BQ * (size_t)n);
    float *o = calloc((size_t)BQ * 64, sizeof(float)), mx[BQ], sum[BQ];
    unsigned x = 777;
    for (int i = 0; i < BQ * n; i++) s0[i] = (float)((x = x * 1103515245u + 12345u) >> 8) / (1 << 24) * 16 - 8;
    memcpy(s, s0, sizeof(float) * BQ * (size_t)n);
    for (int r = 0; r < BQ; r++) mx[r] = -INFINITY, sum[r] = 0;
    kt->softmax_online_log2(s, n, BQ, n, mx, sum, o, 64, 64);
    double e = 0; /* relative: each weight within a few ulp, each sum within n ulp */
    for (int r = 0; r < BQ; r++) {
        double m = -INFINITY, t = 0;
        for (int c = 0; c < n; c++) m = fmax(m, s0[r * n + c]);
        for (int c = 0; c < n; c++) {
            double p = exp2(s0[r * n + c] - m);
            t += p;
            e = fmax(e, fabs(s[r * n + c] - p));
        }
        e = fmax(e, fabs(sum[r] - t) / t / n);
        if (mx[r] != (float)m) e = INFINITY;
    }
    const double tol = 8 * 0x1p-24;
    int ok = e <= tol;
    printf("softmax 64x%d (%s): error %.2e (tolerance %.2e) %s", n, kt->name, e, tol, ok ? "ok" : "WRONG");
    if (ok && timing) {
        double best = 1e30;
        float m0[BQ];
        memcpy(m0, mx, sizeof m0);
        for (int rep = 0; rep < 2000; rep++) {
            memcpy(s, s0, sizeof(float) * BQ * (size_t)n);
            for (int r = 0; r < BQ; r++) mx[r] = m0[r], sum[r] = 0;
            double t0 = now();
            kt->softmax_online_log2(s, n, BQ, n, mx, sum, o, 64, 64);
            double t = now() - t0;
            best = t < best ? t : best;
        }
        printf("  %.2f ns per 16 scores (best of 2000, one thread)", best * 1e9 / (BQ * n / 16.0));
    }
    printf("\n");
    free(s0), free(s), free(o);
    return !ok;
}

int main(int argc, char **argv)
{
    printf("kernels: %s\n", sattn_isa());
    if (argc > 1 && strcmp(argv[1], "--check") == 0) {
        static const int ns[] = {1, 7, 63, 65, 257}, ds[] = {1, 7, 64, 65, 128};
        int bad = 0;
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++) bad += run(0, ns[i], ds[j], 0, 0);
        for (int i = 0; i < 5; i++) bad += softmax_only(ns[i], 0);
        printf("%s\n", bad ? "FAIL" : "PASS");
        return bad != 0;
    }
    if (argc > 2 && strcmp(argv[1], "--softmax") == 0) {
        int n = atoi(argv[2]);
        if (n < 1 || n > 65536) {
            fprintf(stderr, "dev_attn_tile --softmax N: N from 1 to 65536\n");
            return 2;
        }
        return softmax_only(n, 1);
    }
    const int dp = argc > 4 && strcmp(argv[1], "--dp") == 0;
    if (argc > 4 && (dp || strcmp(argv[1], "--gemm") == 0)) {
        int m = atoi(argv[2]), n = atoi(argv[3]), k = atoi(argv[4]);
        if (m < 1 || n < 1 || k < 1 || m > 4096 || n > 4096 || k > 4096 || (dp && k % 2)) {
            fprintf(stderr, "dev_attn_tile %s M N K: each from 1 to 4096%s\n", argv[1], dp ? ", K even" : "");
            return 2;
        }
        return product_only(dp, m, n, k);
    }
    int which = argc > 1 ? atoi(argv[1]) : 0, n = argc > 2 ? atoi(argv[2]) : 1024, d = argc > 3 ? atoi(argv[3]) : 64;
    int reps = argc > 4 ? atoi(argv[4]) : 20;
    if (which < 0 || which >= NVAR || n < 1 || d < 1 || reps < 1) {
        fprintf(stderr, "usage: dev_attn_tile [variant 0-%d] [N] [d] [reps] | --check | --gemm M N K | --dp M N K | --softmax N\n", NVAR - 1);
        return 2;
    }
    return run(which, n, d, reps, 1) != 0;
}
