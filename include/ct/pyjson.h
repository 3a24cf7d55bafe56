/* JSON text the way Python's json.dump(obj, indent=2, sort_keys=...) writes
 * it (ensure_ascii, ", "/": " separators, trailing newline added by the
 * caller if wanted), for the config.json and index files we rewrite.
 * Numbers parsed by ct_pyjson_parse keep their text, so that they are
 * written as Python would after json.load: a float stays a float
 * (500000.0, not 500000), an integer keeps every digit, floats in Python's
 * repr.  Numbers made here (no text) print as integers when integral. */
#ifndef CT_PYJSON_H
#define CT_PYJSON_H

#include <cjson/cJSON.h>
#include "ct/util.h"

int ct_pyjson_write(ct_buf *b, const cJSON *v, int sort_keys);
/* cJSON_ParseWithLength, each number node also holding its text (in
 * valuestring, freed with the tree).  NULL if not valid JSON. */
cJSON *ct_pyjson_parse(const char *text, size_t len);
int ct_pyjson_str(ct_buf *b, const char *s);
/* Exit status for a libct error code, shared by the programs:
 * 1 usage, 2 I/O, 3 malformed input, 4 unsupported format, 5 output exists,
 * 6 out of memory. */
int ct_exit_status(int code);

#endif
