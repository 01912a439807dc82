/* Library state: the per-thread error message, the thread count, the version. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

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

static atomic_int sattn__requested_threads; /* 0 = every core */

void sattn_set_num_threads(int n) { atomic_store(&sattn__requested_threads, n > 0 ? n : 0); }

int sattn__threads(void)
{
#ifdef _OPENMP
    int n = atomic_load(&sattn__requested_threads);
    return n > 0 ? n : omp_get_num_procs();
#else
    return 1;
#endif
}

int sattn_get_num_threads(void) { return sattn__threads(); }

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
