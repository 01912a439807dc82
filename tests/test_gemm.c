/* test_gemm: the projection GEMMs (src/gemm.c), C (+)= op(A) · op(B), on whichever
 * backend this process runs (printed first), against sums in double precision:
 *
 *   - every combination of M, N, K in {0, 1, 7, 63, 65, 257}, all four transposes,
 *     accumulate on and off; then random shapes; then shapes that cross the built-in
 *     product's tiles, strips and pack chunks;
 *   - row strides longer than the rows: the gaps of A and B hold NaN (reading one would
 *     show), those of C a sentinel that must stay; with accumulate off, C starts as NaN
 *     (it must be overwritten, never scaled);
 *   - row strides beyond INT_MAX (Linux: sparse mappings), where OpenBLAS's and the
 *     micro-kernel's int cannot take them;
 *   - bit-identical results for 1, 2 and 3 threads, and for a repeated call.
 *
 * The ctest entry gemm runs the best backend (OpenBLAS where it loads), gemm_builtin the
 * built-in one (SATTN_BLAS=off); the per-ISA runs (SATTN_ISA set) are about the built-in
 * product on that kernel set, so they turn OpenBLAS off unless SATTN_BLAS says otherwise.
 *
 * "test_gemm bench [reps]" instead times the layer's shapes (GFLOP/s, best of reps) on
 * the current backend and thread count; it checks nothing.
 */
#define _DEFAULT_SOURCE /* setenv, mmap's MAP_ANONYMOUS and MAP_NORESERVE */

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm.h"
#include "testutil.h"

/* ---- operands ---- */

/* A rows x cols matrix with row stride ld >= cols. The gaps between rows (and one
   element past the end) hold NaN in inputs, the sentinel bytes in C. */
typedef struct {
    float *p;
    int64_t rows, cols, ld;
    int mapped; /* a sparse mapping (see huge_matrix), else malloc */
    size_t bytes;
} matrix;

static matrix new_matrix(int64_t rows, int64_t cols, int64_t ld)
{
    matrix m = {NULL, rows, cols, ld, 0, 0};
    int64_t n = rows > 0 ? (rows - 1) * ld + cols : 0;
    m.bytes = (size_t)(n + 1) * sizeof(float);
    m.p = tu_alloc_sentinel(m.bytes); /* the C gap sentinel; inputs overwrite it */
    return m;
}

static void free_matrix(matrix *m)
{
#if defined(__linux__)
    if (m->mapped) {
        munmap(m->p, m->bytes);
        return;
    }
#endif
    free(m->p);
}

static void fill_input(matrix *m, tu_rng *r)
{
    int64_t n = m->rows > 0 ? (m->rows - 1) * m->ld + m->cols : 0;
    if (!m->mapped)
        for (int64_t e = 0; e <= n; e++) m->p[e] = NAN;
    for (int64_t i = 0; i < m->rows; i++)
        for (int64_t j = 0; j < m->cols; j++) m->p[i * m->ld + j] = (float)tu_unif(r, -1.0, 1.0);
}

/* ---- the reference and the comparison ----
 *
 * ref = (accumulate ? C0 : 0) + sum_k a_ik b_kj in double (exact products, and a sum
 * whose error, about K 2^-53 relative, is negligible here). The f32 result is any
 * summation of the K products (plus C0): each of its at most K + 1 roundings (and a
 * product's own, where a BLAS multiplies and adds separately) is off by at most 2^-24
 * of a partial sum, and every partial sum is at most mag = |C0| + sum_k |a_ik| |b_kj|
 * in size, so |f32 - ref| <= (K + 2) 2^-24 mag. The test allows twice that:
 *     |err| <= 2 (K + 2) 2^-24 mag.
 * A wrong element (an off-by-one in a pack, a skipped k-block) errs by about one term,
 * |a b| ~ 0.25, against an allowance of about 2 K (K / 4) 2^-24 = 0.002 at K = 257. */

typedef struct {
    double worst;   /* largest |err| / allowed */
    long bad;       /* elements over the tolerance, non-finite, or touched gaps */
    int64_t bi, bj; /* the first bad element */
    double blib, bref, ballow;
} compare_result;

/* C against the reference; C0 (C before the call) is read with C's row stride. */
static compare_result check_product(int ta, int tb, int64_t M, int64_t N, int64_t K, const matrix *A,
                                    const matrix *B, int accumulate, const float *C0, const matrix *C)
{
    compare_result res = {0, 0, -1, -1, 0, 0, 0};
    double *arow = tu_alloc_f64(K > 0 ? K : 1);
    for (int64_t i = 0; i < M; i++) {
        for (int64_t k = 0; k < K; k++) arow[k] = ta ? A->p[k * A->ld + i] : A->p[i * A->ld + k];
        for (int64_t j = 0; j < N; j++) {
            double s = 0, mag = 0;
            if (accumulate) {
                s = C0[i * C->ld + j];
                mag = fabs(s);
            }
            for (int64_t k = 0; k < K; k++) {
                double b = tb ? B->p[j * B->ld + k] : B->p[k * B->ld + j];
                s += arow[k] * b;
                mag += fabs(arow[k] * b);
            }
            double lib = C->p[i * C->ld + j];
            double allow = 2.0 * (double)(K + 2) * 0x1p-24 * mag;
            double err = fabs(lib - s);
            int ok = err <= allow; /* false for NaN */
            if (ok && allow > 0 && err / allow > res.worst) res.worst = err / allow;
            if (!ok) {
                if (res.bad++ == 0) res.bi = i, res.bj = j, res.blib = lib, res.bref = s, res.ballow = allow;
            }
        }
    }
    free(arow);
    /* the gaps of C: between rows, and the one element after the last */
    if (!C->mapped) {
        const unsigned char *bytes = (const unsigned char *)C->p;
        for (int64_t i = 0; i < M; i++) {
            int64_t from = i * C->ld + N, to = i + 1 < M ? (i + 1) * C->ld : i * C->ld + N + 1;
            for (size_t b = (size_t)from * 4; b < (size_t)to * 4; b++)
                if (bytes[b] != TU_SENTINEL) {
                    if (res.bad++ == 0) res.bi = i, res.bj = -1;
                    break;
                }
        }
    }
    return res;
}

static const char *tname(int t) { return t ? "T" : "N"; }

/* One case: builds the operands (row strides ld = cols + pad), runs, compares.
   Returns 1 if it passed. */
static int run_case(tu_rng *r, int ta, int tb, int64_t M, int64_t N, int64_t K, int64_t pad_a, int64_t pad_b,
                    int64_t pad_c, int accumulate, compare_result *out)
{
    matrix A = ta ? new_matrix(K, M, M + pad_a) : new_matrix(M, K, K + pad_a);
    matrix B = tb ? new_matrix(N, K, K + pad_b) : new_matrix(K, N, N + pad_b);
    matrix C = new_matrix(M, N, N + pad_c);
    fill_input(&A, r);
    fill_input(&B, r);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C.p[i * C.ld + j] = accumulate ? (float)tu_unif(r, -2.0, 2.0) : NAN;
    float *C0 = malloc(C.bytes);
    memcpy(C0, C.p, C.bytes);

    /* the public entry: its checks, then the internal product */
    sattn_status st = sattn_sgemm(ta, tb, M, N, K, A.p, A.ld, B.p, B.ld, accumulate, C.p, C.ld);
    compare_result res = {0, 0, -1, -1, 0, 0, 0};
    if (st == SATTN_OK) res = check_product(ta, tb, M, N, K, &A, &B, accumulate, C0, &C);
    int ok = tu_check(st == SATTN_OK && res.bad == 0,
                      "%s%s M=%lld N=%lld K=%lld pads %lld/%lld/%lld acc=%d: status %d, %ld bad; first (%lld, %lld): "
                      "lib %.9g ref %.9g allowed %.3g%s",
                      tname(ta), tname(tb), (long long)M, (long long)N, (long long)K, (long long)pad_a,
                      (long long)pad_b, (long long)pad_c, accumulate, (int)st, res.bad, (long long)res.bi,
                      (long long)res.bj, res.blib, res.bref, res.ballow, res.bj < 0 && res.bad ? " (a gap of C)" : "");
    if (out) *out = res;
    free(C0);
    free_matrix(&A), free_matrix(&B), free_matrix(&C);
    return ok;
}

static int64_t random_pad(tu_rng *r) { return tu_chance(r, 1.0 / 3) ? 0 : tu_range(r, 1, 9); }

/* sattn_sgemm refuses bad arguments with a message naming them, C untouched */
static void public_errors(void)
{
    float a[64], b[64], c[64];
    for (int i = 0; i < 64; i++) a[i] = b[i] = 1, c[i] = 7;
    static const struct {
        int ta, tb;
        int64_t M, N, K, lda, ldb, ldc;
        int null_a, null_c;
        const char *needle;
    } bad[] = {
        {0, 0, -1, 2, 2, 2, 2, 2, 0, 0, "M, N, K"},  {0, 0, 2, 2, 3, 2, 2, 2, 0, 0, "lda"},
        {1, 0, 3, 2, 2, 2, 2, 2, 0, 0, "lda"},       {0, 0, 2, 3, 2, 2, 2, 3, 0, 0, "ldb"},
        {0, 1, 2, 2, 3, 3, 2, 2, 0, 0, "ldb"},       {0, 0, 2, 3, 2, 2, 3, 2, 0, 0, "ldc"},
        {0, 0, 2, 2, 2, 2, 2, 2, 1, 0, "A is NULL"}, {0, 0, 2, 2, 2, 2, 2, 2, 0, 1, "C is NULL"},
        {0, 0, 2, 2, 2, INT64_MAX, 2, 2, 0, 0, "int64"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sattn_status st = sattn_sgemm(bad[i].ta, bad[i].tb, bad[i].M, bad[i].N, bad[i].K, bad[i].null_a ? NULL : a,
                                      bad[i].lda, b, bad[i].ldb, 0, bad[i].null_c ? NULL : c, bad[i].ldc);
        int untouched = 1;
        for (int k = 0; k < 64; k++) untouched &= c[k] == 7;
        tu_check(st == SATTN_ERR_INVALID && untouched && strstr(sattn_last_error(), bad[i].needle) != NULL,
                 "sattn_sgemm bad case %zu: status %d, C untouched %d, message \"%s\" names \"%s\"", i, (int)st,
                 untouched, sattn_last_error(), bad[i].needle);
    }
    tu_check(sattn_sgemm(0, 0, 0, 5, 5, NULL, 5, NULL, 5, 0, NULL, 5) == SATTN_OK, "M = 0 with NULL pointers: OK");
}

/* ---- the grids ---- */

static void edge_grid(tu_rng *r)
{
    static const int64_t sizes[] = {0, 1, 7, 63, 65, 257};
    const int ns = (int)(sizeof sizes / sizeof sizes[0]);
    long before = tu_failures;
    double worst = 0;
    for (int a = 0; a < ns; a++)
        for (int b = 0; b < ns; b++)
            for (int c = 0; c < ns; c++)
                for (int t = 0; t < 4; t++)
                    for (int acc = 0; acc < 2; acc++) {
                        compare_result res;
                        run_case(r, t >> 1, t & 1, sizes[a], sizes[b], sizes[c], random_pad(r), random_pad(r),
                                 random_pad(r), acc, &res);
                        if (res.worst > worst) worst = res.worst;
                    }
    printf("edge sizes {0,1,7,63,65,257}^3 x 4 transposes x accumulate: %s, largest error %.3f of allowed\n",
           tu_failures == before ? "ok" : "FAILED", worst);
}

static void random_cases(tu_rng *r, int count)
{
    long before = tu_failures;
    double worst = 0;
    for (int n = 0; n < count; n++) {
        int64_t d[3];
        for (int i = 0; i < 3; i++) d[i] = tu_chance(r, 0.15) ? tu_range(r, 1, 3) : tu_range(r, 1, 300);
        int t = (int)tu_range(r, 0, 3);
        compare_result res;
        run_case(r, t >> 1, t & 1, d[0], d[1], d[2], random_pad(r), random_pad(r), random_pad(r),
                 (int)tu_range(r, 0, 1), &res);
        if (res.worst > worst) worst = res.worst;
    }
    printf("%d random shapes up to 300: %s, largest error %.3f of allowed\n", count,
           tu_failures == before ? "ok" : "FAILED", worst);
}

/* Shapes past the blocking: for the built-in product several 96-row tiles and 4-strip
   tiles, k-blocks of 256 with a short last one, op(B) too large for one pack (16 MiB:
   20 k-blocks of 15 strips) and a k so long that one strip's k-blocks do not fit
   either; for OpenBLAS a grid of 3 x 3 tiles (at most 384 x 384) with short edges. */
static void blocking_cases(tu_rng *r)
{
    struct {
        int64_t M, N, K;
    } shapes[] = {{200, 1000, 600}, {193, 257, 513}, {17, 900, 5000}, {20, 70, 70000}, {16, 300, 700},
                  {800, 900, 64}};
    long before = tu_failures;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            run_case(r, t >> 1, t & 1, shapes[s].M, shapes[s].N, shapes[s].K, random_pad(r), random_pad(r),
                     random_pad(r), t == 2 || s == 1, NULL);
    printf("blocking shapes: %s\n", tu_failures == before ? "ok" : "FAILED");
}

/* ---- row strides beyond INT_MAX ---- */

#if defined(__linux__) && UINTPTR_MAX > 0xffffffffu
/* A sparse mapping: only the pages of the elements are ever touched. */
static int huge_matrix(matrix *m, int64_t rows, int64_t cols, int64_t ld)
{
    memset(m, 0, sizeof *m);
    m->rows = rows, m->cols = cols, m->ld = ld, m->mapped = 1;
    m->bytes = (size_t)((rows - 1) * ld + cols + 1) * sizeof(float);
    void *p = mmap(NULL, m->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return 0;
    m->p = p;
    return 1;
}

static void huge_strides(tu_rng *r)
{
    const int64_t big = (int64_t)INT_MAX + 9; /* elements */
    int ran = 0;
    long before = tu_failures;
    for (int t = 0; t < 4; t++)
        for (int acc = 0; acc < 2; acc++) {
            int ta = t >> 1, tb = t & 1;
            int64_t M = 18, N = 70, K = 40; /* M above the small-M paths: tiles and packs */
            matrix A, B, C;
            int okA = ta ? huge_matrix(&A, K, M, big) : huge_matrix(&A, M, K, big);
            int okB = okA && (tb ? huge_matrix(&B, N, K, big + 2) : huge_matrix(&B, K, N, big + 2));
            int okC = okB && huge_matrix(&C, M, N, big + 5);
            if (!okC) {
                if (okB) free_matrix(&B);
                if (okA) free_matrix(&A);
                printf("strides beyond INT_MAX: skipped (no sparse mapping of %.0f GiB)\n",
                       (double)((M + K + N) * big) * 4 / (1 << 30));
                return;
            }
            fill_input(&A, r);
            fill_input(&B, r);
            /* C before the call, and after it, copied out with row stride N + 1 for the check */
            matrix C0 = new_matrix(M, N, N + 1), Cp = new_matrix(M, N, N + 1);
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++)
                    C.p[i * C.ld + j] = C0.p[i * C0.ld + j] = acc ? (float)tu_unif(r, -2.0, 2.0) : NAN;
            sattn_status st = sattn__sgemm(ta, tb, M, N, K, A.p, A.ld, B.p, B.ld, acc, C.p, C.ld);
            compare_result res = {0, 0, -1, -1, 0, 0, 0};
            if (st == SATTN_OK) {
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < N; j++) Cp.p[i * Cp.ld + j] = C.p[i * C.ld + j];
                res = check_product(ta, tb, M, N, K, &A, &B, acc, C0.p, &Cp);
                for (int64_t i = 0; i < M; i++) /* the element after each row of C: a zero page */
                    if (C.p[i * C.ld + N] != 0.0f) res.bad++;
            }
            tu_check(st == SATTN_OK && res.bad == 0, "%s%s strides > INT_MAX acc=%d: status %d, %ld bad", tname(ta),
                     tname(tb), acc, (int)st, res.bad);
            free_matrix(&C0), free_matrix(&Cp);
            free_matrix(&A), free_matrix(&B), free_matrix(&C);
            ran++;
        }
    printf("strides beyond INT_MAX (%d cases): %s\n", ran, tu_failures == before ? "ok" : "FAILED");
}
#else
static void huge_strides(tu_rng *r)
{
    (void)r;
    printf("strides beyond INT_MAX: skipped (needs 64-bit Linux)\n");
}
#endif

/* ---- threads ---- */

/* C for threads 1 (twice), 2 and 3 must be the same bits. */
static void determinism(tu_rng *r)
{
    struct {
        int64_t M, N, K;
        int ta, tb, acc;
    } cases[] = {
        {2048, 1536, 512, 0, 1, 0}, /* the layer's forward QKV projection */
        {1536, 512, 2048, 1, 0, 1}, /* its weight gradient */
        {2048, 512, 1536, 0, 0, 0}, /* its input gradient */
        {37, 1000, 777, 0, 0, 0},  {37, 1000, 777, 1, 1, 1},  {300, 7, 1025, 0, 1, 0},
        {300, 7, 1025, 1, 0, 1},   {257, 300, 513, 1, 1, 0},  {5, 4000, 300, 0, 1, 0},
        {192, 192, 8, 0, 0, 0},    {65, 63, 257, 0, 1, 1},
    };
    static const int counts[] = {1, 1, 2, 3};
    long before = tu_failures;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t M = cases[c].M, N = cases[c].N, K = cases[c].K;
        int ta = cases[c].ta, tb = cases[c].tb, acc = cases[c].acc;
        matrix A = ta ? new_matrix(K, M, M + 3) : new_matrix(M, K, K);
        matrix B = tb ? new_matrix(N, K, K) : new_matrix(K, N, N + 1);
        fill_input(&A, r);
        fill_input(&B, r);
        float *C0 = malloc((size_t)(M * N) * sizeof(float));
        for (int64_t e = 0; e < M * N; e++) C0[e] = acc ? (float)tu_unif(r, -1.0, 1.0) : NAN;
        float *first = NULL;
        for (size_t t = 0; t < sizeof counts / sizeof counts[0]; t++) {
            float *C = malloc((size_t)(M * N) * sizeof(float));
            memcpy(C, C0, (size_t)(M * N) * sizeof(float));
            sattn_set_num_threads(counts[t]);
            sattn_status st = sattn__sgemm(ta, tb, M, N, K, A.p, A.ld, B.p, B.ld, acc, C, N);
            tu_check(st == SATTN_OK, "status %d", (int)st);
            if (!first) {
                first = C;
                continue;
            }
            int64_t diff = 0;
            for (int64_t e = 0; e < M * N; e++) diff += memcmp(&C[e], &first[e], sizeof(float)) != 0;
            tu_check(diff == 0, "%s%s M=%lld N=%lld K=%lld acc=%d: %lld elements differ between 1 thread and %d%s",
                     tname(ta), tname(tb), (long long)M, (long long)N, (long long)K, acc, (long long)diff, counts[t],
                     t == 1 ? " (a repeated call)" : "");
            free(C);
        }
        sattn_set_num_threads(0);
        free(first);
        free(C0);
        free_matrix(&A), free_matrix(&B);
    }
    printf("threads 1, 1 again, 2, 3 give the same bits (%zu shapes): %s\n", sizeof cases / sizeof cases[0],
           tu_failures == before ? "ok" : "FAILED");
}

/* ---- what a call leaves behind ---- */

/* The first call opens OpenBLAS (when there is one), setting OPENBLAS_CORETYPE for the
   moment: the environment must be as before. OpenBLAS's thread count is held at 1
   during a call: the caller's OpenMP setting must be as before. */
static void side_effects(tu_rng *r)
{
    const char *before = getenv("OPENBLAS_CORETYPE");
    char saved[64] = "";
    if (before) snprintf(saved, sizeof saved, "%s", before);
#ifdef _OPENMP
    omp_set_num_threads(5);
#endif
    run_case(r, 0, 1, 300, 400, 200, 0, 0, 0, 0, NULL);
    const char *after = getenv("OPENBLAS_CORETYPE");
    tu_check(before ? after && strcmp(after, saved) == 0 : after == NULL, "OPENBLAS_CORETYPE was %s, is %s",
             before ? saved : "unset", after ? after : "unset");
#ifdef _OPENMP
    tu_check(omp_get_max_threads() == 5, "omp_get_max_threads() is %d after a GEMM, was 5", omp_get_max_threads());
    omp_set_num_threads(omp_get_num_procs());
#endif
}

/* ---- bench ---- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench(int reps)
{
    struct {
        const char *what;
        int64_t M, N, K;
        int ta, tb, acc;
    } shapes[] = {
        {"QKV = X Wᵀ      (fwd, trans_b)", 2048, 1536, 512, 0, 1, 0},
        {"Y = O Woᵀ       (fwd, trans_b)", 2048, 512, 512, 0, 1, 0},
        {"dX = dQKV W     (bwd, no trans)", 2048, 512, 1536, 0, 0, 0},
        {"dO = dY Wo      (bwd, no trans)", 2048, 512, 512, 0, 0, 0},
        {"dW += dQKVᵀ X   (bwd, trans_a)", 1536, 512, 2048, 1, 0, 1},
        {"dWo += dYᵀ O    (bwd, trans_a)", 512, 512, 2048, 1, 0, 1},
        {"2048x1536x512   no trans", 2048, 1536, 512, 0, 0, 0},
        {"2048x1536x512   trans_a", 2048, 1536, 512, 1, 0, 0},
        {"2048x512x512    trans_a", 2048, 512, 512, 1, 0, 0},
    };
    tu_rng r;
    tu_seed(&r, 7);
    printf("backend %s, %d threads, best of %d\n", sattn__gemm_backend(), sattn_get_num_threads(), reps);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        int ta = shapes[s].ta;
        matrix A = ta ? new_matrix(K, M, M) : new_matrix(M, K, K);
        matrix B = shapes[s].tb ? new_matrix(N, K, K) : new_matrix(K, N, N);
        fill_input(&A, &r);
        fill_input(&B, &r);
        float *C = calloc((size_t)(M * N), sizeof(float));
        double best = 1e30;
        for (int i = 0; i < reps; i++) {
            double t0 = now();
            sattn__sgemm(ta, shapes[s].tb, M, N, K, A.p, A.ld, B.p, B.ld, shapes[s].acc, C, N);
            double t = now() - t0;
            if (t < best) best = t;
        }
        printf("  %-34s M=%-5lld N=%-5lld K=%-5lld %7.1f GFLOP/s\n", shapes[s].what, (long long)M, (long long)N,
               (long long)K, 2.0 * (double)M * (double)N * (double)K / best * 1e-9);
        free(C);
        free_matrix(&A), free_matrix(&B);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *isa = getenv("SATTN_ISA");
    if (isa && *isa && !getenv("SATTN_BLAS")) setenv("SATTN_BLAS", "off", 1);
    tu_begin();
    if (argc > 1 && strcmp(argv[1], "bench") == 0) return bench(argc > 2 ? atoi(argv[2]) : 10);

    const char *backend = sattn_gemm_backend();
    printf("gemm backend: %s\n", backend);
    tu_check(strcmp(backend, sattn__gemm_backend()) == 0, "sattn_gemm_backend and sattn__gemm_backend differ");
    const char *env = getenv("SATTN_BLAS");
    if (env && (strcmp(env, "0") == 0 || strcmp(env, "off") == 0))
        tu_check(strncmp(backend, "builtin (", 9) == 0, "SATTN_BLAS=%s, but the backend is %s", env, backend);
    else
        tu_check(strncmp(backend, "builtin (", 9) == 0 || strncmp(backend, "openblas (", 10) == 0,
                 "backend name %s", backend);

    tu_rng r;
    tu_seed(&r, 2024);
    side_effects(&r);
    public_errors();
    edge_grid(&r);
    random_cases(&r, 150);
    blocking_cases(&r);
    huge_strides(&r);
    determinism(&r);
    return tu_summary("test_gemm");
}
