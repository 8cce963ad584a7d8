/* The reflector driven by a scripted fake server (fake_server.c), and its
 * out-of-memory paths (alloc_fail.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_fail.h"
#include "fake_server.h"
#include "kn_loop.h"
#include "test.h"

#define CM(n, rv) "{'kind':'ConfigMap','apiVersion':'v1','metadata':{'name':'" n "','namespace':'ns','resourceVersion':'" rv "'}}"
#define LIST(rv, cont, items) "{'kind':'ConfigMapList','apiVersion':'v1','metadata':{'resourceVersion':'" rv "'" cont "},'items':[" items "]}"
#define EV(t, obj) "{'type':'" t "','object':" obj "}"
#define GONE EV("ERROR", "{'kind':'Status','apiVersion':'v1','status':'Failure','message':'too old','reason':'Expired','code':410}")

#define BOOKMARK(rv) EV("BOOKMARK", "{'kind':'ConfigMap','apiVersion':'v1','metadata':{'resourceVersion':'" rv "'}}")
/* the bookmark that ends a streaming list's initial state */
#define INITIAL_END(rv)                                                                                                \
    EV("BOOKMARK", "{'kind':'ConfigMap','apiVersion':'v1','metadata':{'resourceVersion':'" rv "',"                  \
                   "'annotations':{'k8s.io/initial-events-end':'true'}}}")
/* what an API server whose watch cache lags answers (storage.NewTooLargeResourceVersionError) */
#define TOO_LARGE_STATUS                                                                                              \
    "{'kind':'Status','apiVersion':'v1','metadata':{},'status':'Failure','message':'Timeout: Too large resource "    \
    "version: 20, current: 15','reason':'Timeout','details':{'causes':[{'reason':'ResourceVersionTooLarge',"         \
    "'message':'Too large resource version'}],'retryAfterSeconds':1},'code':504}"
/* the same from servers before 1.19: no cause, only the message */
#define TOO_LARGE_OLD                                                                                                 \
    "{'kind':'Status','apiVersion':'v1','metadata':{},'status':'Failure','message':'Too large resource version: 20, " \
    "current: 15','reason':'Timeout','code':504}"
#define TIMEOUT_STATUS                                                                                                \
    "{'kind':'Status','apiVersion':'v1','metadata':{},'status':'Failure','message':'Timeout: request did not "     \
    "complete within the allotted timeout','reason':'Timeout','code':504}"
#define INVALID_STATUS                                                                                                \
    "{'kind':'Status','apiVersion':'v1','status':'Failure','message':'sendInitialEvents is forbidden for watch "     \
    "unless the WatchList feature gate is enabled','reason':'Invalid','code':422}"

/* The queue as text: "ADD ns/a 1|UPDATE ns/a 2|DELETE ns/b|SYNCED|ERROR: message"; a raw
 * watch's events by their type ("ADDED ns/c 11", "EXPIRED"). */
static void drain(struct kn_queue *q, char *out, size_t cap)
{
    struct kn_qevent *ev;
    static const char *names[] = { "ADD", "UPDATE", "DELETE", "SYNCED", "RAW", "ERROR" };
    out[0] = '\0';
    while ((ev = kn_queue_pop(q))) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s%s%s%s%s%s%s", n ? "|" : "", ev->type == KN_Q_RAW ? ev->raw_type : names[ev->type],
                 ev->obj ? " " : "", ev->obj ? ev->obj->key : "", ev->obj ? " " : "", ev->obj ? ev->obj->rv : "",
                 ev->message ? ": " : "", ev->message ? ev->message : "");
        kn_qevent_free(ev);
    }
}

static struct kn_reflector *new_reflector(struct fake *f, struct kn_queue *q)
{
    return fake_reflector(f, q, FAKE_PAGED);
}

/* A started reflector over a fresh fake server, its queue, and the queue's
 * text after rig_drain. */
struct rig {
    struct fake f;
    struct kn_queue *q;
    struct kn_reflector *r;
    char log[4096];
};

static void rig_start(struct rig *g, enum fake_mode mode, int refuse)
{
    fake_init(&g->f);
    g->q = kn_queue_new();
    g->r = fake_reflector(&g->f, g->q, mode);
    g->f.refuse = refuse;
    kn_reflector_start(g->r);
}

static void rig_end(struct rig *g)
{
    kn_reflector_free(g->r);
    fake_free(&g->f);
    kn_queue_unref(g->q);
}

static const char *rig_drain(struct rig *g)
{
    drain(g->q, g->log, sizeof g->log);
    return g->log;
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = s ? strlen(s) : 0, k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

/* The path of the open request, or "" when none is open. */
static const char *open_path(struct fake *f)
{
    struct fake_req *o = fake_open(f);
    return o ? o->path : "";
}

static void test_paths(void)
{
    struct fake f;
    struct kn_queue *q = kn_queue_new();
    struct kn_reflector *r;
    char log[2048];
    long d1, d2;
    fake_init(&f);
    r = new_reflector(&f, q);
    kn_reflector_start(r);
    CHECK_HAS(fake_open(&f)->path, "limit=2&resourceVersion=0");
    fake_reply(&f, 200, LIST("10", ",'continue':'c1'", CM("a", "5") "," CM("b", "6")), -1);
    CHECK_HAS(fake_open(&f)->path, "continue=c1");
    fake_reply(&f, 200, LIST("11", "", CM("c", "7")), -1);
    drain(q, log, sizeof log);
    CHECK_STR(log, "ADD ns/a 5|ADD ns/b 6|ADD ns/c 7|SYNCED");
    CHECK(kn_reflector_synced(r));
    CHECK_HAS(fake_open(&f)->path, "watch=1");
    CHECK_HAS(fake_open(&f)->path, "resourceVersion=11");
    fake_send(&f, EV("MODIFIED", CM("a", "12")));
    fake_send(&f, EV("DELETED", CM("b", "13")));
    fake_send(&f, EV("BOOKMARK", "{'kind':'ConfigMap','apiVersion':'v1','metadata':{'resourceVersion':'20'}}"));
    drain(q, log, sizeof log);
    CHECK_STR(log, "UPDATE ns/a 12|DELETE ns/b 13");
    /* a watch that ends after events resumes at once from the last version */
    fake_reply(&f, 200, NULL, -1);
    CHECK(fake_next_delay(&f) < 0);
    CHECK_HAS(fake_open(&f)->path, "resourceVersion=20");
    /* one that closes at once backs off, doubling; events reset it */
    fake_reply(&f, 200, NULL, -1);
    d1 = fake_fire(&f);
    CHECK_MSG(d1 >= 400 && d1 <= 1200, "first backoff %ld ms", d1);
    fake_reply(&f, 200, NULL, -1);
    d2 = fake_fire(&f);
    CHECK_MSG(d2 >= 800 && d2 <= 2400, "second backoff %ld ms", d2);
    fake_send(&f, EV("ADDED", CM("d", "21")));
    fake_reply(&f, 200, NULL, -1);
    CHECK(fake_next_delay(&f) < 0);
    fake_reply(&f, 200, NULL, -1);
    d1 = fake_fire(&f);
    CHECK_MSG(d1 >= 400 && d1 <= 1200, "backoff after a reset %ld ms", d1);
    /* 410 as an ERROR event: a consistent relist; vanished objects deleted */
    fake_send(&f, GONE);
    CHECK_HAS(fake_open(&f)->path, "limit=2&resourceVersion=");
    CHECK_LACKS(fake_open(&f)->path, "resourceVersion=2");
    fake_reply(&f, 200, LIST("30", "", CM("a", "12") "," CM("e", "25")), -1);
    drain(q, log, sizeof log);
    CHECK_STR(log, "ADD ns/d 21|ADD ns/e 25|DELETE ns/c 7|DELETE ns/d 21");
    /* 410 as HTTP status, then an expired continue token */
    fake_reply(&f, 410, NULL, -1);
    fake_reply(&f, 200, LIST("31", ",'continue':'c2'", CM("a", "12")), -1);
    fake_reply(&f, 410, NULL, -1);
    CHECK_LACKS(fake_open(&f)->path, "continue=");
    CHECK_LACKS(fake_open(&f)->path, "resourceVersion=3");
    /* 429 waits what Retry-After says; a stall resumes at once */
    fake_reply(&f, 429, NULL, 7);
    CHECK(fake_fire(&f) == 7000);
    fake_reply(&f, 200, LIST("32", "", CM("a", "12") "," CM("e", "25")), -1);
    fake_fail(&f, CURLE_OPERATION_TIMEDOUT, "stalled");
    CHECK(fake_next_delay(&f) < 0);
    CHECK(fake_open(&f) && fake_open(&f)->watch);
    /* 5xx on a watch: back off, then list */
    fake_reply(&f, 503, NULL, -1);
    CHECK(fake_fire(&f) > 0);
    CHECK_LACKS(fake_open(&f)->path, "watch=1");
    /* stop while listing, and in a back-off: nothing open, nothing armed */
    kn_reflector_stop(r);
    CHECK(!fake_open(&f) && fake_next_delay(&f) < 0 && !kn_reflector_running(r));
    kn_reflector_start(r);
    fake_reply(&f, 500, NULL, -1);
    kn_reflector_clear(r);
    CHECK(kn_store_count(kn_reflector_store(r)) == 0 && fake_next_delay(&f) < 0 && fake_open(&f));
    kn_reflector_free(r);
    CHECK(!fake_open(&f));
    drain(q, log, sizeof log);
    fake_free(&f);
    kn_queue_unref(q);
}

/* A streaming list: the initial state comes as events, is announced only at
 * the bookmark that ends it, and the same stream goes on as the watch. */
static void test_streaming(void)
{
    struct rig g;
    struct kn_reflector_stats st;
    struct fake_req *list;
    char rv[64];
    rig_start(&g, FAKE_STREAMING, 0);
    list = fake_open(&g.f);
    CHECK(list && list->watch);
    CHECK_HAS(open_path(&g.f), "sendInitialEvents=true&resourceVersionMatch=NotOlderThan");
    CHECK(ends_with(open_path(&g.f), "&resourceVersion=")); /* none known yet: a consistent read */
    fake_send(&g.f, EV("ADDED", CM("a", "5")));
    fake_send(&g.f, EV("ADDED", CM("b", "6")));
    fake_send(&g.f, BOOKMARK("8")); /* a plain bookmark does not end it */
    CHECK_STR(rig_drain(&g), "");
    CHECK(!kn_reflector_synced(g.r) && kn_store_count(kn_reflector_store(g.r)) == 0);
    fake_send(&g.f, INITIAL_END("10"));
    CHECK_STR(rig_drain(&g), "ADD ns/a 5|ADD ns/b 6|SYNCED");
    CHECK(kn_reflector_synced(g.r) && fake_open(&g.f) == list);
    kn_reflector_stats(g.r, &st);
    CHECK(st.lists == 1 && st.streamed == 1 && st.relists == 0);
    fake_send(&g.f, EV("MODIFIED", CM("a", "11")));
    fake_send(&g.f, BOOKMARK("12"));
    CHECK_STR(rig_drain(&g), "UPDATE ns/a 11");
    kn_reflector_rv(g.r, rv);
    CHECK_STR(rv, "12");
    /* its timeout ends it: a plain watch resumes */
    fake_reply(&g.f, 200, NULL, -1);
    CHECK(fake_next_delay(&g.f) < 0);
    CHECK_LACKS(open_path(&g.f), "sendInitialEvents");
    CHECK_HAS(open_path(&g.f), "resourceVersion=12");
    /* 410: a streaming list again, from the latest; what vanished is deleted */
    fake_send(&g.f, GONE);
    CHECK_HAS(open_path(&g.f), "sendInitialEvents=true");
    CHECK(ends_with(open_path(&g.f), "&resourceVersion="));
    fake_send(&g.f, EV("ADDED", CM("a", "11")));
    fake_send(&g.f, EV("ADDED", CM("c", "13")));
    fake_send(&g.f, INITIAL_END("14"));
    CHECK_STR(rig_drain(&g), "ADD ns/c 13|DELETE ns/b 6");
    kn_reflector_stats(g.r, &st);
    CHECK(st.lists == 2 && st.streamed == 2 && st.relists == 1);
    /* an error relists from the version known; a list cut before its
     * bookmark is dropped and the next one starts over */
    fake_reply(&g.f, 503, NULL, -1);
    CHECK(fake_fire(&g.f) > 0);
    CHECK_HAS(open_path(&g.f), "sendInitialEvents=true");
    CHECK_HAS(open_path(&g.f), "resourceVersion=14");
    fake_send(&g.f, EV("ADDED", CM("d", "15")));
    fake_fail(&g.f, CURLE_RECV_ERROR, "connection reset");
    CHECK(fake_fire(&g.f) > 0);
    CHECK_HAS(open_path(&g.f), "sendInitialEvents=true");
    fake_send(&g.f, EV("ADDED", CM("a", "11")));
    fake_send(&g.f, EV("ADDED", CM("c", "13")));
    fake_send(&g.f, INITIAL_END("15"));
    CHECK_LACKS(rig_drain(&g), "ns/d");
    CHECK_HAS(g.log, "connection reset");
    CHECK(kn_store_count(kn_reflector_store(g.r)) == 2);
    rig_end(&g);
}

/* A server without streaming lists (WatchList off: 422; older: 400) gets
 * pages at once, quietly, and from then on only pages. */
static void test_streaming_fallback(void)
{
    static const long codes[] = { 422, 400 };
    for (int i = 0; i < 2; i++) {
        struct rig g;
        rig_start(&g, FAKE_STREAMING, 0);
        CHECK_HAS(open_path(&g.f), "sendInitialEvents=true");
        fake_reply(&g.f, codes[i], i ? NULL : INVALID_STATUS, -1);
        CHECK_MSG(fake_open(&g.f) && !fake_open(&g.f)->watch && fake_next_delay(&g.f) < 0,
                  "HTTP %ld: no paged list at once", codes[i]);
        CHECK_HAS(open_path(&g.f), "limit=2&resourceVersion=0");
        fake_reply(&g.f, 200, LIST("10", "", CM("a", "5")), -1);
        CHECK_STR(rig_drain(&g), "ADD ns/a 5|SYNCED");
        CHECK_LACKS(open_path(&g.f), "sendInitialEvents");
        CHECK_HAS(open_path(&g.f), "resourceVersion=10");
        fake_send(&g.f, GONE); /* the relist is in pages too */
        CHECK(fake_open(&g.f) && !fake_open(&g.f)->watch);
        CHECK_LACKS(open_path(&g.f), "sendInitialEvents");
        rig_end(&g);
    }
}

/* "Too large resource version" (the server's watch cache lags behind the
 * version asked for): as client-go, the version is given up for a list from
 * the latest. Before, a watch relisted from the same version and a list
 * retried it, for as long as the cache lagged (for ever after an etcd
 * restore), and a raw watch resumed from it. */
static void test_too_large(void)
{
    struct rig g;
    rig_start(&g, FAKE_PAGED, 0);
    fake_reply(&g.f, 200, LIST("10", "", CM("a", "5")), -1);
    rig_drain(&g);
    /* a watch told so backs off, then lists from the latest */
    fake_reply(&g.f, 504, TOO_LARGE_STATUS, -1);
    CHECK(!fake_open(&g.f) && fake_fire(&g.f) > 0);
    CHECK(fake_open(&g.f) && !fake_open(&g.f)->watch);
    CHECK(ends_with(open_path(&g.f), "&resourceVersion="));
    CHECK_HAS(rig_drain(&g), "ERROR: watch /api/v1/configmaps: resourceVersion 10 is newer than the server can serve");
    fake_reply(&g.f, 200, LIST("20", "", CM("a", "5") "," CM("b", "16")), -1);
    CHECK_STR(rig_drain(&g), "ADD ns/b 16");
    /* the same as an ERROR event, in the form of servers before 1.19 */
    CHECK_HAS(open_path(&g.f), "resourceVersion=20");
    fake_send(&g.f, EV("ERROR", TOO_LARGE_OLD));
    CHECK(!fake_open(&g.f) && fake_fire(&g.f) > 0);
    CHECK(ends_with(open_path(&g.f), "&resourceVersion="));
    fake_reply(&g.f, 200, LIST("21", "", CM("a", "5") "," CM("b", "16")), -1);
    /* a list at a version the server does not have yet: at once from the latest */
    fake_reply(&g.f, 503, NULL, -1);
    CHECK(fake_fire(&g.f) > 0);
    CHECK_HAS(open_path(&g.f), "resourceVersion=21");
    fake_reply(&g.f, 504, TOO_LARGE_STATUS, -1);
    CHECK(fake_open(&g.f) && !fake_open(&g.f)->watch && fake_next_delay(&g.f) < 0);
    CHECK(ends_with(open_path(&g.f), "&resourceVersion="));
    /* a consistent read told so (a cache that serves those lags too) only waits */
    fake_reply(&g.f, 504, TOO_LARGE_STATUS, -1);
    CHECK(!fake_open(&g.f) && fake_fire(&g.f) > 0);
    CHECK(ends_with(open_path(&g.f), "&resourceVersion="));
    fake_reply(&g.f, 200, LIST("22", "", CM("a", "5") "," CM("b", "16")), -1);
    /* a plain timeout is no version trouble: the relist keeps the version */
    fake_reply(&g.f, 504, TIMEOUT_STATUS, -1);
    CHECK(fake_fire(&g.f) > 0);
    CHECK_HAS(open_path(&g.f), "resourceVersion=22");
    CHECK_HAS(rig_drain(&g), "ERROR: watch /api/v1/configmaps: Timeout: request did not complete");
    rig_end(&g);

    /* a streaming list from a version told so, as HTTP or as an event: at once from the latest */
    rig_start(&g, FAKE_STREAMING, 0);
    fake_send(&g.f, EV("ADDED", CM("a", "5")));
    fake_send(&g.f, INITIAL_END("10"));
    for (int as_event = 0; as_event < 2; as_event++) {
        fake_reply(&g.f, 503, NULL, -1);
        CHECK(fake_fire(&g.f) > 0);
        CHECK_HAS(open_path(&g.f), "sendInitialEvents=true");
        CHECK_HAS(open_path(&g.f), "resourceVersion=10");
        if (as_event)
            fake_send(&g.f, EV("ERROR", TOO_LARGE_STATUS));
        else
            fake_reply(&g.f, 504, TOO_LARGE_STATUS, -1);
        CHECK_MSG(fake_next_delay(&g.f) < 0, "as_event=%d: a wait", as_event);
        CHECK_HAS(open_path(&g.f), "sendInitialEvents=true");
        CHECK_MSG(ends_with(open_path(&g.f), "&resourceVersion="), "as_event=%d: %s", as_event, open_path(&g.f));
        fake_send(&g.f, EV("ADDED", CM("a", "5")));
        fake_send(&g.f, INITIAL_END("10"));
    }
    CHECK_HAS(rig_drain(&g), "ERROR: list /api/v1/configmaps: resourceVersion 10 is newer than the server can serve");
    rig_end(&g);

    /* a raw watch is told as of an expired version, and goes on from the latest */
    rig_start(&g, FAKE_RAW, 0);
    CHECK_HAS(open_path(&g.f), "resourceVersion=10");
    fake_send(&g.f, EV("ERROR", TOO_LARGE_STATUS));
    CHECK_HAS(rig_drain(&g), "|EXPIRED");
    CHECK(!fake_open(&g.f) && fake_fire(&g.f) > 0);
    CHECK_HAS(open_path(&g.f), "limit=1");
    CHECK(ends_with(open_path(&g.f), "&resourceVersion="));
    fake_reply(&g.f, 200, LIST("20", "", CM("a", "5")), -1);
    CHECK_HAS(open_path(&g.f), "resourceVersion=20");
    CHECK(fake_open(&g.f) && fake_open(&g.f)->watch);
    rig_end(&g);
}

/* A raw watch's version expires (410 as an ERROR event or as HTTP): it says
 * EXPIRED and goes on from a version it lists for. */
static void test_raw_expired(void)
{
    struct rig g;
    rig_start(&g, FAKE_RAW, 0);
    CHECK(fake_open(&g.f) && fake_open(&g.f)->watch);
    CHECK_HAS(open_path(&g.f), "resourceVersion=10");
    fake_send(&g.f, EV("ADDED", CM("c", "11")));
    fake_send(&g.f, GONE);
    CHECK_STR(rig_drain(&g), "ADDED ns/c 11|EXPIRED");
    CHECK(fake_open(&g.f) && !fake_open(&g.f)->watch && fake_next_delay(&g.f) < 0);
    CHECK_HAS(open_path(&g.f), "?limit=1&resourceVersion=");
    CHECK(ends_with(open_path(&g.f), "&resourceVersion="));
    fake_reply(&g.f, 200, LIST("20", ",'continue':'more'", CM("a", "12")), -1); /* only its version counts */
    CHECK_STR(rig_drain(&g), "");
    CHECK(fake_open(&g.f) && fake_open(&g.f)->watch);
    CHECK_HAS(open_path(&g.f), "resourceVersion=20");
    fake_reply(&g.f, 410, NULL, -1);
    CHECK_STR(rig_drain(&g), "EXPIRED");
    CHECK(ends_with(open_path(&g.f), "&resourceVersion="));
    fake_reply(&g.f, 200, LIST("30", "", ""), -1);
    CHECK_HAS(open_path(&g.f), "resourceVersion=30");
    rig_end(&g);
}

/* Where a reflector stands when it is stopped or cleared. */
enum at { AT_LIST, AT_NEXT_PAGE, AT_STREAMING_LIST, AT_WATCH, AT_BACKOFF, AT_STOPPED };
static const char *const at_name[] = { "list", "next page", "streaming list", "watch", "backoff", "stopped" };

static void bring(struct rig *g, enum at at)
{
    rig_start(g, at == AT_STREAMING_LIST ? FAKE_STREAMING : FAKE_PAGED, 0);
    if (at == AT_STREAMING_LIST)
        fake_send(&g->f, EV("ADDED", CM("b", "6")));
    else if (at == AT_NEXT_PAGE)
        fake_reply(&g->f, 200, LIST("10", ",'continue':'c1'", CM("a", "5") "," CM("b", "6")), -1);
    else if (at != AT_LIST)
        fake_reply(&g->f, 200, LIST("10", "", CM("a", "5") "," CM("b", "6")), -1);
    if (at == AT_BACKOFF)
        fake_reply(&g->f, 503, NULL, -1);
    if (at == AT_STOPPED)
        kn_reflector_stop(g->r);
}

/* Answers the open list (pages or streaming) with a and c at 12. */
static void serve_list(struct fake *f)
{
    struct fake_req *o = fake_open(f);
    if (o && o->watch) {
        fake_send(f, EV("ADDED", CM("a", "5")));
        fake_send(f, EV("ADDED", CM("c", "7")));
        fake_send(f, INITIAL_END("12"));
    } else if (o) {
        fake_reply(f, 200, LIST("12", "", CM("a", "5") "," CM("c", "7")), -1);
    }
}

/* Stop and clear in every state: a stop leaves nothing open or armed and
 * keeps the cache; a clear empties cache and queue and (running) lists again
 * at once; and what an interrupted list had gathered never shows later. */
static void test_stop_clear_everywhere(void)
{
    for (enum at at = AT_LIST; at <= AT_STOPPED; at++) {
        for (int clear = 0; clear < 2; clear++) {
            struct rig g;
            int synced_before, held, running = at != AT_STOPPED;
            const char *what = clear ? "clear" : "stop";
            bring(&g, at);
            synced_before = kn_reflector_synced(g.r);
            held = (int)kn_store_count(kn_reflector_store(g.r));
            if (clear) {
                kn_reflector_clear(g.r);
                CHECK_MSG(kn_store_count(kn_reflector_store(g.r)) == 0 && !kn_reflector_synced(g.r) &&
                              kn_queue_length(g.q, 0) == 0, "%s at %s: cache or queue kept", what, at_name[at]);
                CHECK_MSG(fake_next_delay(&g.f) < 0 && !fake_open(&g.f) == !running,
                          "%s at %s: a timer armed, or the list %s", what, at_name[at], running ? "missing" : "open");
                CHECK_MSG(!running || ends_with(open_path(&g.f), "resourceVersion=0") ||
                              ends_with(open_path(&g.f), "&resourceVersion="), "%s at %s: %s", what, at_name[at],
                          open_path(&g.f));
            } else {
                kn_reflector_stop(g.r);
                CHECK_MSG(!fake_open(&g.f) && fake_next_delay(&g.f) < 0 && !kn_reflector_running(g.r),
                          "%s at %s: still busy", what, at_name[at]);
                CHECK_MSG((int)kn_store_count(kn_reflector_store(g.r)) == held &&
                              kn_reflector_synced(g.r) == synced_before, "%s at %s: the cache changed", what, at_name[at]);
            }
            if (!clear || !running)
                kn_reflector_start(g.r);
            rig_drain(&g);
            serve_list(&g.f);
            rig_drain(&g);
            if (synced_before && !clear)
                CHECK_MSG(strcmp(g.log, "ADD ns/c 7|DELETE ns/b 6") == 0, "%s at %s: %s", what, at_name[at], g.log);
            else
                CHECK_MSG(strcmp(g.log, "ADD ns/a 5|ADD ns/c 7|SYNCED") == 0, "%s at %s: %s", what, at_name[at], g.log);
            CHECK_MSG(kn_store_count(kn_reflector_store(g.r)) == 2 && fake_open(&g.f) && fake_open(&g.f)->watch,
                      "%s at %s: did not go on", what, at_name[at]);
            rig_end(&g);
        }
    }
}

/* The transport refuses to start a request (start returns NULL): in every
 * state the reflector says so, backs off and tries the same step again. */
static void check_refused(struct rig *g, const char *when)
{
    CHECK_MSG(!fake_open(&g->f) && fake_next_delay(&g->f) > 0, "%s: no back-off", when);
    CHECK_MSG(strstr(rig_drain(g), "the fake refused the request") != NULL, "%s: not told (%s)", when, g->log);
    CHECK_MSG(fake_fire(&g->f) > 0 && fake_open(&g->f), "%s: no retry", when);
}

static void test_refused(void)
{
    struct rig g;
    rig_start(&g, FAKE_PAGED, 1);
    check_refused(&g, "first list");
    CHECK_HAS(open_path(&g.f), "resourceVersion=0");
    g.f.refuse = 1;
    fake_reply(&g.f, 200, LIST("10", ",'continue':'c1'", CM("a", "5") "," CM("b", "6")), -1);
    check_refused(&g, "next page");
    CHECK_LACKS(open_path(&g.f), "continue="); /* the list starts over */
    g.f.refuse = 1;
    fake_reply(&g.f, 200, LIST("10", "", CM("a", "5") "," CM("b", "6")), -1);
    check_refused(&g, "watch after the list");
    CHECK(fake_open(&g.f)->watch);
    CHECK_HAS(open_path(&g.f), "resourceVersion=10");
    g.f.refuse = 1;
    fake_fail(&g.f, CURLE_OPERATION_TIMEDOUT, "stalled");
    check_refused(&g, "resume after a stall");
    CHECK(fake_open(&g.f)->watch);
    CHECK_HAS(open_path(&g.f), "resourceVersion=10");
    g.f.refuse = 1;
    fake_send(&g.f, GONE);
    check_refused(&g, "relist after 410");
    CHECK(ends_with(open_path(&g.f), "&resourceVersion=")); /* still a consistent read */
    rig_end(&g);

    rig_start(&g, FAKE_STREAMING, 1);
    check_refused(&g, "streaming list");
    CHECK_HAS(open_path(&g.f), "sendInitialEvents=true");
    rig_end(&g);

    rig_start(&g, FAKE_RAW, 1);
    check_refused(&g, "raw watch");
    CHECK_HAS(open_path(&g.f), "resourceVersion=10");
    g.f.refuse = 1;
    fake_send(&g.f, GONE);
    CHECK_HAS(rig_drain(&g), "EXPIRED");
    CHECK(!fake_open(&g.f) && fake_fire(&g.f) > 0);
    CHECK_HAS(open_path(&g.f), "limit=1");
    rig_end(&g);
}

/* A DELETED event for an object the cache does not hold (a relist saw it
 * gone first) is no news to handlers that never heard of it. */
static void test_delete_unknown(void)
{
    struct rig g;
    char rv[64];
    rig_start(&g, FAKE_PAGED, 0);
    fake_reply(&g.f, 200, LIST("10", "", CM("a", "5")), -1);
    rig_drain(&g);
    fake_send(&g.f, EV("DELETED", CM("b", "11")));
    CHECK_STR(rig_drain(&g), "");
    kn_reflector_rv(g.r, rv);
    CHECK_STR(rv, "11");
    CHECK(kn_store_count(kn_reflector_store(g.r)) == 1 && fake_open(&g.f));
    rig_end(&g);
}

/* A snapshot that cannot be taken for want of memory changes nothing: the
 * notifications stay as they were, or a late handler would hear of changes
 * to objects it was never given. */
static void test_snapshot_oom(void)
{
    struct rig g;
    struct kn_obj **objs;
    unsigned long long seq;
    size_t n;
    rig_start(&g, FAKE_PAGED, 0);
    kn_reflector_set_notify(g.r, 0);
    fake_reply(&g.f, 200, LIST("10", "", CM("a", "5")), -1);
    rig_drain(&g);
    af_arm(1);
    objs = kn_reflector_snapshot(g.r, 7, &n, &seq);
    af_disarm();
    CHECK(objs == NULL && n == 0);
    fake_send(&g.f, EV("MODIFIED", CM("a", "11")));
    CHECK_STR(rig_drain(&g), "");
    objs = kn_reflector_snapshot(g.r, 7, &n, &seq);
    CHECK(objs && n == 1);
    kn_store_release(objs, n);
    fake_send(&g.f, EV("MODIFIED", CM("a", "12")));
    CHECK_STR(rig_drain(&g), "UPDATE ns/a 12");
    rig_end(&g);
}

static void run_fn(void *ud)
{
    (*(int *)ud)++;
}

static void test_loop_call_oom(void)
{
    struct kn_err err;
    struct kn_loop *l = kn_loop_new(&err);
    int ran = 0;
    if (!l)
        return;
    for (unsigned long n = 1; n <= 3; n++) {
        af_arm(n);
        kn_loop_call(l, run_fn, &ran); /* the old kn_loop_call waited for ever here */
        af_disarm();
    }
    CHECK(ran == 3);
    kn_loop_free(l);
}

void test_reflector_oom(void); /* spec/c/test_reflector_oom.c */

void test_reflector(void)
{
    test_paths();
    test_streaming();
    test_streaming_fallback();
    test_too_large();
    test_raw_expired();
    test_stop_clear_everywhere();
    test_refused();
    test_delete_unknown();
    test_snapshot_oom();
    test_reflector_oom();
    test_loop_call_oom();
}
