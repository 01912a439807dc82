/* Chooses the kernel table once per process. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static const sattn__kernels *choose(void)
{
    const char *want = getenv("SATTN_ISA");
    (void)want; /* only the generic kernels are built so far */
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
