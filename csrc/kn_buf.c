#include "kn_buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kn_buf_append(struct kn_buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *d;
        while (cap < b->len + n + 1) {
            if (cap > ((size_t)-1) / 2)
                return -1;
            cap *= 2;
        }
        d = realloc(b->data, cap);
        if (!d)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int kn_buf_puts(struct kn_buf *b, const char *s)
{
    return kn_buf_append(b, s, strlen(s));
}

void kn_buf_reset(struct kn_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void kn_buf_free(struct kn_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *kn_buf_steal(struct kn_buf *b, size_t *len)
{
    char *d = b->data;
    if (!d) {
        d = calloc(1, 1);
    }
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

char *kn_read_file(const char *path, size_t *len)
{
    struct kn_buf b = {0};
    char chunk[8192];
    size_t n;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (kn_buf_append(&b, chunk, n) < 0) {
            fclose(f);
            kn_buf_free(&b);
            errno = ENOMEM;
            return NULL;
        }
    }
    if (ferror(f)) {
        int e = errno ? errno : EIO;
        fclose(f);
        kn_buf_free(&b);
        errno = e;
        return NULL;
    }
    fclose(f);
    return kn_buf_steal(&b, len);
}
