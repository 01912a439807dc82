/* libFuzzer target: the .npy reader and writer of the sattn program (tools/npy.c).
 * Any input must parse or be refused with a message, never crash or read out of
 * bounds; what parses must survive a write and a second parse unchanged (in both byte
 * orders), and every element must be readable as f32. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_npy: %s\n", what);
    abort(); /* a finding: libFuzzer saves the input */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    npy_array a;
    char err[512];
    err[0] = '\0';
    npy_status st = npy_parse(data, size, "input", &a, err, sizeof err);
    if (st != NPY_OK) {
        if (!err[0]) fail("refused without a message");
        return 0;
    }
    if (a.count > ((int64_t)1 << 24)) { /* parsed, but too big to round-trip quickly */
        npy_free(&a);
        return 0;
    }
    for (int64_t i = 0; i < a.count; i++) (void)npy_get_f32(&a, i);
    for (int be = 0; be < 2; be++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f) fail("open_memstream");
        if (npy_write(f, &a, be) != NPY_OK) fail("cannot write what was read");
        fclose(f);
        npy_array b;
        if (npy_parse(buf, len, "written", &b, err, sizeof err) != NPY_OK) fail(err);
        size_t bytes = (size_t)a.count * npy_type_size(a.type);
        if (b.type != a.type || b.ndim != a.ndim || b.count != a.count ||
            memcmp(b.shape, a.shape, sizeof a.shape[0] * (size_t)a.ndim) != 0 ||
            (bytes && memcmp(a.data, b.data, bytes) != 0))
            fail("a write and a second read changed the array");
        npy_free(&b);
        free(buf);
    }
    npy_free(&a);
    return 0;
}
