#include "kn_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int kn_err_set(struct kn_err *err, int code, const char *reason, const char *fmt, ...)
{
    va_list ap;
    if (!err)
        return -1;
    err->code = code;
    snprintf(err->reason, sizeof err->reason, "%s", reason);
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void kn_err_prefix(struct kn_err *err, const char *fmt, ...)
{
    char head[KN_ERR_MSG], old[KN_ERR_MSG];
    va_list ap;
    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    size_t h, o;
    memcpy(old, err->msg, sizeof old);
    h = strlen(head);
    o = strnlen(old, sizeof old - 1);
    if (h > sizeof err->msg - 1)
        h = sizeof err->msg - 1;
    if (o > sizeof err->msg - 1 - h)
        o = sizeof err->msg - 1 - h;
    memcpy(err->msg, head, h);
    memcpy(err->msg + h, old, o);
    err->msg[h + o] = '\0';
}
