/* Library state: the per-thread error message, the thread count, the version. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sattn_internal.h"
#include "kernels/kernels.h"


#ifndef SATTN_VERSION_STRING
#define SATTN_VERSION_STRING "0.1.0"
#endif

/* ---- errors ---- */

static _Thread_local char sattn__error[512];

sattn_status sattn__fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sattn__error, sizeof sattn__error, fmt, ap);
    va_end(ap);
    return SATTN_ERR_INVALID;
}

sattn_status sattn__fail_nomem(size_t bytes)
{
    snprintf(sattn__error, sizeof sattn__error,
             "out of memory: could not allocate %zu bytes", bytes);
    return SATTN_ERR_NOMEM;
}

const char *sattn_last_error(void) { return sattn__error; }

/* ---- threads ---- */

static atomic_int sattn__requested_threads; /* 0 = OpenMP's default (OMP_NUM_THREADS or every core) */

void sattn_set_num_threads(int n) { atomic_store(&sattn__requested_threads, n > 0 ? n : 0); }

int sattn__threads(void)
{
#ifdef _OPENMP
    int n = atomic_load(&sattn__requested_threads);
    return n > 0 ? n : omp_get_max_threads();
#else
    return 1;
#endif
}

int sattn_get_num_threads(void) { return sattn__threads(); }

int sattn_suggest_threads(double flops)
{
    return sattn__threads_for(flops == flops ? flops : 0.0, INT64_MAX);
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t thread_cpu_ns(void)
{
#if defined(CLOCK_THREAD_CPUTIME_ID)
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) == 0) return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
#endif
    return now_ns(); /* no per-thread clock: never reports time lost */
}

/* Until this time (CLOCK_MONOTONIC ns), calls below SATTN__LARGE_WORK run on one thread:
   the last two parallel regions found their threads kept from their cores. */
static atomic_llong sattn__contended_until;

/* SATTN_THREAD_RULES=off: every call uses the configured count (the tests that compare
   thread counts on small problems need their parallel paths to run). */
static int rules_on(void)
{
    static atomic_int on = -1;
    int v = atomic_load(&on);
    if (v < 0) {
        const char *e = getenv("SATTN_THREAD_RULES");
        v = !(e && !strcmp(e, "off"));
        atomic_store(&on, v);
    }
    return v;
}

int sattn__threads_for(double work, int64_t items)
{
    int t = sattn__threads();
    if (items < t) t = items > 1 ? (int)items : 1;
    if (!rules_on()) return t;
    if (t <= 1 || work < SATTN__SMALL_WORK) return 1;
    if (work < SATTN__LARGE_WORK && now_ns() < atomic_load(&sattn__contended_until)) return 1;
    if (work / SATTN__SMALL_WORK < t) t = (int)(work / SATTN__SMALL_WORK); /* each thread a share worth it */
    return t > 1 ? t : 1;
}

void sattn__par_begin(sattn__par *p, int threads)
{
    p->threads = threads;
    p->t0 = threads > 1 ? now_ns() : 0;
    for (int i = 0; i < SATTN__PAR_MAX; i++) p->lost[i] = 0;
}

void sattn__par_enter(const sattn__par *p, sattn__par_mark *m)
{
    if (p->threads <= 1) return;
    m->wall = now_ns(), m->cpu = thread_cpu_ns();
}

void sattn__par_leave(sattn__par *p, const sattn__par_mark *m)
{
    if (p->threads <= 1) return;
    int id = sattn__thread_id();
    if (id >= SATTN__PAR_MAX) return;
    int64_t wall = now_ns(), cpu = thread_cpu_ns();
    /* late start + time it held work without running (preempted, or asleep at a barrier) */
    int64_t off_cpu = (wall - m->wall) - (cpu - m->cpu);
    p->lost[id] = (m->wall - p->t0) + (off_cpu > 0 ? off_cpu : 0);
}

void sattn__par_end(const sattn__par *p)
{
    if (p->threads <= 1) return;
    int64_t end = now_ns(), lost = 0;
    int n = p->threads < SATTN__PAR_MAX ? p->threads : SATTN__PAR_MAX;
    for (int i = 0; i < n; i++) lost += p->lost[i];
    /* The first region of the process starts the threads: not a sign of anything. */
    static atomic_int seen;
    if (!atomic_exchange(&seen, 1)) return;
    /* More than a sixth of the threads' time lost to waiting for a core, and more than
       SATTN__LOST_NS in all, in two regions running: back off to one thread for calls of
       moderate size, and look again after SATTN__BACKOFF_NS (twice that each time the
       look finds the same, up to 16 times). A thread woken from sleep on an idle machine
       starts late once (tens of microseconds; on a virtual machine whose other core was
       halted, sometimes a millisecond or two), and the next region finds it ready; a
       core held by another process costs a scheduler slice every time. */
    static atomic_int strikes, backoffs; /* backoffs: in a row, each twice as long */
    if (6 * lost > (int64_t)n * (end - p->t0) && lost > SATTN__LOST_NS) {
        if (atomic_fetch_add(&strikes, 1) >= 1) {
            int b = atomic_load(&backoffs);
            atomic_store(&sattn__contended_until, (long long)(end + ((int64_t)SATTN__BACKOFF_NS << b)));
            atomic_store(&backoffs, b < SATTN__BACKOFF_DOUBLINGS ? b + 1 : b);
            atomic_store(&strikes, 0);
        }
    } else {
        atomic_store(&strikes, 0);
        atomic_store(&backoffs, 0);
    }
}

/* ---- scratch ---- */

float *sattn__scratch_alloc(size_t per_thread, int threads, size_t *stride)
{
    size_t st = (per_thread + 15) & ~(size_t)15; /* 16 floats = 64 bytes */
    if (st == 0) st = 16;
    *stride = st;
    if (st > SIZE_MAX / sizeof(float) / (size_t)threads) {
        sattn__fail_nomem(SIZE_MAX);
        return NULL;
    }
    size_t bytes = st * sizeof(float) * (size_t)threads;
    float *buf = aligned_alloc(64, bytes);
    if (!buf) sattn__fail_nomem(bytes);
    return buf;
}

void sattn__scratch_free(float *scratch) { free(scratch); }

/* ---- identity ---- */

const char *sattn_version(void) { return SATTN_VERSION_STRING; }

const char *sattn_isa(void) { return sattn__kernels_get()->name; }

int sattn_products_run(sattn_dtype dtype, sattn_products products)
{
    if (products == SATTN_PRODUCTS_F32) return 1;
    return products == SATTN_PRODUCTS_BF16 && sattn__bf16_products_run(sattn__kernels_get(), dtype);
}
