/* pngio: 8-bit RGB images written as PNG with libpng. */
#ifndef SATTN_CLI_PNG_H
#define SATTN_CLI_PNG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* 1 when the program was built with libpng. */
int cli_png_available(void);

/* Writes rgb (height rows of width * 3 bytes, top row first) to f as a PNG. 0, or -1
   with a message in err (also when built without libpng). */
int cli_png_write(FILE *f, int width, int height, const uint8_t *rgb, char *err, size_t errlen);

#endif /* SATTN_CLI_PNG_H */
