/* heatmap: attention weights drawn as an RGB image, one panel per head, with a
 * viridis-like colour map, titles and token labels in a 5 x 7 bitmap font.
 *
 * Layout, in pixels (s = scale, pixels per cell):
 *   margin 8 around the image; a title line of 14 above the grid if there is a title;
 *   panels in a grid, 12 apart; each panel is
 *     [title line of 12, if panel titles]
 *     [column labels, 6 per character + 4, if column labels]
 *     [row labels, 6 per character + 4, if row labels] [cols * s wide, rows * s high]
 *   so without labels or titles a panel is exactly cols * s by rows * s.
 * Labels are drawn every ceil(8 / s) cells, so they never overlap.
 */
#ifndef SATTN_HEATMAP_H
#define SATTN_HEATMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int panels, rows, cols;          /* each panel is rows x cols cells */
    const float *w;                  /* (panels, rows, cols); NaN is drawn grey */
    int grid_cols;                   /* panels per grid row; 0: up to 4, more for many panels */
    int scale;                       /* pixels per cell, >= 1 */
    int per_panel;                   /* nonzero: each panel's own colour range */
    float vmax;                      /* > 0: the value drawn brightest; 0: the largest value */
    const char *title;               /* over the whole image, or NULL */
    const char *const *panel_titles; /* panels strings, or NULL */
    const char *const *row_labels;   /* rows strings, or NULL */
    const char *const *col_labels;   /* cols strings, or NULL */
} heatmap;

/* Image size of hm; -1 (message in err) if it is over 16384 pixels a side or 64 Mpixels. */
int heatmap_size(const heatmap *hm, int *width, int *height, char *err, size_t errlen);

/* *rgb = a malloc'ed image, width * height * 3 bytes, rows top to bottom. 0, or -1
   with a message in err. */
int heatmap_render(const heatmap *hm, uint8_t **rgb, int *width, int *height, char *err, size_t errlen);

/* The colour of t in [0, 1] (clamped) in the colour map. */
void heatmap_colour(float t, uint8_t rgb[3]);

#endif /* SATTN_HEATMAP_H */
