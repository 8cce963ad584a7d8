/* libFuzzer target for the watch path: arbitrary bytes through kn_framer in
 * several chunkings, every line through kn_watch_parse under two
 * normalizations. Besides the sanitizers it checks what callers rely on:
 * every chunking yields the same lines, ev->obj is NULL on failure, and an
 * object's JSON is valid and normalizes to itself.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc -o build/fuzz_watch spec/fuzz/fuzz_watch.c \
 *   csrc/kn_obj.c csrc/kn_watch.c csrc/kn_json.c csrc/kn_buf.c csrc/kn_err.c csrc/kn_base64.c
 * build/fuzz_watch spec/fuzz/corpus/watch */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kn_json.h"
#include "kn_watch.h"

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c))                                                                                                      \
            __builtin_trap();                                                                                          \
    } while (0)

static const struct kn_normalize norms[2] = {
    { "v1", "ConfigMap", 0, 0 },
    { "example.com/v1\"beta", "Odd\\Kind\n", 1, 1 },
};

struct run {
    uint64_t hash; /* of every line seen, in order */
    size_t lines;
    int parse; /* 0: only frame */
};

static void check_obj(const struct kn_obj *o, const struct kn_normalize *norm)
{
    struct kn_json j = {0};
    struct kn_err err = {0};
    struct kn_obj *again;
    CHECK(o->refs == 1);
    CHECK(strlen(o->json) == o->len);
    CHECK(kn_json_parse(&j, o->json, o->len) == 0);
    kn_json_free(&j);
    CHECK(o->name[0] != '\0');
    CHECK(strlen(o->key) >= strlen(o->name));
    again = kn_obj_new(o->json, o->len, norm, &err);
    CHECK(again != NULL);
    CHECK(again->len == o->len && memcmp(again->json, o->json, o->len) == 0);
    CHECK(strcmp(again->key, o->key) == 0 && strcmp(again->rv, o->rv) == 0 && strcmp(again->uid, o->uid) == 0);
    kn_obj_unref(again);
}

static int on_line(void *ud, const char *line, size_t len)
{
    struct run *r = ud;
    CHECK(len > 0 && memchr(line, '\n', len) == NULL); /* one '\r' is stripped, not all */
    for (size_t i = 0; i < len; i++)
        r->hash = (r->hash ^ (unsigned char)line[i]) * 1099511628211u;
    r->hash = (r->hash ^ 0x100) * 1099511628211u;
    r->lines++;
    if (!r->parse)
        return 0;
    for (int n = 0; n < 2; n++) {
        struct kn_watch_event ev;
        struct kn_err err = {0};
        struct kn_obj *o;
        ev.obj = (struct kn_obj *)&ev;
        if (kn_watch_parse(line, len, &norms[n], &ev, &err) < 0) {
            CHECK(ev.obj == NULL && err.msg[0] != '\0');
        } else {
            CHECK(strlen(ev.rv) < sizeof ev.rv && strlen(ev.reason) < sizeof ev.reason &&
                  strlen(ev.message) < sizeof ev.message);
            CHECK((ev.obj != NULL) == (ev.type <= KN_EV_DELETED));
            if (ev.obj) {
                CHECK(strcmp(ev.rv, ev.obj->rv) == 0);
                check_obj(ev.obj, &norms[n]);
            }
            kn_obj_unref(kn_obj_ref(ev.obj));
            kn_obj_unref(ev.obj);
        }
        /* A line may also be a list item by itself. */
        o = kn_obj_new(line, len, &norms[n], &err);
        if (o)
            check_obj(o, &norms[n]);
        kn_obj_unref(o);
    }
    return 0;
}

static struct run frame(const uint8_t *data, size_t size, size_t chunk, size_t max_line, int parse)
{
    struct kn_framer f = {0};
    struct kn_err err = {0};
    struct run r = { 14695981039346656037u, 0, parse };
    f.max_line = max_line;
    for (size_t at = 0; at < size; at += chunk) {
        size_t k = size - at < chunk ? size - at : chunk;
        /* A heap copy of exactly the chunk, so a read past it is caught. */
        char *copy = malloc(k);
        memcpy(copy, data + at, k);
        int rc = kn_framer_feed(&f, copy, k, on_line, &r, &err);
        free(copy);
        if (rc != 0) {
            CHECK(rc == -1 && kn_framer_pending(&f) == 0);
            r.lines = (size_t)-1; /* too long: chunkings may fail at different lines */
            break;
        }
    }
    kn_framer_free(&f);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run whole = frame(data, size, size ? size : 1, 0, 1);
    static const size_t chunks[] = { 1, 2, 7, 64 };
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
        struct run r = frame(data, size, chunks[i], 0, 0);
        CHECK(r.lines == whole.lines && r.hash == whole.hash);
    }
    /* A small limit exercises the too-long path. */
    frame(data, size, 5, 64, 0);
    return 0;
}
