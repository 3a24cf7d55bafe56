/* JSON text the way Python's json.dump(obj, indent=2, sort_keys=...) writes
 * it (ensure_ascii, ", "/": " separators, trailing newline added by the
 * caller if wanted), for the config.json and index files we rewrite.
 * cJSON keeps numbers as doubles: integral values print as integers. */
#ifndef CT_PYJSON_H
#define CT_PYJSON_H

#include <cjson/cJSON.h>
#include "ct/util.h"

int ct_pyjson_write(ct_buf *b, const cJSON *v, int sort_keys);
int ct_pyjson_str(ct_buf *b, const char *s);
/* Exit status for a libct error code, shared by the programs:
 * 1 usage, 2 I/O, 3 malformed input, 4 unsupported format, 5 output exists,
 * 6 out of memory. */
int ct_exit_status(int code);

#endif
