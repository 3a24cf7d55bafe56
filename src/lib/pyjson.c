#include "config.h"
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ct/pyjson.h"

int ct_exit_status(int code)
{
    switch (code) {
    case CT_OK: return 0;
    case CT_EUSAGE: return 1;
    case CT_EIO: case CT_ECHANGED: return 2;
    case CT_EFORMAT: return 3;
    case CT_EUNSUPPORTED: return 4;
    case CT_EEXIST: return 5;
    case CT_EINTR: return 130;
    default: return 6;
    }
}

static unsigned utf8_next(const unsigned char **pp)
{
    const unsigned char *p = *pp;
    unsigned c = *p++;
    int extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
    if (extra)
        c &= 0x3fu >> extra;
    for (; extra && (*p & 0xc0) == 0x80; extra--)
        c = (c << 6) | (*p++ & 0x3fu);
    *pp = p;
    return c;
}

int ct_pyjson_str(ct_buf *b, const char *s)
{
    int bad = ct_buf_putc(b, '"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p && !bad) {
        size_t run = 0;   /* ' '..'~' but '"' and '\\' stand for themselves (as in Python): one copy */
        while (p[run] >= 0x20 && p[run] < 0x7f && p[run] != '"' && p[run] != '\\')
            run++;
        if (run) {
            bad |= ct_buf_put(b, p, run);
            p += run;
            continue;
        }
        unsigned c = *p;
        if (c >= 0x80) {
            c = utf8_next(&p);
            if (c >= 0x10000) {
                c -= 0x10000;
                bad |= ct_buf_printf(b, "\\u%04x\\u%04x", 0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
            } else {
                bad |= ct_buf_printf(b, "\\u%04x", c);
            }
            continue;
        }
        p++;
        switch (c) {
        case '"': bad |= ct_buf_puts(b, "\\\""); break;
        case '\\': bad |= ct_buf_puts(b, "\\\\"); break;
        case '\n': bad |= ct_buf_puts(b, "\\n"); break;
        case '\r': bad |= ct_buf_puts(b, "\\r"); break;
        case '\t': bad |= ct_buf_puts(b, "\\t"); break;
        case '\b': bad |= ct_buf_puts(b, "\\b"); break;
        case '\f': bad |= ct_buf_puts(b, "\\f"); break;
        default: bad |= c < 0x20 || c == 0x7f ? ct_buf_printf(b, "\\u%04x", c) : ct_buf_putc(b, (char)c);
        }
    }
    return bad | ct_buf_putc(b, '"');
}

/* Python's repr of a finite or infinite double (what json.dumps writes for
 * a float): the shortest digits that read back the same, positional from
 * 1e-4 up to 1e16 with at least one digit after the point, else
 * d.ddde+XX. */
static int put_float(ct_buf *b, double d)
{
    if (isnan(d))
        return ct_buf_puts(b, "NaN");
    if (isinf(d))
        return ct_buf_puts(b, d > 0 ? "Infinity" : "-Infinity");
    if (d == 0)
        return ct_buf_puts(b, signbit(d) ? "-0.0" : "0.0");
    char tmp[64];
    for (int prec = 0; prec <= 16; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    /* tmp: [-]d[.ddd]e(+|-)XX */
    const char *p = tmp;
    int neg = *p == '-';
    p += neg;
    char digits[32];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.')
            digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    int exp10 = atoi(p + 1), decpt = exp10 + 1;
    int bad = neg ? ct_buf_putc(b, '-') : 0;
    if (decpt <= -4 || decpt > 16) {
        bad |= ct_buf_putc(b, digits[0]);
        if (nd > 1)
            bad |= ct_buf_putc(b, '.') || ct_buf_puts(b, digits + 1);
        bad |= ct_buf_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    } else if (decpt <= 0) {
        bad |= ct_buf_puts(b, "0.");
        for (int i = 0; i < -decpt; i++)
            bad |= ct_buf_putc(b, '0');
        bad |= ct_buf_puts(b, digits);
    } else if ((size_t)decpt >= nd) {
        bad |= ct_buf_puts(b, digits);
        for (size_t i = nd; i < (size_t)decpt; i++)
            bad |= ct_buf_putc(b, '0');
        bad |= ct_buf_puts(b, ".0");
    } else {
        bad |= ct_buf_put(b, digits, (size_t)decpt) || ct_buf_putc(b, '.') || ct_buf_puts(b, digits + decpt);
    }
    return bad;
}

static int put_number(ct_buf *b, const cJSON *v)
{
    const char *lit = v->valuestring;
    if (lit && !strpbrk(lit, ".eE"))      /* a Python int: every digit, as written */
        return ct_buf_puts(b, strcmp(lit, "-0") ? lit : "0");
    if (lit)                              /* a Python float */
        return put_float(b, v->valuedouble);
    double d = v->valuedouble;
    if (d == floor(d) && fabs(d) < 1e16)
        return ct_buf_printf(b, "%.0f", d);
    return put_float(b, d);
}

static int cmp_items(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static int write_at(ct_buf *b, const cJSON *v, int sort_keys, int depth)
{
    int bad = 0;
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
        int obj = cJSON_IsObject(v);
        size_t n = (size_t)cJSON_GetArraySize(v);
        if (n == 0)
            return ct_buf_puts(b, obj ? "{}" : "[]");
        const cJSON **items = malloc(n * sizeof *items);
        if (!items)
            return -1;
        size_t i = 0;
        for (const cJSON *c = v->child; c; c = c->next)
            items[i++] = c;
        if (obj && sort_keys)
            qsort(items, n, sizeof *items, cmp_items);
        bad |= ct_buf_putc(b, obj ? '{' : '[');
        for (i = 0; i < n && !bad; i++) {
            bad |= ct_buf_printf(b, "%s\n%*s", i ? "," : "", 2 * (depth + 1), "");
            if (obj) {
                bad |= ct_pyjson_str(b, items[i]->string);
                bad |= ct_buf_puts(b, ": ");
            }
            bad |= write_at(b, items[i], sort_keys, depth + 1);
        }
        bad |= ct_buf_printf(b, "\n%*s%c", 2 * depth, "", obj ? '}' : ']');
        free(items);
        return bad;
    }
    if (cJSON_IsString(v))
        return ct_pyjson_str(b, v->valuestring);
    if (cJSON_IsNumber(v))
        return put_number(b, v);
    if (cJSON_IsTrue(v))
        return ct_buf_puts(b, "true");
    if (cJSON_IsFalse(v))
        return ct_buf_puts(b, "false");
    return ct_buf_puts(b, "null");
}

int ct_pyjson_write(ct_buf *b, const cJSON *v, int sort_keys)
{
    return write_at(b, v, sort_keys, 0);
}

/* Python's json also reads and writes NaN, Infinity and -Infinity. */
static size_t special_len(const char *p, const char *end)
{
    static const char *const words[] = {"NaN", "Infinity", "-Infinity"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(end - p) >= n && !memcmp(p, words[i], n))
            return n;
    }
    return 0;
}

/* The k-th number token of the text belongs to the k-th number node of the
 * tree in document order (cJSON keeps members in order, duplicates too). */
static const char *next_number(const char *p, const char *end, size_t *n)
{
    while (p < end) {
        if (*p == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\')
                    p++;
            p++;
        } else if ((*n = special_len(p, end))) {
            return p;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            const char *q = p;
            while (q < end && (*q == '-' || *q == '+' || *q == '.' || *q == 'e' || *q == 'E' || (*q >= '0' && *q <= '9')))
                q++;
            *n = (size_t)(q - p);
            return p;
        } else {
            p++;
        }
    }
    return NULL;
}

/* A number as JSON (and Python) spell it: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
 * (cJSON also takes 01, 1. and the like, which Python refuses). */
static int json_number(const char *t, size_t n)
{
    const char *p = t, *end = t + n;
    if (p < end && *p == '-')
        p++;
    if (p == end || *p < '0' || *p > '9')
        return 0;
    if (*p++ != '0')
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    if (p < end && *p == '.') {
        const char *d = ++p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == d)
            return 0;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const char *d = p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == d)
            return 0;
    }
    return p == end;
}

static int attach(cJSON *v, const char **p, const char *end)
{
    for (; v; v = v->next) {
        if (cJSON_IsNumber(v)) {
            size_t n;
            const char *t = next_number(*p, end, &n);
            int special = t && special_len(t, end) == n;
            if (!t || (!special && !json_number(t, n)) || !(v->valuestring = cJSON_malloc(n + 1)))
                return -1;
            memcpy(v->valuestring, t, n);
            v->valuestring[n] = 0;
            *p = t + n;
            if (special) {
                v->valuedouble = *t == 'N' ? NAN : *t == '-' ? -INFINITY : INFINITY;
                v->valueint = *t == 'N' ? 0 : *t == '-' ? INT_MIN : INT_MAX;
            }
        }
        if (v->child && attach(v->child, p, end))
            return -1;
    }
    return 0;
}

cJSON *ct_pyjson_parse(const char *text, size_t len)
{
    /* cJSON is given NaN and +-Infinity as zeros of the same length; their
     * nodes get the values back from the text */
    const char *end = text + len, *p = text;
    char *copy = NULL;
    size_t n;
    while ((p = next_number(p, end, &n))) {
        if (special_len(p, end) == n) {
            if (!copy) {
                if (!(copy = malloc(len)))
                    return NULL;
                memcpy(copy, text, len);
            }
            char *c = copy + (p - text);
            size_t k = 0;
            if (*p == '-')
                c[k++] = '-';
            c[k++] = '0';
            memset(c + k, ' ', n - k);
        }
        p += n;
    }
    cJSON *root = cJSON_ParseWithLength(copy ? copy : text, len);
    free(copy);
    p = text;
    if (root && attach(root, &p, end)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}
