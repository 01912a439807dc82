/* A one-layer causal attention model over a sequence split across MPI ranks.
 *
 *   mpiexec -n P sp_layer [tokens] [embed] [heads]      (defaults 4096 256 4)
 *
 * Each rank holds its zigzag shard of the token embeddings x (tokens / P rows: chunk r
 * and chunk 2P - 1 - r of 2P), projects its own rows to Q, K, V (row-local GEMMs), runs
 * the attention of the whole sequence with sattn_sp_forward (ring: K/V blocks travel
 * around the ranks), and projects its rows of the output. Rank 0 then gathers y and
 * checks it against the same layer run in one process (sattn_mha_forward) on the whole
 * sequence.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sattn_sp.h"

static float uniform(uint64_t *s) /* splitmix64 -> [-1, 1) */
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (float)((z ^ (z >> 31)) >> 40) * 0x1p-23f - 1.0f;
}

/* global row of local row i of rank r's zigzag shard (2P chunks of c rows) */
static int64_t global_row(int64_t i, int r, int P, int64_t c)
{
    return i < c ? r * c + i : (2 * (int64_t)P - 1 - r) * c + (i - c);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int P, rank;
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const int64_t N = argc > 1 ? atoll(argv[1]) : 4096, E = argc > 2 ? atoll(argv[2]) : 256,
                  H = argc > 3 ? atoll(argv[3]) : 4;
    if (N <= 0 || E <= 0 || H <= 0 || N % (2 * P) || E % H) {
        if (rank == 0) fprintf(stderr, "sp_layer: tokens must divide by 2P = %d and embed by heads\n", 2 * P);
        MPI_Finalize();
        return 2;
    }
    const int64_t n = N / P, c = N / (2 * P);

    /* the same weights and embeddings on every rank (one seed) */
    float *w_in = malloc(sizeof(float) * 3 * E * E), *w_out = malloc(sizeof(float) * E * E);
    float *x = malloc(sizeof(float) * N * E);
    uint64_t seed = 42;
    const float ws = 1.0f / sqrtf((float)E);
    for (int64_t i = 0; i < 3 * E * E; i++) w_in[i] = ws * uniform(&seed);
    for (int64_t i = 0; i < E * E; i++) w_out[i] = ws * uniform(&seed);
    for (int64_t i = 0; i < N * E; i++) x[i] = uniform(&seed);

    /* ---- this rank's rows: x -> Q, K, V (row-local), attention across ranks, -> y ---- */
    float *xs = malloc(sizeof(float) * n * E), *qkv = malloc(sizeof(float) * n * 3 * E);
    float *o = malloc(sizeof(float) * n * E), *ys = malloc(sizeof(float) * n * E);
    for (int64_t i = 0; i < n; i++) memcpy(xs + i * E, x + global_row(i, rank, P, c) * E, sizeof(float) * E);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    /* [Q K V] = xs W_inᵀ: one GEMM, the three side by side in each row */
    sattn_sgemm(0, 1, n, 3 * E, E, xs, E, w_in, E, 0, qkv, 3 * E);
    sattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = 1, p.seq_q = N, p.seq_kv = N, p.heads_q = H, p.head_dim = E / H;
    p.causal = SATTN_CAUSAL_TOP_LEFT;
    /* Q, K, V read in place from the projection's rows through their strides */
    const int64_t st[3] = {n * 3 * E, 3 * E, E / H};
    memcpy(p.q_stride, st, sizeof st), memcpy(p.k_stride, st, sizeof st), memcpy(p.v_stride, st, sizeof st);
    sattn_status s = sattn_sp_forward(MPI_COMM_WORLD, SATTN_SP_RING, SATTN_SP_ZIGZAG, &p, qkv, qkv + E, qkv + 2 * E, o,
                                      NULL);
    if (s != SATTN_OK) {
        fprintf(stderr, "rank %d: sattn_sp_forward: %s\n", rank, sattn_sp_last_error());
        MPI_Finalize();
        return 1;
    }
    sattn_sgemm(0, 1, n, E, E, o, E, w_out, E, 0, ys, E); /* y = O W_outᵀ */
    double t_sp = MPI_Wtime() - t0, t_max;
    MPI_Reduce(&t_sp, &t_max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);

    /* ---- rank 0: gather y, compare with the layer in one process ---- */
    float *all = rank == 0 ? malloc(sizeof(float) * N * E) : NULL;
    MPI_Gather(ys, (int)(n * E), MPI_FLOAT, all, (int)(n * E), MPI_FLOAT, 0, MPI_COMM_WORLD);
    int ok = 1;
    if (rank == 0) {
        sattn_mha *layer;
        sattn_mha_config cfg = {E, H, 0, 0, 0, SATTN_F32};
        sattn_mha_create(&layer, &cfg);
        sattn_mha_set(layer, "in_proj_weight", w_in, 3 * E * E);
        sattn_mha_set(layer, "out_proj.weight", w_out, E * E);
        sattn_params opts;
        memset(&opts, 0, sizeof opts);
        opts.causal = SATTN_CAUSAL_TOP_LEFT;
        float *y = malloc(sizeof(float) * N * E);
        double t1 = MPI_Wtime();
        sattn_mha_forward(layer, &opts, 1, N, x, y);
        double t_one = MPI_Wtime() - t1;
        double err = 0, scale = 0;
        for (int r = 0; r < P; r++)
            for (int64_t i = 0; i < n; i++)
                for (int64_t e = 0; e < E; e++) {
                    double a = all[(r * n + i) * E + e], b = y[global_row(i, r, P, c) * E + e];
                    err = fmax(err, fabs(a - b));
                    scale = fmax(scale, fabs(b));
                }
        ok = err <= 1e-5 * fmax(1.0, scale);
        printf("%lld tokens, embed %lld, %lld heads, causal, over %d ranks (zigzag ring)\n", (long long)N,
               (long long)E, (long long)H, P);
        printf("  split across ranks: %.1f ms (slowest rank); one process: %.1f ms\n", t_max * 1e3, t_one * 1e3);
        printf("  y vs the one-process layer: max |diff| %.3g (scale %.3g): %s\n", err, scale, ok ? "ok" : "WRONG");
        sattn_mha_free(layer);
        free(y);
        free(all);
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    free(w_in), free(w_out), free(x), free(xs), free(qkv), free(o), free(ys);
    MPI_Finalize();
    return ok ? 0 : 1;
}
