/* A growable byte buffer, always NUL-terminated so text can be used as a C
 * string without another copy. */
#ifndef KN_BUF_H
#define KN_BUF_H

#include <stddef.h>

struct kn_buf {
    char *data;
    size_t len;
    size_t cap;
};

int kn_buf_append(struct kn_buf *b, const void *p, size_t n); /* 0, or -1 on ENOMEM */
int kn_buf_puts(struct kn_buf *b, const char *s);
void kn_buf_reset(struct kn_buf *b);                            /* keeps the memory */
void kn_buf_free(struct kn_buf *b);
/* Hands the bytes to the caller (who frees them) and empties the buffer. */
char *kn_buf_steal(struct kn_buf *b, size_t *len);

/* Reads a whole file; NULL with errno set on failure. */
char *kn_read_file(const char *path, size_t *len);

#endif
