/* Errors of the C core: an HTTP-like code, a Kubernetes-style reason and one
 * readable line. Messages name the file, field or URL to fix and never carry
 * a token, key or password. */
#ifndef KN_ERR_H
#define KN_ERR_H

#include <stddef.h>

#define KN_ERR_MSG 1024

struct kn_err {
    int code;            /* HTTP status, or 0 when the failure is not HTTP */
    char reason[32];     /* "Config", "Transport", "Unauthorized", "ExecPlugin", ... */
    char msg[KN_ERR_MSG];
};

#if defined(__GNUC__)
#define KN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define KN_PRINTF(a, b)
#endif

/* The reason of an error that only a want of memory caused, where a caller
 * must tell it from bad input: a list item that could not be read for want
 * of memory is not a bad item to skip, it makes the list fail. */
#define KN_ERR_NOMEM "NoMemory"

/* Always returns -1, so that a failure path can `return kn_err_set(...)`. */
int kn_err_set(struct kn_err *err, int code, const char *reason, const char *fmt, ...) KN_PRINTF(4, 5);

/* Prefixes context ("while loading x: ") to an error already set. */
void kn_err_prefix(struct kn_err *err, const char *fmt, ...) KN_PRINTF(2, 3);

#endif
