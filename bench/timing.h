/* The benchmark programs' clock and median, one copy for all of them (bench, ab,
 * shared_machine, peak_memory, sp/bench_sp). Header-only: each program stays one file
 * to build. It needs clock_gettime: the program defines _POSIX_C_SOURCE 200809L (or
 * _GNU_SOURCE) before its first include. */
#ifndef SATTN_BENCH_TIMING_H
#define SATTN_BENCH_TIMING_H

#include <stdlib.h>
#include <time.h>

/* Wall-clock seconds from a monotonic clock. */
static inline double bench_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* qsort's order of doubles, ascending */
static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of t[0 .. n), n >= 1 (the mean of the middle two when n is even); sorts t. */
static inline double bench_median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, bench_cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

#endif
