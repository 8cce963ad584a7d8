/* kn_watch: cutting a watch stream into lines and lines into events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kn_watch.h"
#include "obj_fixtures.h"
#include "test.h"

void test_watch(void);

static char *dq(const char *sq)
{
    char *s = strdup(sq);
    for (char *c = s; *c; c++)
        if (*c == '\'')
            *c = '"';
    return s;
}

/* ---- framing ---- */

struct lines {
    char *text[32];
    int n;
    int stop_after; /* the callback answers 7 after this many lines; 0: never */
};

static int collect(void *ud, const char *line, size_t len)
{
    struct lines *l = ud;
    char *copy = malloc(len + 1);
    memcpy(copy, line, len); /* len bytes exactly: a read past them is ASan's to see */
    copy[len] = '\0';
    if (l->n < (int)(sizeof l->text / sizeof *l->text))
        l->text[l->n++] = copy;
    else
        free(copy);
    return l->stop_after && l->n >= l->stop_after ? 7 : 0;
}

static void lines_free(struct lines *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->text[i]);
    l->n = 0;
}

/* Feeds s in chunks of the sizes next_size gives, each chunk a heap copy of
 * exactly its bytes. Returns the last feed's value. */
static int feed_chunks(struct kn_framer *f, const char *s, size_t n, size_t (*next_size)(void *, size_t), void *st,
                       struct lines *out, struct kn_err *err)
{
    size_t at = 0;
    int rc = 0;
    while (at < n && rc == 0) {
        size_t k = next_size(st, n - at);
        char *chunk = malloc(k ? k : 1);
        if (k > n - at)
            k = n - at;
        memcpy(chunk, s + at, k);
        rc = kn_framer_feed(f, chunk, k, collect, out, err);
        free(chunk);
        at += k;
    }
    return rc;
}

static size_t fixed_size(void *st, size_t left)
{
    size_t k = *(size_t *)st;
    return k < left ? k : left;
}

/* A deterministic generator, local to the test. */
static size_t random_size(void *st, size_t left)
{
    unsigned *x = st;
    size_t k;
    *x = *x * 1103515245u + 12345u;
    k = 1 + (*x >> 16) % 300;
    return k < left ? k : left;
}

struct split {
    size_t at;
    int first;
};

static size_t split_size(void *st, size_t left)
{
    struct split *sp = st;
    if (sp->first) {
        sp->first = 0;
        return sp->at < left ? sp->at : left;
    }
    return left;
}

static int same_lines(const struct lines *a, const struct lines *b)
{
    if (a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->text[i], b->text[i]) != 0)
            return 0;
    return 1;
}

/* What a watch sends: events with \n, one with \r\n, keep-alive blank lines. */
static char *stream_text(size_t *n)
{
    static const char *const parts[] = {
        "{'type':'ADDED','object':" CM_WITH_MF "}\n",
        "\n",
        "{'type':'MODIFIED','object':" POD "}\r\n",
        "\r\n",
        "{'type':'BOOKMARK','object':{'kind':'Pod','apiVersion':'v1','metadata':{'resourceVersion':'90300',"
        "'annotations':{'k8s.io/initial-events-end':'true'}}}}\n",
        "\n\n",
        "{'type':'DELETED','object':" NAMESPACE "}\n",
        "{'type':'ERROR','object':{'kind':'Status','apiVersion':'v1','metadata':{},'status':'Failure',"
        "'message':'too old resource version: 48213 (90300)','reason':'Expired','code':410}}\n",
    };
    size_t total = 0;
    char *s;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        total += strlen(parts[i]);
    s = malloc(total + 1);
    s[0] = '\0';
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        strcat(s, parts[i]);
    for (char *c = s; *c; c++)
        if (*c == '\'')
            *c = '"';
    *n = total;
    return s;
}

static void test_framer_splits(void)
{
    size_t n;
    char *s = stream_text(&n);
    struct kn_framer f = {0};
    struct kn_err err = {0};
    struct lines want = {0}, got = {0};
    int rc;

    rc = kn_framer_feed(&f, s, n, collect, &want, &err);
    CHECK(rc == 0);
    CHECK(want.n == 5);
    CHECK(kn_framer_pending(&f) == 0);
    for (int i = 0; i < want.n; i++) {
        CHECK_MSG(want.text[i][0] == '{' && want.text[i][strlen(want.text[i]) - 1] == '}', "line %d is \"%s\"", i,
                  want.text[i]);
    }

    /* Every place a chunk boundary can fall. */
    for (size_t at = 0; at <= n; at++) {
        struct split sp = { at, 1 };
        rc = feed_chunks(&f, s, n, split_size, &sp, &got, &err);
        CHECK_MSG(rc == 0 && same_lines(&want, &got) && kn_framer_pending(&f) == 0, "split at byte %zu", at);
        lines_free(&got);
    }
    for (size_t k = 1; k <= 7; k++) {
        rc = feed_chunks(&f, s, n, fixed_size, &k, &got, &err);
        CHECK_MSG(rc == 0 && same_lines(&want, &got) && kn_framer_pending(&f) == 0, "chunks of %zu bytes", k);
        lines_free(&got);
    }
    for (unsigned seed = 1; seed <= 50; seed++) {
        unsigned x = seed;
        rc = feed_chunks(&f, s, n, random_size, &x, &got, &err);
        CHECK_MSG(rc == 0 && same_lines(&want, &got) && kn_framer_pending(&f) == 0, "random chunks, seed %u", seed);
        lines_free(&got);
    }
    lines_free(&want);
    kn_framer_free(&f);
    free(s);
}

static void test_framer_edges(void)
{
    struct kn_framer f = {0};
    struct kn_err err = {0};
    struct lines got = {0};

    /* Pending bytes are held and counted until their '\n' comes. */
    CHECK(kn_framer_feed(&f, "abc", 3, collect, &got, &err) == 0);
    CHECK(got.n == 0 && kn_framer_pending(&f) == 3);
    CHECK(kn_framer_feed(&f, "", 0, collect, &got, &err) == 0);
    CHECK(kn_framer_pending(&f) == 3);
    CHECK(kn_framer_feed(&f, "de\nfg", 5, collect, &got, &err) == 0);
    CHECK(got.n == 1 && strcmp(got.text[0], "abcde") == 0);
    CHECK(kn_framer_pending(&f) == 2);
    kn_framer_reset(&f);
    CHECK(kn_framer_pending(&f) == 0);
    CHECK(kn_framer_feed(&f, "h\n", 2, collect, &got, &err) == 0);
    CHECK(got.n == 2 && strcmp(got.text[1], "h") == 0);
    lines_free(&got);

    /* One '\r' goes, and only before '\n'; a '\r' split from its '\n' too. */
    CHECK(kn_framer_feed(&f, "a\r\r\n\r\nb\rc\n\r", 11, collect, &got, &err) == 0);
    CHECK(kn_framer_feed(&f, "\nd\r", 3, collect, &got, &err) == 0);
    CHECK(kn_framer_feed(&f, "\n", 1, collect, &got, &err) == 0);
    CHECK(got.n == 3);
    if (got.n == 3) {
        CHECK_STR(got.text[0], "a\r");
        CHECK_STR(got.text[1], "b\rc");
        CHECK_STR(got.text[2], "d");
    }
    lines_free(&got);
    CHECK(kn_framer_feed(&f, "\n\n\r\n\n", 5, collect, &got, &err) == 0);
    CHECK(got.n == 0);

    /* max_line counts the bytes before '\n'; at the limit is fine, past it is not. */
    f.max_line = 10;
    CHECK(kn_framer_feed(&f, "0123456789\n", 11, collect, &got, &err) == 0);
    CHECK(got.n == 1);
    CHECK(kn_framer_feed(&f, "0123456789A\n", 12, collect, &got, &err) == -1);
    CHECK_STR(err.reason, "BadEvent");
    CHECK_HAS(err.msg, "longer than 10 bytes");
    CHECK(got.n == 1);
    CHECK(kn_framer_pending(&f) == 0);
    /* Growing past it over several chunks, and without any '\n' at all. */
    CHECK(kn_framer_feed(&f, "01234", 5, collect, &got, &err) == 0);
    CHECK(kn_framer_feed(&f, "56789", 5, collect, &got, &err) == 0);
    CHECK(kn_framer_pending(&f) == 10);
    CHECK(kn_framer_feed(&f, "\n", 1, collect, &got, &err) == 0);
    CHECK(got.n == 2);
    CHECK(kn_framer_feed(&f, "01234", 5, collect, &got, &err) == 0);
    memset(&err, 0, sizeof err);
    CHECK(kn_framer_feed(&f, "56789AB", 7, collect, &got, &err) == -1);
    CHECK_HAS(err.msg, "longer than 10 bytes");
    CHECK(kn_framer_pending(&f) == 0);
    kn_framer_reset(&f);
    CHECK(kn_framer_feed(&f, "0123456789ABCDEF", 16, collect, &got, &err) == -1);
    CHECK(got.n == 2);
    lines_free(&got);
    kn_framer_free(&f);

    /* The default is 64 MiB: a 1 MiB line passes, in one chunk or in pieces. */
    {
        size_t big = (size_t)1 << 20;
        char *line = malloc(big + 1);
        memset(line, 'x', big);
        line[big] = '\n';
        f.max_line = 0;
        CHECK(kn_framer_feed(&f, line, big + 1, collect, &got, &err) == 0);
        for (size_t at = 0; at < big + 1; at += 65536)
            CHECK(kn_framer_feed(&f, line + at, at + 65536 < big + 1 ? 65536 : big + 1 - at, collect, &got, &err) ==
                  0);
        CHECK(got.n == 2 && strlen(got.text[0]) == big && strlen(got.text[1]) == big);
        lines_free(&got);
        free(line);
        kn_framer_free(&f);
    }

    /* A callback's non-zero value stops the feed there. */
    got.stop_after = 2;
    CHECK(kn_framer_feed(&f, "one\ntwo\nthree\n", 14, collect, &got, &err) == 7);
    CHECK(got.n == 2);
    lines_free(&got);
    kn_framer_reset(&f);
    CHECK(kn_framer_feed(&f, "on", 2, collect, &got, &err) == 0);
    CHECK(kn_framer_feed(&f, "e\ntw", 4, collect, &got, &err) == 0);
    CHECK(kn_framer_feed(&f, "o\nthree\n", 8, collect, &got, &err) == 7);
    CHECK(got.n == 2);
    if (got.n == 2)
        CHECK_STR(got.text[1], "two");
    lines_free(&got);
    kn_framer_free(&f);
    kn_framer_free(&f); /* twice is harmless */
}

/* ---- events ---- */

static int parse(const char *sq, const struct kn_normalize *norm, struct kn_watch_event *ev, struct kn_err *err)
{
    char *line = dq(sq);
    size_t n = strlen(line);
    char *exact = malloc(n ? n : 1);
    int rc;
    memcpy(exact, line, n);
    free(line);
    rc = kn_watch_parse(exact, n, norm, ev, err);
    free(exact);
    return rc;
}

static void test_events(void)
{
    struct kn_normalize norm = { "v1", "ConfigMap", 0, 0 };
    struct kn_watch_event ev;
    struct kn_err err = {0};

    CHECK(parse("{'type':'ADDED','object':" CM_WITH_MF "}", &norm, &ev, &err) == 0);
    CHECK(ev.type == KN_EV_ADDED);
    CHECK(ev.obj != NULL);
    CHECK_STR(ev.rv, "48213");
    if (ev.obj) {
        char *want = dq(CM_WITHOUT_MF);
        CHECK_STR(ev.obj->json, want);
        CHECK_STR(ev.obj->key, "shop/app-config");
        free(want);
    }
    kn_obj_unref(ev.obj);

    /* Members in any order, whitespace around them. */
    CHECK(parse(" { 'object' : " POD " ,\n 'type' : 'MODIFIED' } ", &norm, &ev, &err) == 0);
    CHECK(ev.type == KN_EV_MODIFIED);
    CHECK_STR(ev.rv, "90210");
    CHECK(ev.obj && strcmp(ev.obj->key, "shop/web-7d9f8-abcde") == 0);
    CHECK(ev.obj && strncmp(ev.obj->json, "{\"kind\":\"Pod\"", 13) == 0); /* its own kind stays */
    kn_obj_unref(ev.obj);

    CHECK(parse("{'type':'DELETED','object':" NAMESPACE "}", &norm, &ev, &err) == 0);
    CHECK(ev.type == KN_EV_DELETED);
    CHECK_STR(ev.rv, "301");
    CHECK(ev.obj && strcmp(ev.obj->key, "team-a") == 0);
    kn_obj_unref(ev.obj);

    /* The normalization reaches the object: a metadata-only informer. */
    norm.metadata_only = 1;
    CHECK(parse("{'type':'ADDED','object':{'metadata':{'name':'a','namespace':'b','resourceVersion':'5'},"
                "'data':{'k':'v'}}}",
                &norm, &ev, &err) == 0);
    CHECK(ev.obj != NULL);
    if (ev.obj)
        CHECK_STR(ev.obj->json, "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\","
                                "\"namespace\":\"b\",\"resourceVersion\":\"5\"}}");
    CHECK_STR(ev.rv, "5");
    kn_obj_unref(ev.obj);
    norm.metadata_only = 0;

    /* A bookmark: a resourceVersion, no object for the store. */
    CHECK(parse("{'type':'BOOKMARK','object':{'kind':'ConfigMap','apiVersion':'v1','metadata':"
                "{'resourceVersion':'48300','creationTimestamp':null}}}",
                &norm, &ev, &err) == 0);
    CHECK(ev.type == KN_EV_BOOKMARK);
    CHECK(ev.obj == NULL);
    CHECK_STR(ev.rv, "48300");
    CHECK(ev.initial_events_end == 0);
    CHECK(parse("{'type':'BOOKMARK','object':{'kind':'ConfigMap','apiVersion':'v1','metadata':"
                "{'resourceVersion':'48301','creationTimestamp':null,'annotations':"
                "{'k8s.io/initial-events-end':'true'}}}}",
                &norm, &ev, &err) == 0);
    CHECK(ev.type == KN_EV_BOOKMARK && ev.obj == NULL);
    CHECK_STR(ev.rv, "48301");
    CHECK(ev.initial_events_end == 1);
    CHECK(parse("{'type':'BOOKMARK','object':{'metadata':{'resourceVersion':'1',"
                "'annotations':{'k8s.io/initial-events-end':'false'}}}}",
                &norm, &ev, &err) == 0);
    CHECK(ev.initial_events_end == 0);

    /* ERROR: the Status that tells the reflector to relist. */
    CHECK(parse("{'type':'ERROR','object':{'kind':'Status','apiVersion':'v1','metadata':{},'status':'Failure',"
                "'message':'too old resource version: 48213 (90300)','reason':'Expired','code':410}}",
                &norm, &ev, &err) == 0);
    CHECK(ev.type == KN_EV_ERROR);
    CHECK(ev.obj == NULL);
    CHECK(ev.code == 410);
    CHECK_STR(ev.reason, "Expired");
    CHECK_STR(ev.message, "too old resource version: 48213 (90300)");
    CHECK_STR(ev.rv, "");
    CHECK(parse("{'type':'ERROR','object':{'kind':'Status','code':500.5,'message':'a\\u00e9\\nb'}}", &norm, &ev,
                &err) == 0);
    CHECK(ev.code == 0);
    CHECK_STR(ev.reason, "");
    CHECK_STR(ev.message, "a\xc3\xa9\nb");
    CHECK(parse("{'type':'ERROR','object':{'code':99999999999999999999,'reason':7}}", &norm, &ev, &err) == 0);
    CHECK(ev.code == 0); /* out of range: not kept, and no overflow for UBSan to see */
    CHECK_STR(ev.reason, "");
}

static void test_event_truncation(void)
{
    struct kn_watch_event ev;
    struct kn_err err = {0};
    char line[4096], big[1200];
    size_t n = 0;

    /* Long texts are cut at a character boundary: 'é' is two bytes. */
    for (int i = 0; i < 500; i++) {
        big[n++] = '\xc3';
        big[n++] = '\xa9';
    }
    big[n] = '\0';
    snprintf(line, sizeof line,
             "{\"type\":\"ERROR\",\"object\":{\"code\":410,\"reason\":\"%.200s\",\"message\":\"%s\"}}", big, big);
    CHECK(kn_watch_parse(line, strlen(line), NULL, &ev, &err) == 0);
    CHECK(strlen(ev.reason) == 62);
    CHECK(strlen(ev.message) == 254);
    CHECK(ev.code == 410);
    memset(line, 0, sizeof line);
    snprintf(line, sizeof line, "{\"type\":\"ERROR\",\"object\":{\"code\":410,\"message\":\"x%s\"}}", big);
    CHECK(kn_watch_parse(line, strlen(line), NULL, &ev, &err) == 0);
    CHECK(strlen(ev.message) == 255);

    /* resourceVersion fits in 63 bytes or the event is refused. */
    {
        char rv63[64], rv64[65];
        memset(rv63, '7', 63);
        rv63[63] = '\0';
        memset(rv64, '7', 64);
        rv64[64] = '\0';
        snprintf(line, sizeof line, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":"
                                    "\"%s\"}}}", rv63);
        CHECK(kn_watch_parse(line, strlen(line), NULL, &ev, &err) == 0);
        CHECK_STR(ev.rv, rv63);
        kn_obj_unref(ev.obj);
        snprintf(line, sizeof line, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":"
                                    "\"%s\"}}}", rv64);
        ev.obj = (struct kn_obj *)&ev; /* whatever was there before */
        CHECK(kn_watch_parse(line, strlen(line), NULL, &ev, &err) == -1);
        CHECK(ev.obj == NULL);
        CHECK_STR(err.reason, "BadEvent");
        CHECK_HAS(err.msg, "64 bytes");
        snprintf(line, sizeof line, "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"%s\"}}}",
                 rv63);
        CHECK(kn_watch_parse(line, strlen(line), NULL, &ev, &err) == 0);
        CHECK_STR(ev.rv, rv63);
        snprintf(line, sizeof line, "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"%s\"}}}",
                 rv64);
        CHECK(kn_watch_parse(line, strlen(line), NULL, &ev, &err) == -1);
        CHECK_HAS(err.msg, "64 bytes");
        snprintf(line, sizeof line,
                 "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"%s%s%s%s%s%s%s\"}}}", rv64,
                 rv64, rv64, rv64, rv64, rv64, rv64);
        CHECK(kn_watch_parse(line, strlen(line), NULL, &ev, &err) == -1);
        CHECK_HAS(err.msg, "448 bytes");
    }
}

static void test_bad_events(void)
{
    static const struct {
        const char *line, *reason, *msg;
    } bad[] = {
        { "", "BadEvent", "not valid JSON" },
        { "garbage", "BadEvent", "not valid JSON" },
        { "{'type':'ADDED','object':{'metadata':{'name':'SECRETNAME'}}", "BadEvent", "not valid JSON" },
        { "[{'type':'ADDED'}]", "BadEvent", "not a JSON object" },
        { "{'object':{'metadata':{'name':'SECRETNAME'}}}", "BadEvent", "no type" },
        { "{'type':1,'object':{}}", "BadEvent", "type that is not a string" },
        { "{'type':'PATCHED','object':{'metadata':{'name':'SECRETNAME'}}}", "BadEvent", "unknown type \"PATCHED\"" },
        { "{'type':'added','object':{}}", "BadEvent", "unknown type \"added\"" },
        { "{'type':'ADDED\\n\\u0000x','object':{}}", "BadEvent", "unknown type \"ADDED\\n\\u0000x\"" },
        { "{'type':'ADDED'}", "BadEvent", "ADDED event has no object" },
        { "{'type':'DELETED','object':null}", "BadEvent", "DELETED event has an object that is not a JSON object" },
        { "{'type':'ERROR','object':'SECRETNAME'}", "BadEvent", "ERROR event has an object that is not" },
        { "{'type':'BOOKMARK','object':{}}", "BadEvent", "no metadata.resourceVersion" },
        { "{'type':'BOOKMARK','object':{'metadata':{'resourceVersion':5}}}", "BadEvent",
          "no metadata.resourceVersion" },
        { "{'type':'ADDED','object':{'metadata':{'namespace':'SECRETNAME'}}}", "BadObject",
          "ADDED event: object has no metadata.name" },
        { "{'type':'MODIFIED','object':{'metadata':{'name':7},'data':{'k':'SECRETNAME'}}}", "BadObject",
          "MODIFIED event: object has a metadata.name that is not a string" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct kn_watch_event ev;
        struct kn_err err = {0};
        int rc;
        ev.obj = (struct kn_obj *)&ev;
        rc = parse(bad[i].line, NULL, &ev, &err);
        CHECK_MSG(rc == -1 && ev.obj == NULL, "bad event #%zu gave %d", i, rc);
        CHECK_MSG(strcmp(err.reason, bad[i].reason) == 0, "bad event #%zu: reason %s", i, err.reason);
        CHECK_MSG(strstr(err.msg, bad[i].msg) != NULL, "bad event #%zu: message \"%s\" lacks \"%s\"", i, err.msg,
                  bad[i].msg);
        CHECK_LACKS(err.msg, "SECRETNAME");
    }
    {
        /* A type is shown printable and short. */
        struct kn_watch_event ev;
        struct kn_err err = {0};
        char line[600];
        snprintf(line, sizeof line, "{\"type\":\"%0300d\",\"object\":{}}", 0);
        CHECK(kn_watch_parse(line, strlen(line), NULL, &ev, &err) == -1);
        CHECK(strlen(err.msg) < 100);
        snprintf(line, sizeof line, "{\"type\":\"\x7f\xff\",\"object\":{}}");
        CHECK(kn_watch_parse(line, strlen(line), NULL, &ev, &err) == -1);
        CHECK_HAS(err.msg, "\"??\"");
        /* err may be NULL. */
        CHECK(kn_watch_parse("x", 1, NULL, &ev, NULL) == -1);
    }
}

/* The framer and the parser together, as the reflector will use them. */
struct sink {
    const struct kn_normalize *norm;
    int types[8], n, bad;
    int initial_events_end;
    char last_rv[64];
};

static int on_event(void *ud, const char *line, size_t len)
{
    struct sink *s = ud;
    struct kn_watch_event ev;
    struct kn_err err = {0};
    if (kn_watch_parse(line, len, s->norm, &ev, &err) < 0) {
        s->bad++;
        return 0;
    }
    if (s->n < 8)
        s->types[s->n++] = (int)ev.type;
    s->initial_events_end |= ev.initial_events_end;
    if (ev.rv[0])
        memcpy(s->last_rv, ev.rv, sizeof ev.rv);
    kn_obj_unref(ev.obj);
    return ev.type == KN_EV_ERROR ? 1 : 0;
}

static void test_stream(void)
{
    size_t n;
    char *s = stream_text(&n);
    struct kn_normalize norm = { NULL, NULL, 0, 0 };
    struct kn_framer f = {0};
    struct kn_err err = {0};
    for (size_t k = 1; k <= n; k = k < 16 ? k + 1 : k * 3) {
        struct sink sink = { &norm, { 0 }, 0, 0, 0, "" };
        int rc = 0;
        for (size_t at = 0; at < n && rc == 0; at += k)
            rc = kn_framer_feed(&f, s + at, at + k < n ? k : n - at, on_event, &sink, &err);
        CHECK_MSG(rc == 1 && sink.n == 5 && sink.bad == 0, "chunks of %zu: rc %d, %d events, %d bad", k, rc, sink.n,
                  sink.bad);
        CHECK(sink.types[0] == KN_EV_ADDED && sink.types[1] == KN_EV_MODIFIED && sink.types[2] == KN_EV_BOOKMARK &&
              sink.types[3] == KN_EV_DELETED && sink.types[4] == KN_EV_ERROR);
        CHECK(sink.initial_events_end == 1);
        CHECK_STR(sink.last_rv, "301");
        kn_framer_reset(&f);
    }
    kn_framer_free(&f);
    free(s);
}

void test_watch(void)
{
    test_framer_splits();
    test_framer_edges();
    test_events();
    test_event_truncation();
    test_bad_events();
    test_stream();
}
