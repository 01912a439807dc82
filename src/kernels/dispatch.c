/* Chooses the kernel table once per process: the best this CPU runs, or the one the
 * environment variable SATTN_ISA names (generic, avx2, avx512, avx512bf16) if the CPU runs
 * it. avx512bf16 is the avx512 table plus one AVX512-BF16 kernel (kernels.h). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

typedef struct isa_entry {
    const char *name;
    const sattn__kernels *table;
    int (*runs)(void);
} isa_entry;

#if defined(SATTN_HAVE_X86_KERNELS)
#include <cpuid.h>

/* F16C: CPUID leaf 1, ECX bit 29 (not every compiler's __builtin_cpu_supports knows it). */
static int has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}

/* __builtin_cpu_supports also checks that the OS saves the wide registers. */
static int runs_avx512(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
}
/* AVX512-BF16: CPUID leaf 7, subleaf 1, EAX bit 5. */
static int runs_avx512bf16(void)
{
    unsigned a, b, c, d;
    return runs_avx512() && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
}
static int runs_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c(); }
#endif
static int runs_generic(void) { return 1; }

/* best first */
static const isa_entry isas[] = {
#if defined(SATTN_HAVE_X86_KERNELS)
    {"avx512bf16", &sattn__kernels_avx512bf16, runs_avx512bf16},
    {"avx512", &sattn__kernels_avx512, runs_avx512},
    {"avx2", &sattn__kernels_avx2, runs_avx2},
#endif
    {"generic", &sattn__kernels_generic, runs_generic},
};
#define NISA (sizeof isas / sizeof isas[0])

int sattn__cpu_runs(const char *name)
{
    for (size_t i = 0; i < NISA; i++)
        if (strcmp(name, isas[i].name) == 0) return isas[i].runs();
    return 0;
}

static const sattn__kernels *choose(void)
{
    const char *want = getenv("SATTN_ISA");
    if (want && *want) {
        for (size_t i = 0; i < NISA; i++)
            if (strcmp(want, isas[i].name) == 0) {
                if (isas[i].runs()) return isas[i].table;
                fprintf(stderr, "sattn: SATTN_ISA=%s: this CPU does not run it; using the best it runs\n", want);
                break;
            }
        int known = 0;
        for (size_t i = 0; i < NISA; i++) known |= strcmp(want, isas[i].name) == 0;
        if (!known)
            fprintf(stderr, "sattn: SATTN_ISA=%s is not a kernel set of this build; using the best this CPU runs\n", want);
    }
    for (size_t i = 0; i < NISA; i++)
        if (isas[i].runs()) return isas[i].table;
    return &sattn__kernels_generic;
}

const sattn__kernels *sattn__kernels_get(void)
{
    static _Atomic(const sattn__kernels *) chosen;
    const sattn__kernels *k = atomic_load(&chosen);
    if (!k) {
        k = choose(); /* idempotent, so a race only repeats the choice */
        atomic_store(&chosen, k);
    }
    return k;
}
