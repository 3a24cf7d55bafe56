#include "config.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "ct/err.h"

int ct_fail(ct_err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        e->code = code;
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int ct_err_prefix(ct_err *e, const char *fmt, ...)
{
    if (!e)
        return 0;
    char pre[512], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    size_t lp = strlen(pre);
    if (lp >= sizeof e->msg)
        lp = sizeof e->msg - 1;
    memcpy(e->msg, pre, lp);
    size_t lo = strlen(old);
    if (lo > sizeof e->msg - 1 - lp)
        lo = sizeof e->msg - 1 - lp;
    memcpy(e->msg + lp, old, lo);
    e->msg[lp + lo] = 0;
    return e->code;
}

const char *ct_strerror(int code)
{
    switch (code) {
    case CT_OK: return "success";
    case CT_ENOMEM: return "out of memory";
    case CT_EIO: return "I/O error";
    case CT_EFORMAT: return "malformed input";
    case CT_EUNSUPPORTED: return "unsupported format";
    case CT_EUSAGE: return "usage error";
    case CT_EEXIST: return "output exists";
    case CT_ECHANGED: return "source changed";
    case CT_EINTR: return "interrupted";
    default: return "unknown error";
    }
}
