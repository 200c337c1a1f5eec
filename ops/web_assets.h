/* web_assets.h: the ops page's files (ops/web/), embedded at build time (ops/CMakeLists.txt
 * writes web_assets.c). ternd serves them on ops.listen: "/" is /index.html. */
#ifndef TERN_WEB_ASSETS_H
#define TERN_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
    const char *path; /* "/index.html", "/app.js", ... */
    const char *type; /* its Content-Type */
    const unsigned char *data;
    size_t len;
};
extern const struct web_asset web_assets[];
extern const unsigned web_nassets;

#endif
