/* The dense GEMMs of the layer's projections: C (+)= op(A) · op(B), row-major f32.
 *
 * Two backends, chosen once per process:
 *   builtin    a blocked product on the kernel table's micro-kernel (the next section);
 *   openblas   cblas_sgemm of the OpenBLAS found at build time, opened with dlopen on
 *              first use (the section after; why it is not linked is said there).
 * Either gives the same bits for any thread count; the two backends differ from each
 * other in the last bits (another summation order).
 */
#define _POSIX_C_SOURCE 200809L /* setenv, unsetenv, strcasecmp */

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "kernels/kernels.h"
#include "sattn_internal.h"

#ifdef SATTN_BLAS_PATH
#include <dlfcn.h>
#include <pthread.h>
#include <strings.h>
#endif

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int fits_int(int64_t x) { return x <= INT_MAX; }

/* ---- built-in: a blocked product on the micro-kernel ----
 *
 * op(B) is packed by k-blocks of KC rows and strips of NS columns: strip (kb, s) holds
 * op(B)[k0 + kk][j0 + c] at kk * NS + c, the row-major B the micro-kernel reads
 * (ldb = NS): 64 KiB, contiguous, read from L2 while the rows of a tile stream past
 * it. The pack is shared by all threads and made once (the transpose of trans_b goes
 * through the table's 16 x 16 transposer); op(A) is read in place, trans_a only swaps
 * its strides. C is cut in tiles of at most MC rows x TS strips; a tile belongs to one
 * thread, which walks the k-blocks in order.
 *
 * Determinism: every micro-kernel of the table keeps one accumulator per element of C
 * and adds its k terms in increasing k (one fused multiply-add each in the SIMD sets);
 * between k-blocks the partial sum goes through C as f32, which is exact. An element's
 * bits therefore depend on no block size, tile or thread: the thread count can change
 * the schedule freely. */

enum {
    KC = 256,        /* k per block */
    NS = 64,         /* columns per strip: the AVX-512 micro-kernel's panel */
    MC = 96,         /* rows per tile: 16 micro-tiles of 6 rows */
    TS = 4,          /* strips per tile */
    SMALL_M = 16,    /* at most this many rows: op(B) is read in place, not packed */
};
/* Largest pack (floats): 16 MiB. Beyond it op(B) is packed and used a chunk of strips
   (and, for a very long k, a chunk of k-blocks) at a time. */
#define PACK_MAX ((int64_t)4 << 20)

typedef struct {
    int ta, tb, accumulate;
    int64_t M, N, K, lda, ldb, ldc;
    const float *A, *B;
    float *C;
    const sattn__kernels *kt;
    int a_in_place;        /* op(A)'s strides fit the kernel's int */
    int b_in_place;        /* op(B) is read where it is (no pack) */
    float *pack;           /* shared: the strips of one chunk, kstride x NS floats each */
    int64_t kstride;       /* KC, or K when that is less */
    float *ascratch;       /* per thread: an A block when its strides do not fit an int */
    size_t astride;
    int64_t units, mtiles; /* 6-row units of M, and row blocks of as even a share of them */
} gemm_job;

/* The KC x NS strip of op(B) at rows k0.., columns j0.. (w <= NS of them) into dst. */
static void pack_strip(const gemm_job *g, float *dst, int64_t k0, int kc, int64_t j0, int w)
{
    if (g->tb) { /* op(B)[k][j] = B[j][k]: a transpose */
        g->kt->load_rows_t(dst, NS, g->B + j0 * g->ldb + k0, g->ldb, w, kc, SATTN_F32);
    } else {
        for (int kk = 0; kk < kc; kk++)
            memcpy(dst + (size_t)kk * NS, g->B + (k0 + kk) * g->ldb + j0, (size_t)w * sizeof(float));
    }
}

/* op(A)[i0 .. i0+mc)[k0 .. k0+kc) as the kernel reads it (strides *ars, *acs): in place,
   or where a stride does not fit the kernel's int, copied into scratch (MC x KC). */
static const float *a_block(const gemm_job *g, float *scratch, int64_t i0, int mc, int64_t k0, int kc, int *ars,
                            int *acs)
{
    if (g->a_in_place) {
        *ars = g->ta ? 1 : (int)g->lda;
        *acs = g->ta ? (int)g->lda : 1;
        return g->ta ? g->A + k0 * g->lda + i0 : g->A + i0 * g->lda + k0;
    }
    if (g->ta) { /* stored rows are k: [kk][r] */
        for (int kk = 0; kk < kc; kk++)
            memcpy(scratch + (size_t)kk * MC, g->A + (k0 + kk) * g->lda + i0, (size_t)mc * sizeof(float));
        *ars = 1, *acs = MC;
    } else {
        for (int r = 0; r < mc; r++)
            memcpy(scratch + (size_t)r * KC, g->A + (i0 + r) * g->lda + k0, (size_t)kc * sizeof(float));
        *ars = KC, *acs = 1;
    }
    return scratch;
}

/* C[i0 .. i0+mc)[j0 .. j0+w) (+)= a · Bk: a from a_block, Bk row-major (row stride ldbk). */
static void block_product(const gemm_job *g, int64_t i0, int mc, int64_t j0, int w, const float *a, int ars,
                          int acs, const float *Bk, int ldbk, int kc, int accumulate)
{
    float *c = g->C + i0 * g->ldc + j0;
    if (fits_int(g->ldc)) {
        g->kt->gemm(c, (int)g->ldc, a, ars, acs, Bk, ldbk, mc, w, kc, accumulate, 0);
    } else { /* one row per call: the row stride of C is never used */
        for (int r = 0; r < mc; r++)
            g->kt->gemm(c + r * g->ldc, 0, a + (int64_t)r * ars, ars, acs, Bk, ldbk, 1, w, kc, accumulate, 0);
    }
}

/* The product over k-blocks [kb0, kb1) and strips [s0, s0 + ns) of op(B), with the
   pack (if any) holding exactly those: strip (kb, s) at ((kb - kb0) * ns + s - s0). */
static void run_chunk(const gemm_job *g, int threads, int64_t kb0, int64_t kb1, int64_t s0, int64_t ns)
{
    const int64_t nkb = kb1 - kb0;
    const int64_t stiles = (ns + TS - 1) / TS, ntiles = g->mtiles * stiles;
    sattn__par par;
    sattn__par_begin(&par, threads);
    SATTN__OMP(omp parallel num_threads(threads) if (threads > 1))
    {
        sattn__par_mark mark;
        sattn__par_enter(&par, &mark);
        float *ascratch = g->ascratch ? g->ascratch + (size_t)sattn__thread_id() * g->astride : NULL;
        if (!g->b_in_place) {
            SATTN__OMP(omp for schedule(static))
            for (int64_t t = 0; t < nkb * ns; t++) {
                int64_t kb = kb0 + t / ns, s = s0 + t % ns;
                int64_t k0 = kb * KC, j0 = s * NS;
                pack_strip(g, g->pack + t * g->kstride * NS, k0, (int)min64(KC, g->K - k0), j0,
                           (int)min64(NS, g->N - j0));
            }
        }
        SATTN__OMP(omp for schedule(static))
        for (int64_t t = 0; t < ntiles; t++) {
            int64_t mi = t / stiles, i0 = 6 * (mi * g->units / g->mtiles);
            int mc = (int)(min64(g->M, 6 * ((mi + 1) * g->units / g->mtiles)) - i0);
            int64_t sa = s0 + (t % stiles) * TS, sb = min64(sa + TS, s0 + ns);
            for (int64_t kb = kb0; kb < kb1; kb++) {
                int64_t k0 = kb * KC;
                int kc = (int)min64(KC, g->K - k0), ars, acs;
                int acc = g->accumulate || kb > 0;
                const float *a = a_block(g, ascratch, i0, mc, k0, kc, &ars, &acs);
                for (int64_t s = sa; s < sb; s++) {
                    int64_t j0 = s * NS;
                    int w = (int)min64(NS, g->N - j0);
                    if (g->b_in_place)
                        block_product(g, i0, mc, j0, w, a, ars, acs, g->B + k0 * g->ldb + j0, (int)g->ldb, kc, acc);
                    else
                        block_product(g, i0, mc, j0, w, a, ars, acs,
                                      g->pack + ((kb - kb0) * ns + (s - s0)) * g->kstride * NS, NS, kc, acc);
                }
            }
        }
        sattn__par_leave(&par, &mark);
    }
    sattn__par_end(&par);
}

/* A few rows against op(B) = Bᵀ read in place: the table's dot-product kernel, over
   fixed groups of columns (one call per element's whole k, so the bits do not depend
   on the grouping either). */
static void small_nt(const gemm_job *g, int threads)
{
    const int64_t groups = (g->N + NS - 1) / NS;
    (void)threads;
    SATTN__OMP(omp parallel for num_threads(threads) schedule(static) if (threads > 1))
    for (int64_t t = 0; t < groups; t++) {
        int64_t j0 = t * NS;
        g->kt->gemm_nt(g->C + j0, (int)g->ldc, g->A, (int)g->lda, g->B + j0 * g->ldb, (int)g->ldb, (int)g->M,
                       (int)min64(NS, g->N - j0), (int)g->K);
    }
}

static sattn_status builtin_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                                  const float *B, int64_t ldb, int accumulate, float *C, int64_t ldc)
{
    gemm_job g = {.ta = ta, .tb = tb, .accumulate = accumulate, .M = M, .N = N, .K = K,
                  .lda = lda, .ldb = ldb, .ldc = ldc, .A = A, .B = B, .C = C, .kt = sattn__kernels_get()};
    int threads = sattn__threads_for(2.0 * (double)M * (double)N * (double)K, INT64_MAX);

    if (tb && !ta && !accumulate && M <= SMALL_M && fits_int(K) && fits_int(lda) && fits_int(ldb) &&
        fits_int(ldc)) {
        small_nt(&g, threads);
        return SATTN_OK;
    }

    g.a_in_place = fits_int(lda);
    g.b_in_place = !tb && M <= SMALL_M && fits_int(ldb);
    const int64_t nkb = (K + KC - 1) / KC, nstrips = (N + NS - 1) / NS;
    /* chunks: all k-blocks of as many strips as PACK_MAX holds, or for a long k,
       as many k-blocks of one strip */
    int64_t kbc = nkb, sc = nstrips;
    g.kstride = min64(K, KC);
    if (!g.b_in_place) {
        kbc = min64(nkb, PACK_MAX / (KC * NS));
        sc = kbc < nkb ? 1 : min64(nstrips, PACK_MAX / (kbc * g.kstride * NS));
    }
    /* Row blocks of at most MC rows, evenly cut in 6-row units, and in a number that
       shares the tiles evenly among the threads where a few more blocks do it. */
    const int64_t stiles = (sc + TS - 1) / TS;
    g.units = (M + 5) / 6;
    g.mtiles = (g.units + MC / 6 - 1) / (MC / 6);
    for (int64_t more = g.mtiles; more < g.mtiles + threads && more <= g.units; more++)
        if (more * stiles % threads == 0) {
            g.mtiles = more;
            break;
        }
    if (threads > g.mtiles * stiles) threads = (int)(g.mtiles * stiles);

    size_t stride;
    if (!g.b_in_place && !(g.pack = sattn__scratch_alloc((size_t)(kbc * sc * g.kstride * NS), 1, &stride)))
        return SATTN_ERR_NOMEM;
    if (!g.a_in_place && !(g.ascratch = sattn__scratch_alloc((size_t)MC * KC, threads, &g.astride))) {
        sattn__scratch_free(g.pack);
        return SATTN_ERR_NOMEM;
    }
    for (int64_t kb0 = 0; kb0 < nkb; kb0 += kbc)
        for (int64_t s0 = 0; s0 < nstrips; s0 += sc)
            run_chunk(&g, threads, kb0, min64(kb0 + kbc, nkb), s0, min64(sc, nstrips - s0));
    sattn__scratch_free(g.ascratch);
    sattn__scratch_free(g.pack);
    return SATTN_OK;
}

static const char *builtin_name(void)
{
    const char *isa = sattn__kernels_get()->name;
    if (strcmp(isa, "avx512") == 0 || strcmp(isa, "avx512bf16") == 0) return "builtin (avx512)";
    if (strcmp(isa, "avx2") == 0) return "builtin (avx2)";
    if (strcmp(isa, "generic") == 0) return "builtin (generic)";
    return "builtin";
}

/* ---- OpenBLAS, opened at run time ----
 *
 * Why dlopen and not a link: Debian's OpenBLAS 0.3.21 (a DYNAMIC_ARCH build) detects
 * some AVX-512 CPUs as older cores and then runs those cores' slower kernels. It reads
 * OPENBLAS_CORETYPE only while it loads, so sattn opens it itself, with the variable set
 * to SKYLAKEX for that moment on a CPU with AVX-512F (unless the user set it), and then
 * cleared again: the environment is left as found. (Where the detection is right, as
 * Cooperlake on Zen 4, its sgemm is the same SkylakeX kernel.) This runs once, on the
 * first GEMM; like any setenv it must not race a getenv in another thread.
 * Where OpenBLAS was loaded before sattn (linked by the program, say), the variable can
 * no longer take effect: if its core has no AVX2 kernels on a CPU that runs AVX2, the
 * built-in product is used rather than a silent slow path. The same holds for a core
 * without AVX-512 kernels (Haswell, Zen: OPENBLAS_CORETYPE=Haswell set in the
 * environment, say) on a CPU that runs AVX-512: there its sgemm runs the layer's shapes
 * well below the built-in product (`tests/test_gemm bench`; BENCHMARKS.md). SATTN_BLAS=0 or off in the
 * environment keeps to the built-in; so does anything that fails to load.
 *
 * Threads and determinism: OpenBLAS's threaded sgemm is not bit-reproducible across
 * thread counts. With several threads it splits a k between GEMM_Q and 2 GEMM_Q into
 * other halves than with one (level3_thread.c rounds (k + 1) / 2, level3.c rounds k / 2
 * up to GEMM_UNROLL_M), and its Haswell/Zen kernels round an element differently
 * depending on how the columns were divided among threads: 37 x 1000 x 777 differs
 * between 1 and 2 threads on SkylakeX, and 192 x 192 x 8 already on Haswell. So sattn
 * splits the call itself: C is cut in a grid of tiles that depends on M, N and K only,
 * and each tile is one single-threaded cblas_sgemm over the whole k, the tiles shared
 * out among sattn's threads. A tile's bits then depend on nothing but its operands.
 * OpenBLAS's thread count is held at 1 for the duration: with its OpenMP build through
 * the calling thread's OpenMP setting (which that build follows on every call, and
 * which is per thread, so concurrent callers do not disturb each other), else with
 * openblas_set_num_threads under a lock; either is restored afterwards. */

#ifdef SATTN_BLAS_PATH

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*cblas_sgemm_fn)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                               const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

static struct {
    int on;
    cblas_sgemm_fn sgemm;
    void (*set_threads)(int);
    int (*get_threads)(void);
    int (*get_omp_threads)(void);       /* omp_get_max_threads of the OpenMP runtime */
    void (*set_omp_threads)(int);       /* OpenBLAS runs on, or NULL */
    char name[96];
} blas;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t blas_lock = PTHREAD_MUTEX_INITIALIZER;

/* OpenBLAS 0.3.21+ cores whose sgemm runs AVX2 (or AVX-512) kernels */
static int avx2_core(const char *core)
{
    static const char *const names[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(core, names[i]) == 0) return 1;
    return 0;
}

/* ... and those whose sgemm runs AVX-512 kernels */
static int avx512_core(const char *core)
{
    static const char *const names[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(core, names[i]) == 0) return 1;
    return 0;
}

static void blas_load(void)
{
    const char *env = getenv("SATTN_BLAS");
    if (env && (strcmp(env, "0") == 0 || strcasecmp(env, "off") == 0)) return;

    /* already in the process: under this path, or any file with its soname */
    const char *base = strrchr(SATTN_BLAS_PATH, '/');
    base = base ? base + 1 : SATTN_BLAS_PATH;
    void *h = dlopen(SATTN_BLAS_PATH, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (!h) h = dlopen(base, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (!h) {
        int set = getenv("OPENBLAS_CORETYPE") == NULL && sattn__cpu_runs("avx512");
        if (set) setenv("OPENBLAS_CORETYPE", "SKYLAKEX", 1);
        h = dlopen(SATTN_BLAS_PATH, RTLD_NOW | RTLD_LOCAL);
        if (set) unsetenv("OPENBLAS_CORETYPE");
    }
    if (!h) return;
    /* On any failure below the library stays open but unused: unloading one that may
       have started threads is the greater risk. */
    cblas_sgemm_fn sgemm = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
    char *(*corename)(void) = (char *(*)(void))dlsym(h, "openblas_get_corename");
    void (*set_threads)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
    int (*get_threads)(void) = (int (*)(void))dlsym(h, "openblas_get_num_threads");
    int (*get_parallel)(void) = (int (*)(void))dlsym(h, "openblas_get_parallel");
    if (!sgemm || !corename || !set_threads || !get_threads) return;
    const char *core = corename();
    if (!core) core = "unknown";
    if (sattn__cpu_runs("avx2") && !avx2_core(core)) return;
    if (sattn__cpu_runs("avx512") && !avx512_core(core)) return;
    if (get_parallel && get_parallel() == 2) {
        /* The OpenMP build: the runtime its omp_* calls are bound to, which is the
           process's global one where there is one (sattn's, say: libomp in a clang
           build), and only else the libgomp it depends on. */
        void *scopes[2] = {dlopen(NULL, RTLD_NOW), h};
        for (int i = 0; i < 2 && !blas.set_omp_threads; i++) {
            if (!scopes[i]) continue;
            blas.get_omp_threads = (int (*)(void))dlsym(scopes[i], "omp_get_max_threads");
            blas.set_omp_threads = (void (*)(int))dlsym(scopes[i], "omp_set_num_threads");
            if (!blas.get_omp_threads) blas.set_omp_threads = NULL;
        }
        if (!blas.set_omp_threads) return;
    }
    blas.sgemm = sgemm;
    blas.set_threads = set_threads;
    blas.get_threads = get_threads;
    snprintf(blas.name, sizeof blas.name, "openblas (%s)", core);
    blas.on = 1;
}

static int blas_ready(void)
{
    pthread_once(&blas_once, blas_load);
    return blas.on;
}

/* The tile grid, which must not depend on the thread count: tiles of at most BT x BT,
   and at least TMIN of them (so that up to 16 threads find work) while their sides stay
   at least BMIN; sides rounded up to 16 (the AVX-512 kernels' unroll). Below BLAS_ONE
   multiply-adds, one tile. A single-threaded OpenBLAS call runs at about the same rate
   from 128 x 128 to 512 x 512, so the grid costs little against OpenBLAS's own
   threading (BENCHMARKS.md, "Constants and their measurements"). */
enum { BT = 384, TMIN = 16, BMIN = 128 };
#define BLAS_ONE (1 << 22)

static void blas_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, int accumulate, float *C, int64_t ldc)
{
    int64_t tm = 1, tn = 1;
    if ((double)M * (double)N * (double)K > BLAS_ONE) {
        tm = (M + BT - 1) / BT;
        tn = (N + BT - 1) / BT;
        while (tm * tn < TMIN) { /* cut the longer side while tiles stay >= BMIN */
            if (M / (tm + 1) >= BMIN && (M * tn >= N * tm || N / (tn + 1) < BMIN)) tm++;
            else if (N / (tn + 1) >= BMIN) tn++;
            else break;
        }
    }
    int64_t bm = ((M + tm - 1) / tm + 15) / 16 * 16, bn = ((N + tn - 1) / tn + 15) / 16 * 16;
    tm = (M + bm - 1) / bm;
    tn = (N + bn - 1) / bn;
    int64_t tiles = tm * tn;
    const int threads = sattn__threads_for(2.0 * (double)M * (double)N * (double)K, tiles);

    int omp = blas.set_omp_threads != NULL, saved = 0;
    if (omp) {
        saved = blas.get_omp_threads();
        blas.set_omp_threads(1);
    } else {
        pthread_mutex_lock(&blas_lock);
        saved = blas.get_threads();
        blas.set_threads(1);
    }
    sattn__par par;
    sattn__par_begin(&par, threads);
    SATTN__OMP(omp parallel num_threads(threads) if (threads > 1))
    {
        sattn__par_mark mark;
        sattn__par_enter(&par, &mark);
        /* the setting is per thread: inherited where OpenBLAS's runtime is sattn's,
           else made here for each thread sattn's runtime started */
        if (omp) blas.set_omp_threads(1);
        SATTN__OMP(omp for schedule(dynamic, 1))
        for (int64_t t = 0; t < tiles; t++) {
            int64_t i0 = (t / tn) * bm, j0 = (t % tn) * bn;
            int m = (int)min64(bm, M - i0), n = (int)min64(bn, N - j0);
            const float *a = ta ? A + i0 : A + i0 * lda;
            const float *b = tb ? B + j0 * ldb : B + j0;
            blas.sgemm(CBLAS_ROW_MAJOR, ta ? CBLAS_TRANS : CBLAS_NO_TRANS, tb ? CBLAS_TRANS : CBLAS_NO_TRANS, m, n,
                       (int)K, 1.0f, a, (int)lda, b, (int)ldb, accumulate ? 1.0f : 0.0f, C + i0 * ldc + j0,
                       (int)ldc);
        }
        sattn__par_leave(&par, &mark);
    }
    sattn__par_end(&par);
    if (omp) {
        blas.set_omp_threads(saved);
    } else {
        blas.set_threads(saved);
        pthread_mutex_unlock(&blas_lock);
    }
}

#endif /* SATTN_BLAS_PATH */

/* ---- entry points ---- */

sattn_status sattn__sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, const float *A,
                          int64_t lda, const float *B, int64_t ldb, int accumulate, float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return SATTN_OK;
    if (K <= 0) { /* an empty sum */
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
        return SATTN_OK;
    }
#ifdef SATTN_BLAS_PATH
    /* OpenBLAS's int: tiles bound m and n; the rest must fit as they are */
    if (blas_ready() && fits_int(K) && fits_int(lda) && fits_int(ldb) && fits_int(ldc)) {
        blas_sgemm(trans_a, trans_b, M, N, K, A, lda, B, ldb, accumulate, C, ldc);
        return SATTN_OK;
    }
#endif
    return builtin_sgemm(trans_a, trans_b, M, N, K, A, lda, B, ldb, accumulate, C, ldc);
}

const char *sattn__gemm_backend(void)
{
#ifdef SATTN_BLAS_PATH
    if (blas_ready()) return blas.name;
#endif
    return builtin_name();
}

const char *sattn_gemm_backend(void) { return sattn__gemm_backend(); }

/* The public entry: the internal one after the checks a caller's arguments need.
   The last element of each matrix, (rows - 1) * ld + cols - 1, must be an int64
   offset; the GEMM computes no other index larger than that. */
static int span_ok(int64_t rows, int64_t cols, int64_t ld)
{
    int64_t last;
    return sattn__mul_ok(rows - 1, ld, &last) && sattn__add_ok(last, cols - 1, &last);
}

sattn_status sattn_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, int accumulate, float *C, int64_t ldc)
{
    if (M < 0 || N < 0 || K < 0)
        return sattn__fail("sgemm: M, N, K must be >= 0 (got %lld, %lld, %lld)", (long long)M, (long long)N,
                           (long long)K);
    int64_t a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
    int64_t b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    if (lda < a_cols || lda < 0)
        return sattn__fail("sgemm: lda = %lld is less than the %lld columns of A as stored", (long long)lda,
                           (long long)a_cols);
    if (ldb < b_cols || ldb < 0)
        return sattn__fail("sgemm: ldb = %lld is less than the %lld columns of B as stored", (long long)ldb,
                           (long long)b_cols);
    if (ldc < N)
        return sattn__fail("sgemm: ldc = %lld is less than N = %lld", (long long)ldc, (long long)N);
    if (M == 0 || N == 0) return SATTN_OK;
    if (C == NULL) return sattn__fail("sgemm: C is NULL");
    if (!span_ok(M, N, ldc)) return sattn__fail("sgemm: C's last element is past an int64 offset");
    if (K > 0) {
        if (A == NULL || B == NULL) return sattn__fail("sgemm: %s is NULL", A == NULL ? "A" : "B");
        if (!span_ok(a_rows, a_cols, lda) || !span_ok(b_rows, b_cols, ldb))
            return sattn__fail("sgemm: %s's last element is past an int64 offset",
                               span_ok(a_rows, a_cols, lda) ? "B" : "A");
    }
    return sattn__sgemm(trans_a != 0, trans_b != 0, M, N, K, A, lda, B, ldb, accumulate != 0, C, ldc);
}
