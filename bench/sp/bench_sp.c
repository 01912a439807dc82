/* Sequence-parallel attention, timed.
 *
 *   bench_sp --single T [problem]      one process, T threads: sattn_forward (or
 *                                      backward) of the whole sequence
 *   mpiexec -n P bench_sp [problem]    P ranks, --threads threads each (default 1):
 *                                      sattn_sp_forward, with the loop run three ways
 *                                      in turn each repetition: normal, transfers
 *                                      skipped (compute alone), transfers alone
 *   problem: --n N --heads H --kv-heads HK --dim D --batch B --causal 0|1
 *            --method ring|ulysses --shard zigzag|contiguous --backward --reps R
 *
 * Prints one line of key=value pairs (medians over the repetitions; times are the
 * slowest rank's) for bench/sp/bench_sp.py, which runs both and forms the table.
 * --part C times one (C x C) block of the ring (sattn_forward_part, 1 thread), full
 * and diagonal, for the cluster model. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, for ../timing.h */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sattn_sp.h"
#include "../timing.h"

static void fill(float *x, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 40) * 0x1p-24 * 2.0 - 1.0);
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int P, rank;
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int64_t N = 8192, H = 8, HK = 0, D = 64, B = 1, part = 0;
    int causal = 1, reps = 5, single = 0, threads = 1, backward = 0;
    sattn_sp_method method = SATTN_SP_RING;
    sattn_sp_shard shard = SATTN_SP_ZIGZAG;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--n")) N = atoll(v), i++;
        else if (!strcmp(a, "--heads")) H = atoll(v), i++;
        else if (!strcmp(a, "--kv-heads")) HK = atoll(v), i++;
        else if (!strcmp(a, "--dim")) D = atoll(v), i++;
        else if (!strcmp(a, "--batch")) B = atoll(v), i++;
        else if (!strcmp(a, "--causal")) causal = atoi(v), i++;
        else if (!strcmp(a, "--reps")) reps = atoi(v), i++;
        else if (!strcmp(a, "--single")) single = atoi(v), i++;
        else if (!strcmp(a, "--threads")) threads = atoi(v), i++;
        else if (!strcmp(a, "--part")) part = atoll(v), i++;
        else if (!strcmp(a, "--backward")) backward = 1;
        else if (!strcmp(a, "--method")) method = !strcmp(v, "ulysses") ? SATTN_SP_ULYSSES : SATTN_SP_RING, i++;
        else if (!strcmp(a, "--shard")) shard = !strcmp(v, "contiguous") ? SATTN_SP_CONTIGUOUS : SATTN_SP_ZIGZAG, i++;
        else {
            if (rank == 0) fprintf(stderr, "bench_sp: unknown argument %s (see the comment at the top of bench_sp.c)\n", a);
            MPI_Finalize();
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    sattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = B, p.seq_q = N, p.seq_kv = N, p.heads_q = H, p.heads_kv = HK, p.head_dim = D;
    p.causal = causal ? SATTN_CAUSAL_TOP_LEFT : SATTN_CAUSAL_NONE;
    const int64_t Hk = HK ? HK : H;
    /* Q.K^T and P.V, 2 flops per multiply-add, half the pairs under the causal rule;
       the backward 2.5 times that (five products) */
    const double flops = 4.0 * (double)B * (double)H * (double)N * (double)N * (double)D * (causal ? 0.5 : 1.0) *
                         (backward ? 2.5 : 1.0);

    if (part > 0) { /* one ring block, full and diagonal, one thread */
        sattn_set_num_threads(1);
        sattn_params pp = p;
        pp.seq_q = pp.seq_kv = 2 * part;
        int64_t nq = B * part * H * D, nk = B * part * Hk * D;
        float *q = malloc(sizeof(float) * nq), *k = malloc(sizeof(float) * nk), *v = malloc(sizeof(float) * nk),
              *o = malloc(sizeof(float) * nq), *l = malloc(sizeof(float) * B * H * part);
        fill(q, nq, 1), fill(k, nk, 2), fill(v, nk, 3);
        double tf[64], td[64];
        for (int r = 0; r < reps && r < 64; r++) {
            sattn_part full = {part, part, 0, part, 0}, diag = {part, part, part, part, 0};
            double t0 = MPI_Wtime();
            sattn_forward_part(&pp, &full, q, k, v, o, l);
            double t1 = MPI_Wtime();
            sattn_forward_part(&pp, &diag, q, k, v, o, l);
            tf[r] = t1 - t0, td[r] = MPI_Wtime() - t1;
        }
        const int nr = reps < 64 ? reps : 64;
        double f = bench_median(tf, nr), dg = bench_median(td, nr);
        printf("part=%lld heads=%lld dim=%lld full_s=%.6g diag_s=%.6g full_gflops=%.2f\n", (long long)part,
               (long long)H, (long long)D, f, dg, 4.0 * B * H * (double)part * part * D / f * 1e-9);
        MPI_Finalize();
        return 0;
    }

    if (single) { /* the whole sequence in one process */
        sattn_set_num_threads(single);
        int64_t nq = B * N * H * D, nk = B * N * Hk * D;
        float *q = malloc(sizeof(float) * nq), *k = malloc(sizeof(float) * nk), *v = malloc(sizeof(float) * nk),
              *o = malloc(sizeof(float) * nq), *l = malloc(sizeof(float) * B * H * N), *g = NULL;
        fill(q, nq, 1), fill(k, nk, 2), fill(v, nk, 3);
        if (backward) g = malloc(sizeof(float) * (nq * 2 + nk * 2)), fill(g, nq, 4);
        sattn_forward(&p, q, k, v, o, l); /* warm */
        double t[64];
        const int nr = reps < 64 ? reps : 64;
        for (int r = 0; r < nr; r++) {
            double t0 = MPI_Wtime();
            if (backward) sattn_backward(&p, q, k, v, o, l, g, g + nq, g + 2 * nq, g + 2 * nq + nk);
            else sattn_forward(&p, q, k, v, o, l);
            t[r] = MPI_Wtime() - t0;
        }
        double m = bench_median(t, nr);
        printf("mode=single threads=%d n=%lld heads=%lld dim=%lld time_s=%.6g gflops=%.2f\n", single, (long long)N,
               (long long)H, (long long)D, m, flops / m * 1e-9);
        MPI_Finalize();
        return 0;
    }

    sattn_set_num_threads(threads);
    const int64_t n = N / P;
    const int64_t nq = B * n * H * D, nk = B * n * Hk * D;
    float *q = malloc(sizeof(float) * nq), *k = malloc(sizeof(float) * nk), *v = malloc(sizeof(float) * nk),
          *o = malloc(sizeof(float) * nq), *l = malloc(sizeof(float) * (B * H * n + 1));
    float *dq = malloc(sizeof(float) * nq), *dk = malloc(sizeof(float) * nk), *dv = malloc(sizeof(float) * nk),
          *g = malloc(sizeof(float) * nq);
    fill(q, nq, 11 + (uint64_t)rank), fill(k, nk, 22 + (uint64_t)rank), fill(v, nk, 33 + (uint64_t)rank);
    fill(g, nq, 44 + (uint64_t)rank);
    sattn_status st = sattn_sp_forward(MPI_COMM_WORLD, method, shard, &p, q, k, v, o, l); /* warm, and lse */
    if (st != SATTN_OK) {
        if (rank == 0) fprintf(stderr, "bench_sp: %s\n", sattn_sp_last_error());
        MPI_Finalize();
        return 1;
    }
    double t[3][64];
    sattn_sp_stats s[3];
    const int nr = reps < 64 ? reps : 64;
    static const sattn_sp_bench modes[3] = {SATTN_SP_BENCH_OFF, SATTN_SP_BENCH_NO_COMM, SATTN_SP_BENCH_COMM_ONLY};
    for (int r = 0; r < nr; r++)
        for (int m = 0; m < 3; m++) {
            sattn_sp_set_bench_mode(modes[m]);
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            if (backward) sattn_sp_backward(MPI_COMM_WORLD, method, shard, &p, q, k, v, o, l, g, dq, dk, dv);
            else sattn_sp_forward(MPI_COMM_WORLD, method, shard, &p, q, k, v, o, l);
            double mine = MPI_Wtime() - t0, slowest;
            MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            t[m][r] = slowest;
            sattn_sp_get_stats(&s[m]);
        }
    sattn_sp_set_bench_mode(SATTN_SP_BENCH_OFF);
    double tn = bench_median(t[0], nr), tc = bench_median(t[1], nr), tx = bench_median(t[2], nr);
    /* this rank's share, and the largest over ranks */
    double w = s[0].wait_s, wmax, cmp = s[0].compute_s, cmax, cmin;
    MPI_Allreduce(&w, &wmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&cmp, &cmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&cmp, &cmin, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    long long peak = (long long)s[0].peak_bytes, peak_max;
    MPI_Allreduce(&peak, &peak_max, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0)
        printf("mode=sp ranks=%d threads=%d method=%s shard=%s n=%lld heads=%lld kv_heads=%lld dim=%lld causal=%d "
               "backward=%d time_s=%.6g nocomm_s=%.6g commonly_s=%.6g gflops=%.2f wait_s=%.6g compute_max_s=%.6g "
               "compute_min_s=%.6g bytes_sent=%lld messages=%lld parts_computed=%lld parts_skipped=%lld "
               "peak_bytes=%lld shard_bytes=%lld\n",
               P, threads, method == SATTN_SP_RING ? "ring" : "ulysses", shard == SATTN_SP_ZIGZAG ? "zigzag" : "contiguous",
               (long long)N, (long long)H, (long long)Hk, (long long)D, causal, backward, tn, tc, tx, flops / tn * 1e-9,
               wmax, cmax, cmin, (long long)s[0].bytes_sent, (long long)s[0].messages_sent,
               (long long)s[0].parts_computed, (long long)s[0].parts_skipped, peak_max,
               (long long)(sizeof(float) * (size_t)(nq * 2 + nk * 2)));
    MPI_Finalize();
    return 0;
}
