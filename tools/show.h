/* show: what sattn show shares with sattn demo. */
#ifndef SATTN_CLI_SHOW_H
#define SATTN_CLI_SHOW_H

#include "cli.h"
#include "heatmap.h"

/* Renders hm and writes it to path as a PNG (under a temporary name, then renamed).
   Errors are reported as "sattn CMD: ..."; returns an exit status of cli.h. */
int show_write_png(const char *cmd, const heatmap *hm, const char *path, int *width, int *height);
/* The same into o, opened by cli_outfile_open before the work; closes and publishes it
   (aborts it on failure). */
int show_write_png_to(const char *cmd, const heatmap *hm, cli_outfile *o, int *width, int *height);

/* Frees n strings and the array holding them (either may be NULL). */
void show_labels_free(char **labels, int n);

#endif /* SATTN_CLI_SHOW_H */
