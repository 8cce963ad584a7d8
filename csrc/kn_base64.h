/* Standard base64 (RFC 4648), as kubeconfig *-data fields use it. */
#ifndef KN_BASE64_H
#define KN_BASE64_H

#include <stddef.h>

/* Decodes src; whitespace is skipped (YAML folds long values). Returns a
 * malloc'd, NUL-terminated buffer, or NULL when the input is not base64. */
unsigned char *kn_base64_decode(const char *src, size_t srclen, size_t *outlen);
/* Encodes into a malloc'd C string. */
char *kn_base64_encode(const unsigned char *src, size_t len);

#endif
