#include "kn_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The API server stores objects nested up to about 10,000 levels; deeper
 * input is refused, which keeps the recursive descent's stack bounded (a
 * few hundred KiB at the limit). */
#define MAX_DEPTH 10100 /* an object at the limit, inside a watch event or a list */

struct parser {
    struct kn_json *j;
    const char *s;
    size_t len, pos;
};

static int fail(struct parser *p, const char *what)
{
    snprintf(p->j->error, sizeof p->j->error, "%s at byte %zu", what, p->pos);
    return -1;
}

static void skip_ws(struct parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static int new_tok(struct parser *p, enum kn_jtype type)
{
    struct kn_json *j = p->j;
    if (j->n == j->cap) {
        int cap = j->cap ? j->cap * 2 : 64;
        struct kn_jtok *t = realloc(j->tok, (size_t)cap * sizeof *t);
        if (!t)
            return fail(p, "out of memory"), -1;
        j->tok = t;
        j->cap = cap;
    }
    j->tok[j->n].type = type;
    j->tok[j->n].start = p->pos;
    j->tok[j->n].end = p->pos;
    j->tok[j->n].size = 0;
    j->tok[j->n].next = j->n + 1;
    return j->n++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int parse_string(struct parser *p)
{
    int t;
    p->pos++; /* opening quote */
    t = new_tok(p, KN_J_STRING);
    if (t < 0)
        return -1;
    while ((p->pos = kn_json_plain_run(p->s, p->pos, p->len)) < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->j->tok[t].end = p->pos++;
            return t;
        }
        if (c < 0x20)
            return fail(p, "control character in string");
        if (c == '\\') {
            if (++p->pos >= p->len)
                break;
            switch (p->s[p->pos]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                break;
            case 'u':
                if (p->pos + 4 >= p->len)
                    return fail(p, "short \\u escape");
                for (int k = 1; k <= 4; k++)
                    if (hexval(p->s[p->pos + k]) < 0)
                        return fail(p, "bad \\u escape");
                p->pos += 4;
                break;
            default:
                return fail(p, "bad escape in string");
            }
        }
        p->pos++;
    }
    return fail(p, "unterminated string");
}

static int parse_number(struct parser *p)
{
    int t = new_tok(p, KN_J_NUMBER);
    size_t digits;
    if (t < 0)
        return -1;
    if (p->pos < p->len && p->s[p->pos] == '-')
        p->pos++;
    digits = p->pos;
    if (p->pos < p->len && p->s[p->pos] == '0')
        p->pos++;
    else
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    if (p->pos == digits)
        return fail(p, "bad number");
    if (p->pos < p->len && p->s[p->pos] == '.') {
        digits = ++p->pos;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
        if (p->pos == digits)
            return fail(p, "bad number fraction");
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        digits = p->pos;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
        if (p->pos == digits)
            return fail(p, "bad number exponent");
    }
    p->j->tok[t].end = p->pos;
    return t;
}

static int parse_word(struct parser *p, const char *word, enum kn_jtype type)
{
    size_t n = strlen(word);
    int t;
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return fail(p, "unexpected character");
    t = new_tok(p, type);
    if (t < 0)
        return -1;
    p->pos += n;
    p->j->tok[t].end = p->pos;
    return t;
}

static int parse_value(struct parser *p, int depth);

static int parse_container(struct parser *p, int depth, int object)
{
    char close = object ? '}' : ']';
    int t = new_tok(p, object ? KN_J_OBJECT : KN_J_ARRAY);
    if (t < 0)
        return -1;
    if (depth >= MAX_DEPTH)
        return fail(p, "nesting too deep");
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        goto done;
    }
    for (;;) {
        skip_ws(p);
        if (object) {
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return fail(p, "expected a member name");
            if (parse_string(p) < 0)
                return -1;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return fail(p, "expected ':'");
            p->pos++;
        }
        if (parse_value(p, depth + 1) < 0)
            return -1;
        p->j->tok[t].size++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        return fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
done:
    p->j->tok[t].end = p->pos;
    p->j->tok[t].next = p->j->n;
    return t;
}

static int parse_value(struct parser *p, int depth)
{
    skip_ws(p);
    if (p->pos >= p->len)
        return fail(p, "unexpected end of input");
    switch (p->s[p->pos]) {
    case '{': return parse_container(p, depth, 1);
    case '[': return parse_container(p, depth, 0);
    case '"': return parse_string(p);
    case 't': return parse_word(p, "true", KN_J_TRUE);
    case 'f': return parse_word(p, "false", KN_J_FALSE);
    case 'n': return parse_word(p, "null", KN_J_NULL);
    default:
        if (p->s[p->pos] == '-' || (p->s[p->pos] >= '0' && p->s[p->pos] <= '9'))
            return parse_number(p);
        return fail(p, "unexpected character");
    }
}

int kn_json_parse(struct kn_json *j, const char *text, size_t len)
{
    struct parser p = { j, text, len, 0 };
    j->text = text;
    j->n = 0;
    j->error[0] = '\0';
    if (parse_value(&p, 0) < 0)
        return -1;
    skip_ws(&p);
    if (p.pos != len)
        return fail(&p, "trailing characters after the value");
    return 0;
}

void kn_json_free(struct kn_json *j)
{
    free(j->tok);
    j->tok = NULL;
    j->n = j->cap = 0;
}

int kn_json_streq(const struct kn_json *j, int idx, const char *s)
{
    const struct kn_jtok *t;
    size_t n = strlen(s);
    if (idx < 0 || idx >= j->n || j->tok[idx].type != KN_J_STRING)
        return 0;
    t = &j->tok[idx];
    /* Kubernetes field names never need escapes; a name written with escapes
     * simply does not match, which errs on the side of "absent". */
    return t->end - t->start == n && memcmp(j->text + t->start, s, n) == 0;
}

int kn_json_member(const struct kn_json *j, int obj, const char *key)
{
    int i, k;
    if (obj < 0 || obj >= j->n || j->tok[obj].type != KN_J_OBJECT)
        return -1;
    i = obj + 1;
    for (k = 0; k < j->tok[obj].size; k++) {
        int val = i + 1;
        if (kn_json_streq(j, i, key))
            return val;
        i = j->tok[val].next;
    }
    return -1;
}

int kn_json_path(const struct kn_json *j, int obj, const char *path)
{
    char name[128];
    while (obj >= 0 && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof name)
            return -1;
        memcpy(name, path, n);
        name[n] = '\0';
        obj = kn_json_member(j, obj, name);
        path += n + (dot ? 1 : 0);
    }
    return obj;
}

static void put_utf8(char **o, unsigned cp)
{
    char *p = *o;
    if (cp < 0x80) {
        *p++ = (char)cp;
    } else if (cp < 0x800) {
        *p++ = (char)(0xC0 | cp >> 6);
        *p++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *p++ = (char)(0xE0 | cp >> 12);
        *p++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *p++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *p++ = (char)(0xF0 | cp >> 18);
        *p++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *p++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *p++ = (char)(0x80 | (cp & 0x3F));
    }
    *o = p;
}

static unsigned hex4(const char *s)
{
    return (unsigned)(hexval(s[0]) << 12 | hexval(s[1]) << 8 | hexval(s[2]) << 4 | hexval(s[3]));
}

size_t kn_json_unescape(const char *s, const char *e, char *out)
{
    char *o = out;
    while (s < e) {
        /* the plain runs between escapes, copied whole (a YAML file in a
         * ConfigMap has an escaped newline every few dozen bytes) */
        const char *b = memchr(s, '\\', (size_t)(e - s));
        if (!b) {
            memcpy(o, s, (size_t)(e - s));
            o += e - s;
            break;
        }
        memcpy(o, s, (size_t)(b - s));
        o += b - s;
        s = b + 1;
        switch (*s++) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp = hex4(s);
            s += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && e - s >= 6 && s[0] == '\\' && s[1] == 'u') {
                unsigned lo = hex4(s + 2);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    s += 6;
                }
            }
            if (cp >= 0xD800 && cp < 0xE000)
                cp = 0xFFFD; /* a lone surrogate has no UTF-8 form */
            put_utf8(&o, cp);
            break;
        }
        default: *o++ = s[-1]; break; /* " \ / */
        }
    }
    return (size_t)(o - out);
}

char *kn_json_string(const struct kn_json *j, int idx, size_t *len)
{
    const char *s, *e;
    char *out;
    size_t n;
    if (idx < 0 || idx >= j->n || j->tok[idx].type != KN_J_STRING)
        return NULL;
    s = j->text + j->tok[idx].start;
    e = j->text + j->tok[idx].end;
    /* Escapes never expand: \uXXXX (6 bytes) is at most 4 bytes of UTF-8. */
    out = malloc((size_t)(e - s) + 1);
    if (!out)
        return NULL;
    n = kn_json_unescape(s, e, out);
    out[n] = '\0';
    if (len)
        *len = n;
    return out;
}

int kn_json_quote(struct kn_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (kn_buf_append(b, "\"", 1) < 0)
        return -1;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[7];
        if (c == '"' || c == '\\') {
            esc[0] = '\\'; esc[1] = (char)c;
            if (kn_buf_append(b, esc, 2) < 0) return -1;
        } else if (c < 0x20) {
            esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
            if (kn_buf_append(b, esc, 6) < 0) return -1;
        } else if (kn_buf_append(b, s, 1) < 0) {
            return -1;
        }
    }
    return kn_buf_append(b, "\"", 1);
}
