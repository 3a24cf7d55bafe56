/* Error reporting for libct.
 *
 * Every fallible libct call returns 0 on success or one of the CT_E* codes
 * below, and fills a caller-provided ct_err (which may be NULL) with a
 * message naming the file, the tensor and the reason.  The library never
 * prints and never aborts on bad input; only the programs turn codes into
 * exit statuses or -errno. */
#ifndef CT_ERR_H
#define CT_ERR_H

enum {
    CT_OK = 0,
    CT_ENOMEM = 1,       /* allocation failed */
    CT_EIO = 2,          /* a system call on a file failed */
    CT_EFORMAT = 3,      /* malformed input: bad header, sizes, config */
    CT_EUNSUPPORTED = 4, /* well-formed but not something we can decode */
    CT_EUSAGE = 5,       /* bad argument from the caller */
    CT_EEXIST = 6,       /* output exists and overwriting was not asked */
    CT_ECHANGED = 7,     /* a source file changed after it was opened */
    CT_EINTR = 8         /* interrupted: ct_cancel() was called */
};

typedef struct ct_err {
    int code;
    char msg[1024];
} ct_err;

/* Record an error in *e (if e is non-NULL) and return code. */
int ct_fail(ct_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the existing message with more context ("file: " ...). */
int ct_err_prefix(ct_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

const char *ct_strerror(int code);

#endif
