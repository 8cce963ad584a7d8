/* A small strict JSON tokenizer for the C core. It does not build values: it
 * records where each value lies in the text, so a caller can pick a few fields
 * (a credential's token, an event's type) without copying the document. */
#ifndef KN_JSON_H
#define KN_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kn_buf.h"

enum kn_jtype { KN_J_OBJECT, KN_J_ARRAY, KN_J_STRING, KN_J_NUMBER, KN_J_TRUE, KN_J_FALSE, KN_J_NULL };

struct kn_jtok {
    enum kn_jtype type;
    size_t start, end; /* byte span in the text; a string's span excludes its quotes */
    int size;          /* members of an object (pairs) or elements of an array */
    int next;          /* index of the first token after this value's subtree */
};

struct kn_json {
    const char *text;
    struct kn_jtok *tok; /* tok[0] is the root value; an object's members are key, value, key, ... */
    int n, cap;
    char error[96];      /* what is wrong and at which byte offset, after a failed parse */
};

/* Tokenizes text[0..len) as one JSON value (whitespace around it allowed).
 * Returns 0, or -1 with j->error set. Call kn_json_free either way. */
int kn_json_parse(struct kn_json *j, const char *text, size_t len);
void kn_json_free(struct kn_json *j);

/* The value of member `key` of the object at index obj, or -1. */
int kn_json_member(const struct kn_json *j, int obj, const char *key);
/* Walks a dotted path of member names from obj ("status.token"), or -1. */
int kn_json_path(const struct kn_json *j, int obj, const char *path);
/* The unescaped text of the string at idx as a malloc'd C string (NULL if idx
 * is not a string, or on ENOMEM). *len gets its length when len is not NULL. */
char *kn_json_string(const struct kn_json *j, int idx, size_t *len);
/* Unescapes the body of a string the tokenizer accepted (between its quotes)
 * into out, which needs e - s bytes (escapes never expand); returns the
 * length. \uXXXX and surrogate pairs become UTF-8, a lone surrogate U+FFFD. */
size_t kn_json_unescape(const char *s, const char *e, char *out);
/* Whether the string token at idx equals s, without allocating. */
int kn_json_streq(const struct kn_json *j, int idx, const char *s);

/* The index of the first byte at or after i that ends a run of plain string
 * bytes (a quote, a backslash or a control character), or len. Eight bytes
 * at a time: string bodies are most of the bytes of an object, and scanning
 * them a byte at a time was the largest cost of parsing an event. */
static inline size_t kn_json_plain_run(const char *s, size_t i, size_t len)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    while (i + 8 <= len) {
        uint64_t x, q, b, hit;
        memcpy(&x, s + i, 8);
        q = x ^ (ones * '"');
        b = x ^ (ones * '\\');
        /* a byte is zero in q or b, or below 0x20 in x */
        hit = ((q - ones) & ~q) | ((b - ones) & ~b) | ((x - ones * 0x20) & ~x);
        if (hit & high)
            break;
        i += 8;
    }
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c < 0x20)
            break;
        i++;
    }
    return i;
}

/* Appends s as a quoted, escaped JSON string. */
int kn_json_quote(struct kn_buf *b, const char *s);

#endif
