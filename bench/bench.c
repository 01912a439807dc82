/* sattn benchmark: in one run, measures this machine's FMA peak and memory read
 * bandwidth, then times sattn against an unfused OpenBLAS attention (cblas_sgemm for
 * Q·Kᵀ and P·V, a vectorized softmax) on the same inputs, and prints for each case
 * the median time, GFLOP/s, % of the measured peak (or GB/s and % of bandwidth for
 * decode) and the speedup over the baseline. Peak and bandwidth are measured at the
 * start and again at the end; the percentages use the higher of each. Each decode call
 * is also set against a read of 128 MiB timed just before it (%beside: the median of
 * the calls' ratios), the memory's speed at that moment.
 *
 *   bench [--quick] [--reps R] [--only fwd|bwd|layer|decode|mem|peak]
 *
 * (--only peak measures the peak and bandwidth alone, for other benchmarks' percentages:
 * bench/embed/bench_embed.py.)
 *
 * While it runs, a progress line on stderr names the case being timed ("[12/40] fwd
 * d=64 N=1024 causal f32", redrawn in place on a terminal, one line per case
 * otherwise); the table is printed on stdout at the end. `sattn bench` runs this
 * program with its arguments.
 *
 * FLOPs: forward 4·B·H·Nq·Nkv·d (causal: only the unmasked pairs), backward 2.5x that.
 * The layer case (B=4, N=512, E=512, 8 heads) adds 2·T·E·(3E + E) for the projections
 * (twice that again in the backward: dX and dW), against the same layer built from
 * cblas_sgemm projections around the unfused attention.
 * Debian's OpenBLAS 0.3.21 takes this CPU for an old one unless OPENBLAS_CORETYPE is
 * set before it loads, so the program re-executes itself with it set. */
#define _GNU_SOURCE
#include <cblas.h>
#include <dlfcn.h>
#include <immintrin.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "sattn.h"
#include "timing.h"

extern void openblas_set_num_threads(int);
extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);

static const char *g_prog = "bench"; /* "sattn bench" when run by the sattn program */

static int g_reps = 5;
static int g_threads = 1;
static double g_peak, g_bw; /* measured at the start; the table uses the higher of these and the end's */

/* ---- output: rows collected for the table at the end, progress on stderr ---- */

static char *g_table;
static size_t g_table_len, g_table_cap;
static int g_case, g_cases, g_tty;

/* Appends a formatted piece to the table (a failed allocation drops it). */
__attribute__((format(printf, 1, 2))) static void table(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (g_table_len + (size_t)n + 1 > g_table_cap) {
        size_t cap = 2 * (g_table_len + (size_t)n + 1) + 4096;
        char *t = realloc(g_table, cap);
        if (!t) return;
        g_table = t, g_table_cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(g_table + g_table_len, g_table_cap - g_table_len, fmt, ap);
    va_end(ap);
    g_table_len += (size_t)n;
}

/* The next case starts: "[k/n] what", in place on a terminal. */
static void progress(const char *what)
{
    g_case++;
    if (g_tty) fprintf(stderr, "\r\033[K[%d/%d] %s ...", g_case, g_cases, what);
    else fprintf(stderr, "[%d/%d] %s\n", g_case, g_cases, what);
    fflush(stderr);
}

/* A timed case: its row is written when the table is printed, so that its percentage
   can use the reference measured last (see main). */
typedef struct result {
    char name[64];
    double t, amount, base; /* seconds; FLOPs or bytes; the baseline's seconds */
    int bytes;              /* amount is bytes: GB/s and % of bandwidth */
    double beside;          /* decode: the median of each call's GB/s over the read rate
                               measured just before it (0: none) */
} result;
static result *g_res;
static size_t g_nres;

static result *add_result(const char *name, double t, double amount, double base, int bytes)
{
    result *r = realloc(g_res, (g_nres + 1) * sizeof *r);
    if (!r) return NULL;
    g_res = r;
    snprintf(r[g_nres].name, sizeof r[g_nres].name, "%s", name);
    r[g_nres].t = t, r[g_nres].amount = amount, r[g_nres].base = base, r[g_nres].bytes = bytes;
    r[g_nres].beside = 0;
    table("\001%zu\n", g_nres++); /* a placeholder line: the row, rendered at the end */
    return &r[g_nres - 1];
}

/* Clears the progress line and prints the table so far, percentages against peak
   GFLOP/s and bw GB/s. */
static void print_table(double peak, double bw)
{
    if (g_tty) fprintf(stderr, "\r\033[K");
    for (size_t at = 0; g_table && at < g_table_len;) {
        const char *line = g_table + at, *end = memchr(line, '\n', g_table_len - at);
        size_t len = end ? (size_t)(end - line) + 1 : g_table_len - at;
        size_t i;
        if (line[0] == '\001' && sscanf(line + 1, "%zu", &i) == 1 && i < g_nres) {
            const result *r = &g_res[i];
            double rate = r->amount / r->t * 1e-9;
            if (r->bytes)
                printf("%-34s %9.3f %7.1f GB/s %5.1f%% of bw %9.3f %7.2fx %7.1f%%\n", r->name, r->t * 1e3, rate,
                       100.0 * rate / bw, r->base * 1e3, r->base / r->t, 100.0 * r->beside);
            else
                printf("%-34s %9.2f %9.1f %6.1f%% %11.2f %7.2fx\n", r->name, r->t * 1e3, rate, 100.0 * rate / peak,
                       r->base * 1e3, r->base / r->t);
        } else {
            fwrite(line, 1, len, stdout);
        }
        at += len;
    }
    fflush(stdout);
    free(g_table), free(g_res);
    g_table = NULL, g_table_len = g_table_cap = 0, g_res = NULL, g_nres = 0;
}

/* A failed call: what was measured so far, then the message; exit status 1. */
__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
    print_table(g_peak, g_bw);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", g_prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void fill(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = lo + (hi - lo) * (float)(s >> 40) * 0x1p-24f;
    }
}

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static uint16_t to_f16(float f) /* inputs here are small normal numbers */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a < 0x38800000u) return (uint16_t)sign; /* tiny: flush, fine for benchmark data */
    uint32_t h = (a - 0x38000000u) >> 13, rest = a & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

/* ---- this machine: FMA peak and read bandwidth ---- */

/* Independent FMA chains in named registers (an array invites the compiler to keep
   them in memory): 12 or more chains cover the 4-to-5-cycle latency of two FMA pipes.
   AVX2 has 16 vector registers: 12 chains and the two constants fit, 16 would spill. */
#define FMA12(F)                                                                               \
    F(a0, 0) F(a1, 1) F(a2, 2) F(a3, 3) F(a4, 4) F(a5, 5) F(a6, 6) F(a7, 7) F(a8, 8) F(a9, 9)     \
    F(a10, 10) F(a11, 11)
#define FMA16(F) FMA12(F) F(a12, 12) F(a13, 13) F(a14, 14) F(a15, 15)

__attribute__((target("avx512f"))) static double fma_chain512(long iters)
{
    const __m512 b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);
#define INIT(x, i) __m512 x = _mm512_set1_ps((float)(i));
    FMA16(INIT)
#undef INIT
    for (long it = 0; it < iters; it++) {
#define STEP(x, i) x = _mm512_fmadd_ps(x, b, c);
        FMA16(STEP)
#undef STEP
    }
    __m512 s = _mm512_setzero_ps();
#define SUM(x, i) s = _mm512_add_ps(s, x);
    FMA16(SUM)
#undef SUM
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static double fma_chain256(long iters)
{
    const __m256 b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
#define INIT(x, i) __m256 x = _mm256_set1_ps((float)(i));
    FMA12(INIT)
#undef INIT
    for (long it = 0; it < iters; it++) {
#define STEP(x, i) x = _mm256_fmadd_ps(x, b, c);
        FMA12(STEP)
#undef STEP
    }
    __m256 s = _mm256_setzero_ps();
#define SUM(x, i) s = _mm256_add_ps(s, x);
    FMA12(SUM)
#undef SUM
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0];
}

/* GFLOP/s of independent FMA chains on every thread. */
static double measure_peak(void)
{
    /* the peak of the vectors the kernels in use have: 256-bit FMA for the avx2 table on an
       AVX-512 CPU (SATTN_ISA=avx2) */
    int avx512 = __builtin_cpu_supports("avx512f") && strncmp(sattn_isa(), "avx512", 6) == 0;
    if (!avx512 && !__builtin_cpu_supports("avx2")) return 0;
    const long iters = 20000000;
    double t[5], sink = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = bench_seconds();
#pragma omp parallel num_threads(g_threads) reduction(+ : sink)
        sink += avx512 ? fma_chain512(iters) : fma_chain256(iters);
        t[r] = bench_seconds() - t0;
    }
    double flops = (double)g_threads * (double)iters * (avx512 ? 16 * 32 : 12 * 16); /* chains x flops per FMA */
    if (sink == 42) printf(" ");
    return flops / bench_median(t, 5) * 1e-9;
}

/* Sum of n floats (n a multiple of 64) with full-width loads and 4 independent
   accumulators, so the loop waits on memory and not on the adds. */
__attribute__((target("avx512f"))) static float read512(const float *p, size_t n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i)), a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32)), a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

__attribute__((target("avx2"))) static float read256(const float *p, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i)), a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16)), a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    float f[8];
    _mm256_storeu_ps(f, s);
    return f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
}

/* Large buffers on 2 MiB pages where the kernel grants them (transparent huge pages,
   asked for with madvise before the first touch): the bandwidth read and the decode
   KV cache alike, as sattn's own KV cache asks for them. On 4 KiB pages both lose time
   to page walks: measured in one process, the 512 MiB read 12% slower and a cold
   decode 10-25% slower. g_huge_kib says how much the kernel granted. */
static size_t g_huge_kib;

static void *big_alloc(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    size_t n = (bytes + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, n);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, n, MADV_HUGEPAGE); /* advice: refused, the pages stay 4 KiB */
#endif
    return p;
}

/* KiB of this process's memory on transparent huge pages (0 if unknown). */
static size_t huge_kib(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f) return 0;
    char line[256];
    size_t kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %zu kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

/* A buffer of n floats on 2 MiB pages where granted, written once. */
static float *read_buffer(size_t n)
{
    float *buf = big_alloc(n * sizeof(float));
    if (!buf) return NULL;
#pragma omp parallel for num_threads(g_threads) schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 255);
    return buf;
}

/* GB/s of one read of buf[0, n), each thread its contiguous half, with the widest loads
   the CPU has. */
static double read_rate(const float *buf, size_t n)
{
    const int avx512 = __builtin_cpu_supports("avx512f");
    double t0 = bench_seconds(), total = 0;
#pragma omp parallel num_threads(g_threads) reduction(+ : total)
    {
        int id = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t lo = n / 64 * id / nt * 64, hi = n / 64 * (id + 1) / nt * 64;
        total += avx512 ? read512(buf + lo, hi - lo) : read256(buf + lo, hi - lo);
    }
    double t = bench_seconds() - t0;
    if (total == 42) printf(" "); /* the sum is used: the reads stay */
    return (double)n * sizeof(float) / t * 1e-9;
}

/* GB/s of reading a 512 MiB buffer (the median of 5 reads): the best read rate a
   kernel could hope for. */
static double measure_bandwidth(void)
{
    const size_t n = (size_t)128 << 20; /* floats */
    float *buf = read_buffer(n);
    if (!buf) return 0;
    g_huge_kib = huge_kib();
    double rate[5];
    for (int r = 0; r < 5; r++) rate[r] = read_rate(buf, n);
    free(buf);
    return bench_median(rate, 5);
}

/* Evicts the caches: decode timings must come from memory, not from L3. */
static void flush_caches(void)
{
    static float *junk;
    static const size_t n = (size_t)32 << 20; /* 128 MiB, 4x the L3 */
    if (!junk) {
        junk = malloc(n * sizeof(float));
        if (!junk) return;
        memset(junk, 0, n * sizeof(float));
    }
    volatile float s = 0;
    for (size_t i = 0; i < n; i += 16) s += junk[i];
    (void)s;
}

/* ---- the baseline: unfused attention on OpenBLAS ---- */

/* The baseline's own vector exp (8 lanes, Cephes' polynomial, 2^n built in the
   exponent field; arguments below -87.3, -inf among them, give 0): the benchmark reaches
   the library only through sattn.h. */
__attribute__((target("avx2,fma"))) static inline __m256 base_exp8(__m256 x)
{
    __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* row[j] = exp(row[j] - max) in place; returns their sum. */
__attribute__((target("avx2,fma"))) static float base_exp_row(float *row, int n)
{
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    __m256 vm = _mm256_set1_ps(mx), vs = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = base_exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), vm));
        _mm256_storeu_ps(row + j, e);
        vs = _mm256_add_ps(vs, e);
    }
    float part[8], sum = 0;
    _mm256_storeu_ps(part, vs);
    for (int u = 0; u < 8; u++) sum += part[u];
    for (; j < n; j++) sum += row[j] = expf(row[j] - mx);
    return sum;
}

/* Row softmax of S[n][n] in place, with the causal mask if asked (top-left). */
static void softmax_rows(float *S, int n, int causal)
{
#pragma omp parallel for num_threads(g_threads) schedule(static)
    for (int i = 0; i < n; i++) {
        float *row = S + (size_t)i * n;
        if (causal)
            for (int j = i + 1; j < n; j++) row[j] = -INFINITY;
        float inv = 1.0f / base_exp_row(row, n);
        for (int j = 0; j < n; j++) row[j] *= inv;
    }
}

/* out = softmax(scale Q Kᵀ) V per head; P keeps the probabilities (for the backward). */
static void baseline_forward(int n, int h, int d, int causal, const float *q, const float *k,
                             const float *v, float *out, float *P)
{
    const float scale = 1.0f / sqrtf((float)d);
    const int ld = h * d;
    for (int hh = 0; hh < h; hh++) {
        float *S = P + (size_t)hh * n * n;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d, scale, q + hh * d, ld, k + hh * d,
                    ld, 0.0f, S, n);
        softmax_rows(S, n, causal);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, n, 1.0f, S, n, v + hh * d, ld,
                    0.0f, out + hh * d, ld);
    }
}

/* dV = Pᵀ dO, dP = dO Vᵀ, dS = P ∘ (dP - rowsum(dO ∘ O)), dQ = scale dS K, dK = scale dSᵀ Q */
static void baseline_backward(int n, int h, int d, const float *q, const float *k, const float *v,
                              const float *out, const float *dout, const float *P, float *dP,
                              float *dq, float *dk, float *dv)
{
    const float scale = 1.0f / sqrtf((float)d);
    const int ld = h * d;
    for (int hh = 0; hh < h; hh++) {
        const float *Ph = P + (size_t)hh * n * n;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, d, n, 1.0f, Ph, n, dout + hh * d, ld,
                    0.0f, dv + hh * d, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d, 1.0f, dout + hh * d, ld,
                    v + hh * d, ld, 0.0f, dP, n);
#pragma omp parallel for num_threads(g_threads) schedule(static)
        for (int i = 0; i < n; i++) {
            const float *o = out + (size_t)i * ld + hh * d, *g = dout + (size_t)i * ld + hh * d;
            float D = 0;
            for (int c = 0; c < d; c++) D += o[c] * g[c];
            float *row = dP + (size_t)i * n;
            const float *pr = Ph + (size_t)i * n;
            for (int j = 0; j < n; j++) row[j] = pr[j] * (row[j] - D);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, n, scale, dP, n, k + hh * d, ld,
                    0.0f, dq + hh * d, ld);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, d, n, scale, dP, n, q + hh * d, ld,
                    0.0f, dk + hh * d, ld);
    }
}

/* ---- prefill cases ---- */


static void print_header(void)
{
    table("\n%-34s %9s %9s %7s %11s %8s\n", "case", "ms", "GFLOP/s", "%peak", "baseline ms", "speedup");
}

/* products: SATTN_PRODUCTS_BF16 names the case "bf16 dp" (bf16 storage, bf16 products) */
static void prefill_case(int n, int h, int d, int causal, sattn_dtype dtype, int backward, sattn_products products)
{
    char name[64];
    snprintf(name, sizeof name, "%s d=%d N=%d %s %s", backward ? "bwd" : "fwd", d, n, causal ? "causal" : "full",
             products == SATTN_PRODUCTS_BF16 ? "bf16 dp" : dtype == SATTN_F32 ? "f32" : dtype == SATTN_BF16 ? "bf16" : "f16");
    progress(name);
    const size_t elems = (size_t)n * h * d;
    float *q = malloc(elems * 4), *k = malloc(elems * 4), *v = malloc(elems * 4);
    float *out = malloc(elems * 4), *dout = malloc(elems * 4), *lse = malloc((size_t)n * h * 4);
    float *dq = malloc(elems * 4), *dk = malloc(elems * 4), *dv = malloc(elems * 4);
    fill(q, elems, 1, -1, 1), fill(k, elems, 2, -1, 1), fill(v, elems, 3, -1, 1), fill(dout, elems, 4, -1, 1);
    /* stored inputs in the case's dtype (bf16/f16 halves) */
    void *sq = q, *sk = k, *sv = v, *sout = out, *sdout = dout, *sdq = dq, *sdk = dk, *sdv = dv;
    uint16_t *h16 = NULL;
    if (dtype != SATTN_F32) {
        h16 = malloc(elems * 2 * 8);
        uint16_t *x[8];
        float *src[5] = {q, k, v, out, dout};
        for (int i = 0; i < 8; i++) x[i] = h16 + elems * i;
        for (int i = 0; i < 5; i++)
            for (size_t e = 0; e < elems; e++) x[i][e] = dtype == SATTN_BF16 ? to_bf16(src[i][e]) : to_f16(src[i][e]);
        sq = x[0], sk = x[1], sv = x[2], sout = x[3], sdout = x[4], sdq = x[5], sdk = x[6], sdv = x[7];
    }
    sattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = 1, p.seq_q = n, p.seq_kv = n, p.heads_q = h, p.head_dim = d, p.dtype = dtype;
    p.causal = causal ? SATTN_CAUSAL_TOP_LEFT : SATTN_CAUSAL_NONE;
    p.products = products;

    double pairs = causal ? (double)n * (n + 1) / 2 : (double)n * n;
    double flops = 4.0 * h * pairs * d * (backward ? 2.5 : 1.0);
    double ts[64], tb[64];
    if (sattn_forward(&p, sq, sk, sv, sout, lse) != SATTN_OK) die("sattn_forward: %s", sattn_last_error());
    for (int r = 0; r < g_reps; r++) {
        double t0 = bench_seconds();
        sattn_status st = backward ? sattn_backward(&p, sq, sk, sv, sout, lse, sdout, sdq, sdk, sdv)
                                   : sattn_forward(&p, sq, sk, sv, sout, lse);
        ts[r] = bench_seconds() - t0;
        if (st != SATTN_OK) die("sattn: %s", sattn_last_error());
    }
    /* the baseline, in f32 (OpenBLAS has no f16 GEMM; bf16 cases compare against f32) */
    float *P = malloc((size_t)h * n * n * 4), *dP = malloc((size_t)n * n * 4);
    baseline_forward(n, h, d, causal, q, k, v, out, P);
    for (int r = 0; r < g_reps; r++) {
        double t0 = bench_seconds();
        if (backward) baseline_backward(n, h, d, q, k, v, out, dout, P, dP, dq, dk, dv);
        else baseline_forward(n, h, d, causal, q, k, v, out, P);
        tb[r] = bench_seconds() - t0;
    }
    double t = bench_median(ts, g_reps), b = bench_median(tb, g_reps);
    add_result(name, t, flops, b, 0);
    free(P), free(dP), free(h16);
    free(q), free(k), free(v), free(out), free(dout), free(lse), free(dq), free(dk), free(dv);
}

/* ---- decode: one query token against a 4096-token KV cache ---- */

static void decode_case(sattn_dtype dtype)
{
    char name[64];
    snprintf(name, sizeof name, "decode 4096 keys 32/8 heads %s", dtype == SATTN_F32 ? "f32" : dtype == SATTN_BF16 ? "bf16" : "f16");
    progress(name);
    const int nkv = 4096, hq = 32, hk = 8, d = 128, reps = g_reps * 4;
    const size_t kv_elems = (size_t)nkv * hk * d, q_elems = (size_t)hq * d;
    const size_t es = dtype == SATTN_F32 ? 4 : 2;
    float *kf = big_alloc(kv_elems * 4), *vf = big_alloc(kv_elems * 4), *q = malloc(q_elems * 4);
    float *out = malloc(q_elems * 4), *lse = malloc(hq * 4);
    fill(kf, kv_elems, 5, -1, 1), fill(vf, kv_elems, 6, -1, 1), fill(q, q_elems, 7, -1, 1);
    void *k = kf, *v = vf;
    uint16_t *k16 = NULL, *v16 = NULL;
    if (dtype != SATTN_F32) {
        k16 = big_alloc(kv_elems * 2), v16 = big_alloc(kv_elems * 2);
        for (size_t e = 0; e < kv_elems; e++) {
            k16[e] = dtype == SATTN_BF16 ? to_bf16(kf[e]) : to_f16(kf[e]);
            v16[e] = dtype == SATTN_BF16 ? to_bf16(vf[e]) : to_f16(vf[e]);
        }
        k = k16, v = v16;
    }
    /* q, out in the same dtype as the cache */
    void *sq = q, *sout = out;
    uint16_t *q16 = NULL;
    if (dtype != SATTN_F32) {
        q16 = malloc(q_elems * 2 * 2);
        for (size_t e = 0; e < q_elems; e++) q16[e] = dtype == SATTN_BF16 ? to_bf16(q[e]) : to_f16(q[e]);
        sq = q16, sout = q16 + q_elems;
    }
    sattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = 1, p.seq_q = 1, p.seq_kv = nkv, p.heads_q = hq, p.heads_kv = hk, p.head_dim = d;
    p.dtype = dtype, p.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
    /* the cache is head-major, [kv_head][seq][dim], as a KV cache keeps it: each head's
       keys are one contiguous stream */
    p.k_stride[0] = (int64_t)hk * nkv * d, p.k_stride[1] = d, p.k_stride[2] = (int64_t)nkv * d;
    memcpy(p.v_stride, p.k_stride, sizeof p.k_stride);
    /* each call right after a read of 128 MiB (4x the L3, so it also evicts the cache):
       its GB/s against that read's rate as well, the memory's speed at that moment, which
       this guest changes by up to 2x within a run (BENCHMARKS.md) */
    const double bytes = 2.0 * (double)kv_elems * (double)es;
    const size_t nread = (size_t)32 << 20;
    float *rbuf = read_buffer(nread);
    double ts[256], tb[256], ratio[256];
    for (int r = 0; r < reps; r++) {
        double rate = rbuf ? read_rate(rbuf, nread) : 0;
        if (!rbuf) flush_caches();
        double t0 = bench_seconds();
        if (sattn_forward(&p, sq, k, v, sout, lse) != SATTN_OK) die("sattn_forward: %s", sattn_last_error());
        ts[r] = bench_seconds() - t0;
        ratio[r] = rate > 0 ? bytes / ts[r] * 1e-9 / rate : 0;
    }
    free(rbuf);
    /* baseline: per query head, s = K q (sgemv), softmax, o = Vᵀ p (sgemv), on f32 KV */
    float *s = malloc((size_t)hq * nkv * 4);
    const float scale = 1.0f / sqrtf((float)d);
    for (int r = 0; r < reps; r++) {
        flush_caches();
        double t0 = bench_seconds();
        for (int h = 0; h < hq; h++) {
            int g = h / (hq / hk);
            cblas_sgemv(CblasRowMajor, CblasNoTrans, nkv, d, scale, kf + (size_t)g * nkv * d, d, q + h * d, 1,
                        0.0f, s + (size_t)h * nkv, 1);
        }
        for (int h = 0; h < hq; h++) {
            float sum = base_exp_row(s + (size_t)h * nkv, nkv);
            cblas_sgemv(CblasRowMajor, CblasTrans, nkv, d, 1.0f / sum, vf + (size_t)(h / (hq / hk)) * nkv * d, d,
                        s + (size_t)h * nkv, 1, 0.0f, out + h * d, 1);
        }
        tb[r] = bench_seconds() - t0;
    }
    double t = bench_median(ts, reps), b = bench_median(tb, reps);
    result *row = add_result(name, t, bytes, b, 1);
    if (row) row->beside = bench_median(ratio, reps);
    free(s), free(kf), free(vf), free(q), free(out), free(lse), free(k16), free(v16), free(q16);
}

/* ---- the layer: B=4, N=512, E=512, 8 heads, against the same layer built unfused ---- */

/* Y (T, n) = X (T, k) Wᵀ + b, on OpenBLAS */
static void base_linear(float *Y, const float *X, const float *W, const float *b, int T, int n, int k)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n, k, 1.0f, X, k, W, k, 0.0f, Y, n);
#pragma omp parallel for num_threads(g_threads) schedule(static)
    for (int t = 0; t < T; t++)
        for (int c = 0; c < n; c++) Y[(size_t)t * n + c] += b[c];
}

static void layer_case(int backward)
{
    char name[64];
    snprintf(name, sizeof name, "layer B4 N512 E512 H8 %s", backward ? "fwd+bwd" : "fwd");
    progress(name);
    const int B = 4, N = 512, E = 512, H = 8, D = E / H, T = B * N;
    sattn_mha_config cfg = {E, H, 0, 0, 1, SATTN_F32};
    sattn_mha *m = NULL;
    if (sattn_mha_create(&m, &cfg) != SATTN_OK) die("sattn_mha_create: %s", sattn_last_error());
    int64_t np;
    float *param = sattn_mha_param(m, NULL, &np);
    fill(param, (size_t)np, 9, -0.05f, 0.05f);
    const size_t TE = (size_t)T * E;
    float *x = malloc(TE * 4), *y = malloc(TE * 4), *dy = malloc(TE * 4), *dx = malloc(TE * 4);
    fill(x, TE, 10, -1, 1), fill(dy, TE, 11, -1, 1);
    double ts[64], tb[64];
    sattn_mha_forward(m, NULL, B, N, x, y);
    for (int r = 0; r < g_reps; r++) {
        double t0 = bench_seconds();
        sattn_status st = sattn_mha_forward(m, NULL, B, N, x, y);
        if (st == SATTN_OK && backward) st = sattn_mha_backward(m, NULL, B, N, x, dy, dx);
        ts[r] = bench_seconds() - t0;
        if (st != SATTN_OK) die("sattn_mha: %s", sattn_last_error());
    }
    /* the unfused layer: three projections, softmax(Q Kᵀ) V per (sequence, head) with
       the probabilities kept, the output projection; the backward reverses each */
    const float *Wq = param, *Wk = Wq + (size_t)E * E, *Wv = Wk + (size_t)E * E, *bq = param + 3 * (size_t)E * E;
    const float *Wo = bq + 3 * E, *bo = Wo + (size_t)E * E;
    float *Q = malloc(TE * 4), *K = malloc(TE * 4), *Vv = malloc(TE * 4), *O = malloc(TE * 4);
    float *dQ = malloc(TE * 4), *dK = malloc(TE * 4), *dV = malloc(TE * 4), *dO = malloc(TE * 4);
    float *P = malloc((size_t)B * H * N * N * 4), *dP = malloc((size_t)N * N * 4);
    float *gW = calloc((size_t)4 * E * E, 4);
    for (int r = 0; r < g_reps; r++) {
        double t0 = bench_seconds();
        base_linear(Q, x, Wq, bq, T, E, E), base_linear(K, x, Wk, bq + E, T, E, E);
        base_linear(Vv, x, Wv, bq + 2 * E, T, E, E);
        for (int b = 0; b < B; b++)
            baseline_forward(N, H, D, 0, Q + (size_t)b * N * E, K + (size_t)b * N * E, Vv + (size_t)b * N * E,
                             O + (size_t)b * N * E, P + (size_t)b * H * N * N);
        base_linear(y, O, Wo, bo, T, E, E);
        if (backward) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, E, E, T, 1.0f, dy, E, O, E, 1.0f, gW, E);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, E, E, 1.0f, dy, E, Wo, E, 0.0f, dO, E);
            for (int b = 0; b < B; b++) {
                size_t o = (size_t)b * N * E;
                baseline_backward(N, H, D, Q + o, K + o, Vv + o, O + o, dO + o, P + (size_t)b * H * N * N, dP,
                                  dQ + o, dK + o, dV + o);
            }
            const float *dm[3] = {dQ, dK, dV}, *wm[3] = {Wq, Wk, Wv};
            for (int i = 0; i < 3; i++) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, E, E, T, 1.0f, dm[i], E, x, E, 1.0f,
                            gW + (size_t)(i + 1) * E * E, E);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, E, E, 1.0f, dm[i], E, wm[i], E,
                            i ? 1.0f : 0.0f, dx, E);
            }
        }
        tb[r] = bench_seconds() - t0;
    }
    double proj = 2.0 * T * E * (3.0 * E) + 2.0 * T * E * E, attn = 4.0 * B * H * (double)N * N * D;
    double flops = backward ? 3 * proj + 3.5 * attn : proj + attn;
    double t = bench_median(ts, g_reps), b = bench_median(tb, g_reps);
    add_result(name, t, flops, b, 0);
    free(x), free(y), free(dy), free(dx), free(Q), free(K), free(Vv), free(O), free(dQ), free(dK), free(dV);
    free(dO), free(P), free(dP), free(gW);
    sattn_mha_free(m);
}

/* ---- peak memory of a 65536-token forward ---- */

/* Runs the peak_memory program built beside this one: a fresh process, so its peak
   RSS is that forward's alone (and a fork of this process would inherit OpenMP's
   thread pool without its threads). Its report goes into the table. */
static void memory_case(void)
{
    progress("mem: peak memory of a 65536-token forward");
    char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 32);
    if (n <= 0) return;
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    strcpy(slash ? slash + 1 : path, "peak_memory");
    int fd[2];
    if (pipe(fd) != 0) die("cannot run %s: no pipe", path);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]), close(fd[1]);
        char *args[] = {path, "65536", "64", "0", NULL};
        execv(path, args);
        fprintf(stderr, "%s: cannot run %s\n", g_prog, path);
        _exit(127);
    }
    close(fd[1]);
    char buf[4096];
    ssize_t got;
    while (pid > 0 && (got = read(fd[0], buf, sizeof buf - 1)) > 0) {
        buf[got] = '\0';
        table("%s", buf);
    }
    close(fd[0]);
    int status;
    if (pid > 0) waitpid(pid, &status, 0);
}

static const char usage[] = "usage: bench [--quick] [--reps R] [--only fwd|bwd|layer|decode|mem|peak]\n";

/* The CPU's model name, from /proc/cpuinfo ("unknown CPU" elsewhere). */
static void cpu_name(char *buf, size_t len)
{
    snprintf(buf, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !colon) continue;
        colon += 1 + (colon[1] == ' ');
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(buf, len, "%s", colon);
        break;
    }
    fclose(f);
}

/* The file OpenBLAS was loaded from. */
static const char *openblas_path(void)
{
    Dl_info info;
    if (dladdr((void *)openblas_get_config, &info) && info.dli_fname) return info.dli_fname;
    return "?";
}

int main(int argc, char **argv)
{
    if (argc > 0 && !strcmp(argv[0], "sattn bench")) g_prog = "sattn bench";
    /* OpenBLAS reads its core type when it loads: set it and start again. */
    if (!getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512f")) {
        setenv("OPENBLAS_CORETYPE", "SKYLAKEX", 1);
        execv("/proc/self/exe", argv);
    }
    int quick = 0;
    const char *only = NULL;
    static const char *const groups[] = {"fwd", "bwd", "layer", "decode", "mem", "peak"};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        const char *val = NULL;
        if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if (!strncmp(argv[i], "--reps", 6) && (argv[i][6] == '=' || (argv[i][6] == '\0' && i + 1 < argc))) {
            val = argv[i][6] == '=' ? argv[i] + 7 : argv[++i];
            char *end;
            long r = strtol(val, &end, 10);
            if (end == val || *end || r < 1 || r > 64) {
                fprintf(stderr, "%s: --reps: '%s' is not an integer in [1, 64]\n%s", g_prog, val, usage);
                return 2;
            }
            g_reps = (int)r;
        } else if (!strncmp(argv[i], "--only", 6) && (argv[i][6] == '=' || (argv[i][6] == '\0' && i + 1 < argc))) {
            only = argv[i][6] == '=' ? argv[i] + 7 : argv[++i];
        } else {
            fprintf(stderr, "%s: %s '%s'\n%s", g_prog, argv[i][0] == '-' ? "unknown option or a missing value:" :
                    "unexpected argument", argv[i], usage);
            return 2;
        }
    }
    int known = !only;
    for (int g = 0; g < 6 && !known; g++) known = !strcmp(only, groups[g]);
    if (!known) {
        fprintf(stderr, "%s: --only %s: not one of fwd, bwd, layer, decode, mem, peak\n%s", g_prog, only, usage);
        return 2;
    }
    g_threads = sattn_get_num_threads();
    openblas_set_num_threads(g_threads);

    static const int ns[] = {512, 1024, 2048, 4096};
    const int nn = quick ? 2 : 4;
    /* the forward's bf16 products where this CPU runs them (sattn.h, sattn_products) */
    const int dp = sattn_products_run(SATTN_BF16, SATTN_PRODUCTS_BF16);
#define WANT(group) (!only || !strcmp(only, group))
    g_tty = isatty(STDERR_FILENO);
    g_cases = 2 + (WANT("fwd") * (2 + dp) + WANT("bwd") * 2) * 4 * nn + 2 * WANT("layer") + 3 * WANT("decode") +
              WANT("mem");
    progress("measuring the FMA peak and the memory read bandwidth");
    g_peak = measure_peak();
    g_bw = measure_bandwidth();
    if (g_tty) fprintf(stderr, "\r\033[K");
    char cpu[256];
    cpu_name(cpu, sizeof cpu);
    printf("CPU: %s; sattn %s, %s kernels, %d threads\n", cpu, sattn_version(), sattn_isa(), g_threads);
    printf("baseline: %s, core %s, from %s\n", openblas_get_config(), openblas_get_corename(), openblas_path());
    printf("measured: FMA peak %.1f GFLOP/s (%s FMA), memory read bandwidth %.1f GB/s (%s); medians of %d runs\n",
           g_peak, __builtin_cpu_supports("avx512f") && strncmp(sattn_isa(), "avx512", 6) == 0 ? "512-bit" : "256-bit",
           g_bw, g_huge_kib >= ((size_t)256 << 10) ? "2 MiB pages" : "4 KiB pages: no huge pages granted",
           g_reps);
    fflush(stdout);

    for (int backward = 0; backward < 2; backward++) {
        if (!WANT(backward ? "bwd" : "fwd")) continue;
        print_header();
        for (int dt = 0; dt < 2 + (dp && !backward); dt++)
            for (int d = 64; d <= 128; d *= 2)
                for (int causal = 0; causal < 2; causal++)
                    for (int i = 0; i < nn; i++)
                        prefill_case(ns[i], 8, d, causal, dt ? SATTN_BF16 : SATTN_F32, backward,
                                     dt == 2 ? SATTN_PRODUCTS_BF16 : SATTN_PRODUCTS_F32);
    }
    if (WANT("layer")) {
        table("\nthe layer's GEMMs: %s\n", sattn_gemm_backend());
        print_header();
        layer_case(0), layer_case(1);
    }
    if (WANT("decode")) {
        table("\n%-34s %9s %12s %11s %11s %8s %8s\n", "case", "ms", "GB/s", "%bandwidth", "baseline ms", "speedup",
              "%beside");
        decode_case(SATTN_F32), decode_case(SATTN_F16), decode_case(SATTN_BF16);
    }
    if (WANT("mem")) {
        table("\n");
        memory_case();
    }
#undef WANT
    /* this guest's speed drifts while the cases run (a slow phase at the start reads a
       low peak and flatters every percentage): the two measures again at the end, and
       the percentages against the higher of each pair */
    progress("measuring the FMA peak and the memory read bandwidth again");
    double peak_end = measure_peak(), bw_end = measure_bandwidth();
    double peak = peak_end > g_peak ? peak_end : g_peak, bw = bw_end > g_bw ? bw_end : g_bw;
    table("\nmeasured again at the end: FMA peak %.1f GFLOP/s, memory read bandwidth %.1f GB/s; the "
          "percentages use the higher of each: %.1f GFLOP/s, %.1f GB/s\n", peak_end, bw_end, peak, bw);
    print_table(peak, bw);
    return 0;
}
