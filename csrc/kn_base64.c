#include "kn_base64.h"

#include <stdlib.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

unsigned char *kn_base64_decode(const char *src, size_t srclen, size_t *outlen)
{
    unsigned char *out = malloc(srclen / 4 * 3 + 4);
    size_t o = 0, i, pad = 0, n = 0;
    unsigned acc = 0;
    if (!out)
        return NULL;
    for (i = 0; i < srclen; i++) {
        unsigned char c = (unsigned char)src[i];
        int v;
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        if (pad)             /* data after padding */
            goto bad;
        v = sextet(c);
        if (v < 0)
            goto bad;
        acc = (acc << 6) | (unsigned)v;
        n++;
        if (n % 4 == 0) {
            out[o++] = (unsigned char)(acc >> 16);
            out[o++] = (unsigned char)(acc >> 8);
            out[o++] = (unsigned char)acc;
            acc = 0;
        }
    }
    switch (n % 4) {
    case 0: if (pad) goto bad; break;
    case 1: goto bad;
    case 2:
        if (pad && pad != 2) goto bad;
        out[o++] = (unsigned char)(acc >> 4);
        break;
    case 3:
        if (pad && pad != 1) goto bad;
        out[o++] = (unsigned char)(acc >> 10);
        out[o++] = (unsigned char)(acc >> 2);
        break;
    }
    out[o] = '\0';
    if (outlen)
        *outlen = o;
    return out;
bad:
    free(out);
    return NULL;
}

char *kn_base64_encode(const unsigned char *src, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1), *p = out;
    size_t i;
    if (!out)
        return NULL;
    for (i = 0; i + 2 < len; i += 3) {
        unsigned v = (unsigned)src[i] << 16 | (unsigned)src[i + 1] << 8 | src[i + 2];
        *p++ = alphabet[v >> 18 & 63];
        *p++ = alphabet[v >> 12 & 63];
        *p++ = alphabet[v >> 6 & 63];
        *p++ = alphabet[v & 63];
    }
    if (i < len) {
        unsigned v = (unsigned)src[i] << 16 | (i + 1 < len ? (unsigned)src[i + 1] << 8 : 0);
        *p++ = alphabet[v >> 18 & 63];
        *p++ = alphabet[v >> 12 & 63];
        *p++ = i + 1 < len ? alphabet[v >> 6 & 63] : '=';
        *p++ = '=';
    }
    *p = '\0';
    return out;
}
