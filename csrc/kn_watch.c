#define _GNU_SOURCE /* memmem */
#include "kn_watch.h"

#include <stdlib.h>
#include <string.h>

#include "kn_json.h"

#define DEFAULT_MAX_LINE ((size_t)64 << 20)
/* A buffer grown by one huge line is given back rather than kept for the
 * life of the watch. */
#define KEEP_PARTIAL ((size_t)1 << 20)

static int too_long(struct kn_framer *f, size_t max, struct kn_err *err)
{
    kn_buf_free(&f->partial);
    return kn_err_set(err, 0, "BadEvent", "a watch event line is longer than %zu bytes", max);
}

/* Drops the '\r' of a "\r\n" ending and empty lines (keep-alives). */
static int deliver(const char *line, size_t len, int (*on_line)(void *, const char *, size_t), void *ud)
{
    if (len && line[len - 1] == '\r')
        len--;
    return len ? on_line(ud, line, len) : 0;
}

/* A line's length counts every byte before its '\n', the '\r' included. A
 * non-zero callback value ends the stream: the rest of the chunk is dropped,
 * as no caller can resume from the middle of one. */
int kn_framer_feed(struct kn_framer *f, const char *p, size_t n,
                   int (*on_line)(void *ud, const char *line, size_t len), void *ud, struct kn_err *err)
{
    size_t max = f->max_line ? f->max_line : DEFAULT_MAX_LINE;
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        int rc;
        if (f->partial.len + k > max || f->partial.len + k < k)
            return too_long(f, max, err);
        if (!nl) {
            if (kn_buf_append(&f->partial, p, n) < 0) {
                size_t have = f->partial.len + n;
                kn_buf_free(&f->partial);
                return kn_err_set(err, 0, "BadEvent", "out of memory holding a watch event line of %zu bytes",
                                  have);
            }
            return 0;
        }
        if (f->partial.len == 0) {
            /* The hot path: the whole line is in this chunk; no copy. */
            rc = deliver(p, k, on_line, ud);
        } else {
            if (kn_buf_append(&f->partial, p, k) < 0) {
                size_t have = f->partial.len + k;
                kn_buf_free(&f->partial);
                return kn_err_set(err, 0, "BadEvent", "out of memory holding a watch event line of %zu bytes",
                                  have);
            }
            rc = deliver(f->partial.data, f->partial.len, on_line, ud);
            if (f->partial.cap > KEEP_PARTIAL)
                kn_buf_free(&f->partial);
            else
                kn_buf_reset(&f->partial);
        }
        if (rc)
            return rc;
        p += k + 1;
        n -= k + 1;
    }
    return 0;
}

size_t kn_framer_pending(const struct kn_framer *f)
{
    return f->partial.len;
}

void kn_framer_reset(struct kn_framer *f)
{
    if (f->partial.cap > KEEP_PARTIAL)
        kn_buf_free(&f->partial);
    else
        kn_buf_reset(&f->partial);
}

void kn_framer_free(struct kn_framer *f)
{
    kn_buf_free(&f->partial);
}

/* Copies a string token into dst (size n), cut at a UTF-8 character
 * boundary so a truncated message is still valid text for Lua. */
static void copy_string(const struct kn_json *j, int idx, char *dst, size_t n)
{
    size_t len;
    char *s = kn_json_string(j, idx, &len);
    dst[0] = '\0';
    if (!s)
        return;
    if (len >= n) {
        len = n - 1;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    memcpy(dst, s, len);
    dst[len] = '\0';
    free(s);
}

/* A printable excerpt of a bad type value, for the error message. */
static void excerpt(const struct kn_json *j, int idx, char *dst, size_t n)
{
    const char *s = j->text + j->tok[idx].start;
    size_t len = j->tok[idx].end - j->tok[idx].start, i;
    for (i = 0; i < len && i < n - 1; i++)
        dst[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    dst[i] = '\0';
}

static int parse_type(const struct kn_json *j, int idx, enum kn_ev_type *type, struct kn_err *err)
{
    static const struct {
        const char *name;
        enum kn_ev_type type;
    } types[] = {
        { "ADDED", KN_EV_ADDED },       { "MODIFIED", KN_EV_MODIFIED }, { "DELETED", KN_EV_DELETED },
        { "BOOKMARK", KN_EV_BOOKMARK }, { "ERROR", KN_EV_ERROR },
    };
    char shown[40];
    if (idx < 0 || j->tok[idx].type != KN_J_STRING)
        return kn_err_set(err, 0, "BadEvent", "watch event has %s",
                          idx < 0 ? "no type" : "a type that is not a string");
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        if (kn_json_streq(j, idx, types[i].name)) {
            *type = types[i].type;
            return 0;
        }
    }
    excerpt(j, idx, shown, sizeof shown);
    return kn_err_set(err, 0, "BadEvent", "watch event has an unknown type \"%s\"", shown);
}

static const char *type_name(enum kn_ev_type t)
{
    switch (t) {
    case KN_EV_ADDED: return "ADDED";
    case KN_EV_MODIFIED: return "MODIFIED";
    case KN_EV_DELETED: return "DELETED";
    case KN_EV_BOOKMARK: return "BOOKMARK";
    default: return "ERROR";
    }
}

static int set_rv(struct kn_watch_event *ev, const char *rv, size_t n, struct kn_err *err)
{
    if (n >= sizeof ev->rv)
        return kn_err_set(err, 0, "BadEvent", "%s event has a resourceVersion of %zu bytes (at most %zu)",
                          type_name(ev->type), n, sizeof ev->rv - 1);
    memcpy(ev->rv, rv, n);
    ev->rv[n] = '\0';
    return 0;
}

/* A bookmark's object is a bare shell of the resource's kind: only
 * metadata.resourceVersion and perhaps the annotation that ends a streaming
 * list. It has no name, so it is not an object for the store. */
static int parse_bookmark(const struct kn_json *j, int obj, struct kn_watch_event *ev, struct kn_err *err)
{
    int meta = kn_json_member(j, obj, "metadata");
    int rv = kn_json_member(j, meta, "resourceVersion");
    int ann = kn_json_member(j, meta, "annotations");
    size_t n;
    char *s;
    if (rv < 0 || j->tok[rv].type != KN_J_STRING)
        return kn_err_set(err, 0, "BadEvent", "BOOKMARK event has no metadata.resourceVersion");
    /* Bounded before unescaping, which never lengthens. */
    if (j->tok[rv].end - j->tok[rv].start >= 6 * sizeof ev->rv)
        return kn_err_set(err, 0, "BadEvent", "BOOKMARK event has a resourceVersion of %zu bytes (at most %zu)",
                          j->tok[rv].end - j->tok[rv].start, sizeof ev->rv - 1);
    s = kn_json_string(j, rv, &n);
    if (!s)
        return kn_err_set(err, 0, "BadEvent", "out of memory reading a BOOKMARK event");
    if (set_rv(ev, s, n, err) < 0) {
        free(s);
        return -1;
    }
    free(s);
    ev->initial_events_end = kn_json_streq(j, kn_json_member(j, ann, "k8s.io/initial-events-end"), "true");
    return 0;
}

#define TOO_LARGE "Too large resource version"

/* Whether the string at idx contains text as it is written (no escapes in text). */
static int str_has(const struct kn_json *j, int idx, const char *text)
{
    return idx >= 0 && j->tok[idx].type == KN_J_STRING &&
           memmem(j->text + j->tok[idx].start, j->tok[idx].end - j->tok[idx].start, text, strlen(text)) != NULL;
}

int kn_status_rv_too_large(const struct kn_json *j, int status)
{
    int causes = kn_json_path(j, status, "details.causes");
    int timeout = kn_json_streq(j, kn_json_member(j, status, "reason"), "Timeout");
    if (causes >= 0 && j->tok[causes].type == KN_J_ARRAY) {
        int c = causes + 1;
        for (int k = 0; k < j->tok[causes].size; k++, c = j->tok[c].next) {
            if (kn_json_streq(j, kn_json_member(j, c, "reason"), "ResourceVersionTooLarge"))
                return 1;
            if (timeout && kn_json_streq(j, kn_json_member(j, c, "message"), TOO_LARGE))
                return 1;
        }
    }
    return timeout && str_has(j, kn_json_member(j, status, "message"), TOO_LARGE);
}

/* The object of an ERROR event is a metav1.Status. */
static void parse_status(const struct kn_json *j, int obj, struct kn_watch_event *ev)
{
    int code = kn_json_member(j, obj, "code");
    if (code >= 0 && j->tok[code].type == KN_J_NUMBER) {
        const char *s = j->text + j->tok[code].start, *e = j->text + j->tok[code].end;
        long v = 0;
        int neg = s < e && *s == '-';
        /* HTTP codes are three digits; anything else is kept only if small. */
        for (s += neg; s < e && *s >= '0' && *s <= '9' && v < 100000; s++)
            v = v * 10 + (*s - '0');
        if (s == e)
            ev->code = (int)(neg ? -v : v);
    }
    copy_string(j, kn_json_member(j, obj, "reason"), ev->reason, sizeof ev->reason);
    copy_string(j, kn_json_member(j, obj, "message"), ev->message, sizeof ev->message);
    ev->rv_too_large = kn_status_rv_too_large(j, obj);
}

int kn_watch_parse(const char *line, size_t len, const struct kn_normalize *norm, struct kn_watch_event *ev,
                   struct kn_err *err)
{
    struct kn_json j;
    int type, obj, rc = -1;
    memset(ev, 0, sizeof *ev);
    memset(&j, 0, sizeof j);
    if (kn_json_parse(&j, line, len) < 0) {
        kn_err_set(err, 0, "BadEvent", "watch event is not valid JSON: %s", j.error);
        goto done;
    }
    if (j.tok[0].type != KN_J_OBJECT) {
        kn_err_set(err, 0, "BadEvent", "watch event is not a JSON object");
        goto done;
    }
    type = kn_json_member(&j, 0, "type");
    if (parse_type(&j, type, &ev->type, err) < 0)
        goto done;
    obj = kn_json_member(&j, 0, "object");
    if (obj < 0 || j.tok[obj].type != KN_J_OBJECT) {
        kn_err_set(err, 0, "BadEvent", "%s event has %s", type_name(ev->type),
                   obj < 0 ? "no object" : "an object that is not a JSON object");
        goto done;
    }
    switch (ev->type) {
    case KN_EV_BOOKMARK:
        rc = parse_bookmark(&j, obj, ev, err);
        break;
    case KN_EV_ERROR:
        parse_status(&j, obj, ev);
        rc = 0;
        break;
    default:
        ev->obj = kn_obj_from_tokens(&j, obj, norm, err);
        if (!ev->obj) {
            kn_err_prefix(err, "%s event: ", type_name(ev->type));
            break;
        }
        rc = set_rv(ev, ev->obj->rv, strlen(ev->obj->rv), err);
        if (rc < 0) {
            kn_obj_unref(ev->obj);
            ev->obj = NULL;
        }
        break;
    }
done:
    kn_json_free(&j);
    return rc;
}
