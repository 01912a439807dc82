/* npy: NumPy's .npy files, format versions 1.0, 2.0 and 3.0.
 *
 * A file is the magic "\x93NUMPY", a version, a header length, a header that is a
 * Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), },
 * then the elements in C order. Read here: little- and big-endian float32, float16,
 * float64, uint16 (raw bfloat16 bits), int32, int64, and the one-byte bool, uint8 and
 * int8; C order only. Every length, shape and size is checked against the file before
 * anything is allocated from it, so a truncated or malformed file is an error, never a
 * crash. Written: version 1.0, either byte order, the data 64-byte aligned.
 */
#ifndef SATTN_NPY_H
#define SATTN_NPY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NPY_MAX_DIMS 8

typedef enum {
    NPY_F32,  /* 'f4' */
    NPY_F16,  /* 'f2', IEEE binary16 */
    NPY_F64,  /* 'f8' */
    NPY_U16,  /* 'u2', read as bfloat16 bits where a bf16 tensor is expected */
    NPY_I32,  /* 'i4' */
    NPY_I64,  /* 'i8' */
    NPY_BOOL, /* 'b1' */
    NPY_U8,   /* 'u1' */
    NPY_I8,   /* 'i1' */
} npy_type;

typedef struct {
    npy_type type;
    int ndim;                     /* 0 .. NPY_MAX_DIMS */
    int64_t shape[NPY_MAX_DIMS];
    int64_t count;                /* product of the shape */
    void *data;                   /* count elements in this machine's byte order */
} npy_array;

typedef enum {
    NPY_OK = 0,
    NPY_ERR_IO = 1,     /* cannot open or read the file */
    NPY_ERR_FORMAT = 2, /* not a .npy file we read: malformed, truncated, unsupported */
    NPY_ERR_NOMEM = 3,
} npy_status;

/* Bytes of one element; its NumPy name ("float32", ...). */
size_t npy_type_size(npy_type t);
const char *npy_type_name(npy_type t);
/* "(2, 3)" into buf (at most len bytes, always terminated). */
void npy_shape_str(const npy_array *a, char *buf, size_t len);

/* Reads path into *a (a->data allocated; npy_free releases it). On failure *a is
   empty and err holds a sentence naming the file and what is wrong. */
npy_status npy_read(const char *path, npy_array *a, char *err, size_t errlen);
/* The same from a buffer of len bytes (the whole file); name is for the messages. */
npy_status npy_parse(const void *buf, size_t len, const char *name, npy_array *a, char *err,
                     size_t errlen);
/* Writes a to f as a .npy file, big-endian if big_endian (for tests), else
   little-endian. NPY_OK or NPY_ERR_IO. */
npy_status npy_write(FILE *f, const npy_array *a, int big_endian);
/* Allocates a zeroed array of that type and shape (data may be NULL for count 0). */
npy_status npy_alloc(npy_array *a, npy_type type, int ndim, const int64_t *shape);
void npy_free(npy_array *a);

/* ---- element conversions (round to nearest even) ---- */
float npy_f16_to_f32(uint16_t h);
uint16_t npy_f32_to_f16(float f);
float npy_bf16_to_f32(uint16_t h);
uint16_t npy_f32_to_bf16(float f);
/* Element i of a float array (F32, F16, F64) as float; 0 for other types. */
float npy_get_f32(const npy_array *a, int64_t i);
/* 1 for the float types (F32, F16, F64). */
int npy_is_float(npy_type t);

#endif /* SATTN_NPY_H */
