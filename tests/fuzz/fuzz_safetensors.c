/* libFuzzer target: the safetensors reader (src/bert/safetensors.c) on any bytes.
 * Any input must parse or be refused with a message; what parses must describe every
 * tensor inside the data: its byte range within the file, of the size its dtype and
 * shape need (read here in full, so that AddressSanitizer sees any overrun), and
 * findable by name. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert_internal.h"

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_safetensors: %s\n", what);
    abort(); /* a finding: libFuzzer saves the input */
}

static int esize(st_dtype d)
{
    switch (d) {
    case ST_F64: case ST_I64: return 8;
    case ST_F32: case ST_I32: return 4;
    case ST_F16: case ST_BF16: case ST_I16: return 2;
    case ST_I8: case ST_U8: case ST_BOOL: return 1;
    default: return 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly size bytes, so that a read past the end is caught */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    st_file f;
    sattn_bert_status st = st_parse(&f, buf, size, "input");
    if (st != SATTN_BERT_OK) {
        if (!sattn_bert_last_error()[0]) fail("refused without a message");
        free(buf);
        return 0;
    }
    if (f.data < buf || f.data + f.data_size != buf + size) fail("the data section is not the file's tail");
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < f.count; i++) {
        const st_tensor *t = &f.tensors[i];
        if (t->begin > t->end || t->end > f.data_size) fail("a tensor outside the data");
        uint64_t need = 1;
        for (int d = 0; d < t->ndim; d++) need *= (uint64_t)t->shape[d];
        int es = esize(t->dtype);
        if (es && need * (uint64_t)es != t->end - t->begin) fail("a tensor's size disagrees with its shape");
        for (uint64_t b = t->begin; b < t->end; b++) sink ^= f.data[b];
        if (st_find(&f, t->name) == NULL) fail("a tensor not found by its name");
    }
    (void)sink;
    st_close(&f);
    free(buf);
    return 0;
}
