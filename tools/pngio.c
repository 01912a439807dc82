/* pngio: PNG files through libpng (Debian's libpng-dev); without it, a clear error. */
#include "pngio.h"

#ifdef SATTN_HAVE_PNG
#include <png.h>
#include <setjmp.h>
#include <string.h>

int cli_png_available(void) { return 1; }

typedef struct {
    jmp_buf jump;
    char *err;
    size_t errlen;
} png_context;

/* libpng's error callback must not return: back to the setjmp in cli_png_write */
static void on_error(png_structp png, png_const_charp msg)
{
    png_context *c = png_get_error_ptr(png);
    snprintf(c->err, c->errlen, "libpng: %s", msg);
    longjmp(c->jump, 1);
}

static void on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

int cli_png_write(FILE *f, int width, int height, const uint8_t *rgb, char *err, size_t errlen)
{
    png_context ctx;
    ctx.err = err, ctx.errlen = errlen;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        snprintf(err, errlen, "libpng: out of memory");
        return -1;
    }
    if (setjmp(ctx.jump)) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, rgb + (size_t)y * (size_t)width * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

#else /* built without libpng */

int cli_png_available(void) { return 0; }

int cli_png_write(FILE *f, int width, int height, const uint8_t *rgb, char *err, size_t errlen)
{
    (void)f, (void)width, (void)height, (void)rgb;
    snprintf(err, errlen, "this sattn was built without libpng, so it cannot write PNG files: install "
                          "libpng (Debian: apt-get install libpng-dev) and build again");
    return -1;
}

#endif
