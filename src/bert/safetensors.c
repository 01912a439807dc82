/* The safetensors reader: the file mapped read-only, its JSON header parsed with
 * cJSON, and every tensor's dtype, shape and byte range checked against the file
 * before anything reads it. */
#define _POSIX_C_SOURCE 200809L /* mmap, fstat */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bert_internal.h"

/* Largest header accepted: the format's own limit (100 MB). */
#define ST_MAX_HEADER ((uint64_t)100000000)

static const struct {
    const char *name;
    st_dtype dtype;
    int size;
} dtypes[] = {
    {"F64", ST_F64, 8}, {"F32", ST_F32, 4}, {"F16", ST_F16, 2}, {"BF16", ST_BF16, 2}, {"I64", ST_I64, 8},
    {"I32", ST_I32, 4}, {"I16", ST_I16, 2}, {"I8", ST_I8, 1},   {"U8", ST_U8, 1},     {"BOOL", ST_BOOL, 1},
    {"U16", ST_OTHER, 2}, {"U32", ST_OTHER, 4}, {"U64", ST_OTHER, 8}, {"F8_E4M3", ST_OTHER, 1},
    {"F8_E5M2", ST_OTHER, 1},
};

static void free_tensors(st_file *f)
{
    for (int64_t i = 0; i < f->count; i++) free(f->tensors[i].name);
    free(f->tensors);
    f->tensors = NULL;
    f->count = 0;
}

/* a JSON number that is an integer in [0, 2^53] */
static int json_u53(const cJSON *v, uint64_t *out)
{
    int64_t x;
    if (!bert__json_int(v, 0, (int64_t)1 << 53, &x)) return 0;
    *out = (uint64_t)x;
    return 1;
}

sattn_bert_status st_parse(st_file *f, const uint8_t *buf, size_t size, const char *path)
{
    memset(f, 0, sizeof *f);
    if (size < 8)
        return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: %zu bytes: too short for a safetensors header", path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > size - 8)
        return bert__fail(SATTN_BERT_ERR_FORMAT,
                          "%s: the header claims %llu bytes but the file has %zu after the length: truncated or "
                          "not a safetensors file", path, (unsigned long long)hlen, size - 8);
    if (hlen > ST_MAX_HEADER)
        return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: a header of %llu bytes is past the format's 100 MB", path,
                          (unsigned long long)hlen);
    cJSON *root = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: the header is not a JSON object", path);
    }
    f->data = buf + 8 + hlen;
    f->data_size = size - 8 - hlen;
    int64_t n = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)(n > 0 ? n : 1), sizeof *f->tensors);
    if (!f->tensors) {
        cJSON_Delete(root);
        return bert__fail(SATTN_BERT_ERR_NOMEM, "%s: out of memory for %lld tensors", path, (long long)n);
    }
    sattn_bert_status st = SATTN_BERT_OK;
    for (const cJSON *e = root->child; e; e = e->next) {
        const char *name = e->string ? e->string : "";
        if (strcmp(name, "__metadata__") == 0) continue;
        st_tensor *t = &f->tensors[f->count];
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) ||
            cJSON_GetArraySize(offs) != 2) {
            st = bert__fail(SATTN_BERT_ERR_FORMAT, "%s: tensor \"%s\" lacks a dtype, shape or data_offsets pair",
                            path, name);
            break;
        }
        int esize = 0;
        for (size_t k = 0; k < sizeof dtypes / sizeof *dtypes; k++)
            if (strcmp(dt->valuestring, dtypes[k].name) == 0) t->dtype = dtypes[k].dtype, esize = dtypes[k].size;
        if (!esize) {
            st = bert__fail(SATTN_BERT_ERR_FORMAT, "%s: tensor \"%s\" has an unknown dtype \"%.15s\"", path, name,
                            dt->valuestring);
            break;
        }
        snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt->valuestring);
        int ndim = cJSON_GetArraySize(shape);
        if (ndim > ST_MAX_DIMS) {
            st = bert__fail(SATTN_BERT_ERR_FORMAT, "%s: tensor \"%s\" has %d dimensions (at most %d read)", path,
                            name, ndim, ST_MAX_DIMS);
            break;
        }
        /* numel * esize in 64 bits; every dimension is at most 2^53 */
        uint64_t bytes = (uint64_t)esize;
        int ok = 1;
        t->ndim = 0;
        for (const cJSON *d = shape->child; d && ok; d = d->next) {
            uint64_t v;
            ok = json_u53(d, &v);
            if (ok) {
                t->shape[t->ndim++] = (int64_t)v;
                if (v != 0 && bytes > UINT64_MAX / v) ok = 0;
                else bytes *= v;
            }
        }
        uint64_t b, end;
        if (!ok || !json_u53(cJSON_GetArrayItem(offs, 0), &b) || !json_u53(cJSON_GetArrayItem(offs, 1), &end)) {
            st = bert__fail(SATTN_BERT_ERR_FORMAT, "%s: tensor \"%s\": its shape or offsets are not integers of "
                            "a size the file can hold", path, name);
            break;
        }
        if (b > end || end > f->data_size) {
            st = bert__fail(SATTN_BERT_ERR_FORMAT,
                            "%s: tensor \"%s\" spans bytes %llu..%llu of %llu data bytes: truncated or corrupt",
                            path, name, (unsigned long long)b, (unsigned long long)end,
                            (unsigned long long)f->data_size);
            break;
        }
        if (end - b != bytes) {
            st = bert__fail(SATTN_BERT_ERR_FORMAT, "%s: tensor \"%s\": its shape needs %llu bytes but its offsets "
                            "span %llu", path, name, (unsigned long long)bytes, (unsigned long long)(end - b));
            break;
        }
        size_t nlen = strlen(name);
        t->name = malloc(nlen + 1);
        if (!t->name) {
            st = bert__fail(SATTN_BERT_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        memcpy(t->name, name, nlen + 1);
        t->begin = b, t->end = end;
        f->count++;
    }
    cJSON_Delete(root);
    if (st != SATTN_BERT_OK) free_tensors(f);
    return st;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    for (int64_t i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

sattn_bert_status st_open(st_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    int fd;
    uint64_t size64;
    sattn_bert_status st0 = bert__open_file(path, 0, &fd, &size64);
    if (st0 != SATTN_BERT_OK) return st0;
    if (size64 > SIZE_MAX) {
        close(fd);
        return bert__fail(SATTN_BERT_ERR_IO, "%s: too large to map", path);
    }
    size_t size = (size_t)size64;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int err = errno;
            close(fd);
            return bert__fail(SATTN_BERT_ERR_IO, "%s: mmap: %s", path, strerror(err));
        }
    }
    close(fd);
    static const uint8_t empty[1];
    sattn_bert_status st = st_parse(f, map ? map : empty, size, path);
    if (st != SATTN_BERT_OK) {
        if (map) munmap(map, size);
        return st;
    }
    f->map = map;
    f->map_size = size;
    return SATTN_BERT_OK;
}

void st_close(st_file *f)
{
    if (!f) return;
    free_tensors(f);
    if (f->map) munmap(f->map, f->map_size);
    memset(f, 0, sizeof *f);
}
