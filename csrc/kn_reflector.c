/* The reflector's state machine. Its states carry their own data (after
 * kube-rs's watcher.rs): a list in progress knows its continue token and
 * whether it must be a consistent read; a watch knows its stream, when it
 * began and what went wrong with it; a back-off knows what comes after it.
 * Where events go is a sink: an informer's store and notifications, or a raw
 * watch's queue (sink_store, sink_raw below). Requests and timers go through
 * a struct kn_rtransport, so that the C tests can play the server.
 *
 * Out of memory: a change the store cannot take, or one the handlers could
 * not hear of (the queue event is made first), is not made; the reflector
 * reports it and lists again, which brings store and handlers back in step.
 * Retry timers live inside the reflector, so a retry is never lost. */
#include "kn_reflector.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kn_json.h"
#include "kn_list.h"
#include "kn_reflector_client.h"
#include "kn_watch.h"

enum phase { IDLE, LISTING, WATCHING, BACKOFF, STOPPED };
enum next { NEXT_LIST, NEXT_WATCH };

/* One stream (a watch, or a streaming list, which is a watch) and what it saw. */
struct run {
    void *stream;
    double started;
    unsigned long events;
    int expired;          /* an ERROR event with code 410 came */
    int too_large;        /* an ERROR event said the version is newer than the server can serve */
    int broken;           /* a line that was not an event, or an ERROR event */
    int desync;           /* the store or the queue could not follow (out of memory): list again */
};

struct state {
    enum phase phase;
    union {
        struct {
            int consistent;   /* the last version expired: list from "" (a consistent read) */
            int streaming;    /* a watch with sendInitialEvents; else pages */
            char *cont;       /* pages: the continue token of the next page */
            int incomplete;   /* an item could not be kept (out of memory): this list fails */
            struct run run;   /* streaming only */
            void *stream;     /* pages: the page request */
        } listing;
        struct run watching;
        struct {
            enum next next;
            int consistent;   /* for a list: as above */
        } backoff;
    } u;
};

struct sink;
struct sink_ops {
    int lists_in_full;    /* 0: a list only gives a version to watch from (a raw watch) */
    int may_stream;       /* lists may come as streaming lists */
    int relist_on_error;  /* an error status ends a watch with a relist (0: the watch resumes) */
    int starts_listing;   /* 0: the first step is a watch (from the start version, or now) */
    /* an item of a list, or an initial event of a streaming one: -1 if it could not be kept */
    int (*item)(struct kn_reflector *r, const struct kn_watch_event *ev);
    /* the list is complete: -1 if the store could not take it all */
    int (*listed)(struct kn_reflector *r, const char *rv);
    /* a watch event (not ERROR): -1 if it could not be applied and announced */
    int (*event)(struct kn_reflector *r, const struct kn_watch_event *ev);
    void (*expired)(struct kn_reflector *r);
};

struct sink {
    const struct sink_ops *ops;
    struct kn_store *store;     /* informer: the cache */
    struct kn_store *pending;   /* informer: a list being gathered */
    int bookmarks;              /* raw: pass BOOKMARK events on */
};

struct kn_reflector {
    struct kn_rtransport t;
    struct kn_queue *q;
    unsigned long id;
    struct kn_reflector_opts o;     /* strings below are our copies */
    char *path, *what, *label_selector, *field_selector, *api_version, *kind;
    struct sink sink;
    unsigned seed;

    /* shared with other threads, under mu */
    pthread_mutex_t mu;
    char rv[64];                    /* last resourceVersion seen */
    int synced, running;
    struct kn_reflector_stats stats;

    /* the reflector's thread only */
    struct state st;
    struct kn_timer retry;          /* armed in BACKOFF */
    struct kn_timer resync_timer;
    int resync_armed;
    struct kn_framer framer;
    int no_streaming;               /* learned: the server refused sendInitialEvents */
    double backoff;                 /* seconds; 0: not backing off */
    int notify;                     /* which of add/update/delete to queue: bits 1 << KN_Q_* */
    unsigned long long seq;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void count(struct kn_reflector *r, unsigned long *field)
{
    pthread_mutex_lock(&r->mu);
    (*field)++;
    pthread_mutex_unlock(&r->mu);
}

/* ---- queue ---- */

/* The event of a notification, made before the store changes: a change that
 * no handler could hear of is not made. 0 with *ev (NULL when nobody
 * listens), or -1 when out of memory. */
static int prepare(struct kn_reflector *r, enum kn_qtype type, struct kn_qevent **ev)
{
    *ev = NULL;
    if (type != KN_Q_SYNCED && type != KN_Q_RAW && !(r->notify & (1 << type)))
        return 0;
    *ev = kn_qevent_new(type, r->id);
    return *ev ? 0 : -1;
}

/* Pushes a prepared event, which takes the references; without one they are dropped. */
static void deliver(struct kn_reflector *r, struct kn_qevent *ev, struct kn_obj *old, struct kn_obj *obj, int unknown)
{
    if (!ev) {
        kn_obj_unref(old);
        kn_obj_unref(obj);
        return;
    }
    ev->old = old;
    ev->obj = obj;
    ev->final_state_unknown = unknown;
    ev->seq = ++r->seq;
    kn_queue_push(r->q, ev);
}

/* Background failures go to kinformer.on_error through the queue. */
static void report(struct kn_reflector *r, const char *fmt, ...) KN_PRINTF(2, 3);
static void report(struct kn_reflector *r, const char *fmt, ...)
{
    struct kn_qevent *ev = kn_qevent_new(KN_Q_ERROR, r->id);
    char msg[KN_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    count(r, &r->stats.errors); /* counted even when memory is too short to say more */
    if (!ev)
        return;
    ev->message = strdup(msg);
    if (!ev->message) {
        kn_qevent_free(ev);
        return;
    }
    ev->seq = ++r->seq;
    kn_queue_push(r->q, ev);
}

static void set_rv(struct kn_reflector *r, const char *rv)
{
    if (!rv || !*rv)
        return;
    pthread_mutex_lock(&r->mu);
    snprintf(r->rv, sizeof r->rv, "%s", rv);
    pthread_mutex_unlock(&r->mu);
}

/* The message of a Status body, or the HTTP code. */
static void status_text(const char *body, size_t len, long status, char *out, size_t cap)
{
    struct kn_json j = {0};
    snprintf(out, cap, "HTTP %ld", status);
    if (len && kn_json_parse(&j, body, len) == 0) {
        char *m = kn_json_string(&j, kn_json_member(&j, 0, "message"), NULL);
        char *reason = kn_json_string(&j, kn_json_member(&j, 0, "reason"), NULL);
        if (m)
            snprintf(out, cap, "%s (%s, HTTP %ld)", m, reason ? reason : "", status);
        free(m);
        free(reason);
    }
    kn_json_free(&j);
}

/* An error answer saying that the version asked for is newer than the
 * server can serve (when memory is too short to read it, the answer is taken
 * as any other error and the request is tried again later). */
static int body_too_large(long status, const char *body, size_t len)
{
    struct kn_json j = {0};
    int yes = status >= 400 && len && kn_json_parse(&j, body, len) == 0 && kn_status_rv_too_large(&j, 0);
    kn_json_free(&j);
    return yes;
}

/* ---- URLs ---- */

struct url {
    struct kn_buf b;
    int query, oom;
};

static void put(struct url *u, const void *p, size_t n)
{
    if (!u->oom && kn_buf_append(&u->b, p, n) < 0)
        u->oom = 1;
}

static void add_param(struct url *u, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!value)
        return;
    put(u, u->query ? "&" : "?", 1);
    u->query = 1;
    put(u, name, strlen(name));
    put(u, "=", 1);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            put(u, p, 1);
        } else {
            char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
            put(u, e, 3);
        }
    }
}

/* ---- states ---- */

static void go(struct kn_reflector *r, enum next next, int consistent);

/* Leaves the current state: its stream cancelled, its timer disarmed, its data freed. */
static void leave(struct kn_reflector *r)
{
    struct state old = r->st;
    void *stream = NULL;
    r->st.phase = IDLE;
    switch (old.phase) {
    case LISTING:
        free(old.u.listing.cont);
        stream = old.u.listing.streaming ? old.u.listing.run.stream : old.u.listing.stream;
        break;
    case WATCHING:
        stream = old.u.watching.stream;
        break;
    case BACKOFF:
        r->t.disarm(r->t.ud, &r->retry);
        break;
    default:
        break;
    }
    if (stream)
        r->t.cancel(r->t.ud, stream); /* its done sees IDLE (or "Cancelled") and does nothing */
}

static void retry_due(void *ud)
{
    struct kn_reflector *r = ud;
    if (r->st.phase != BACKOFF)
        return;
    go(r, r->st.u.backoff.next, r->st.u.backoff.consistent);
}

static void wait_then(struct kn_reflector *r, double delay, enum next next, int consistent)
{
    leave(r);
    r->st.phase = BACKOFF;
    r->st.u.backoff.next = next;
    r->st.u.backoff.consistent = consistent;
    r->t.arm(r->t.ud, &r->retry, (long)(delay * 1e3), retry_due, r);
}

/* Jittered exponential backoff: under a second at first, doubling, 30 s at most. */
static void back_off(struct kn_reflector *r, enum next next, int consistent, int retry_after)
{
    double d;
    r->backoff = r->backoff > 0 ? r->backoff * 2 : 0.8;
    if (r->backoff > 30)
        r->backoff = 30;
    d = r->backoff * (0.5 + (double)rand_r(&r->seed) / RAND_MAX); /* 0.5x .. 1.5x */
    if (retry_after > 0)
        d = retry_after > 30 ? 30 : retry_after;
    wait_then(r, d, next, consistent);
}

/* ---- list in pages ---- */

static void page_done(void *ud, int ok, long status, const char *body, size_t len,
                      const struct kn_response *resp, const struct kn_err *err);
static void start_watch(struct kn_reflector *r, int listing, int consistent);
static void version_too_large(struct kn_reflector *r, int consistent);

static void request_page(struct kn_reflector *r)
{
    struct url u = {0};
    struct kn_err err;
    char limit[24];
    int consistent = r->st.u.listing.consistent;
    put(&u, r->path, strlen(r->path));
    if (!r->sink.ops->lists_in_full) {
        /* a list only to learn a current version */
        add_param(&u, "limit", "1");
    } else {
        snprintf(limit, sizeof limit, "%d", r->o.page_size);
        add_param(&u, "limit", limit);
        add_param(&u, "labelSelector", r->label_selector);
        add_param(&u, "fieldSelector", r->field_selector);
    }
    if (r->st.u.listing.cont) {
        add_param(&u, "continue", r->st.u.listing.cont);
    } else {
        /* client-go's relistResourceVersion: "" after an expired version (a
         * consistent read), "0" when none is known yet (the watch cache may
         * answer), else the last version seen */
        char rv[64];
        kn_reflector_rv(r, rv);
        add_param(&u, "resourceVersion", consistent || !r->sink.ops->lists_in_full ? "" : rv[0] ? rv : "0");
    }
    if (u.oom) {
        kn_buf_free(&u.b);
        report(r, "list %s: out of memory; trying again", r->what);
        back_off(r, NEXT_LIST, consistent, -1);
        return;
    }
    r->st.u.listing.stream = r->t.list(r->t.ud, u.b.data, page_done, r, &err);
    kn_buf_free(&u.b);
    if (!r->st.u.listing.stream) {
        report(r, "list %s: %s", r->what, err.msg);
        back_off(r, NEXT_LIST, consistent, -1);
    }
}

static void start_list(struct kn_reflector *r, int consistent)
{
    leave(r);
    if (r->sink.pending)
        kn_store_clear(r->sink.pending);
    if (r->sink.ops->may_stream && !r->no_streaming && !r->o.paged_only) {
        /* a streaming list: the initial state as events, then the watch goes on */
        start_watch(r, 1, consistent);
        return;
    }
    r->st.phase = LISTING;
    memset(&r->st.u.listing, 0, sizeof r->st.u.listing);
    r->st.u.listing.consistent = consistent;
    request_page(r);
}

static void list_item(void *ud, struct kn_obj *o, int index, const struct kn_err *item_err)
{
    struct kn_reflector *r = ud;
    struct kn_watch_event ev = { .type = KN_EV_ADDED, .obj = o };
    if (!o) {
        report(r, "list %s: item %d skipped: %s", r->what, index, item_err->msg);
        return;
    }
    if (r->sink.ops->item(r, &ev) < 0)
        r->st.u.listing.incomplete = 1;
    kn_obj_unref(o);
}

static void page_done(void *ud, int ok, long status, const char *body, size_t len,
                      const struct kn_response *resp, const struct kn_err *err)
{
    struct kn_reflector *r = ud;
    struct kn_err perr;
    char text[KN_ERR_MSG];
    char *rv = NULL, *cont = NULL;
    int consistent;
    if (r->st.phase != LISTING || r->st.u.listing.streaming || (ok < 0 && strcmp(err->reason, "Cancelled") == 0))
        return;
    r->st.u.listing.stream = NULL;
    consistent = r->st.u.listing.consistent;
    if (ok < 0) {
        report(r, "list %s: %s", r->what, err->msg);
        back_off(r, NEXT_LIST, consistent, -1);
        return;
    }
    if (status == 410) {
        /* an expired continue token or version: a consistent list from the start */
        start_list(r, 1);
        return;
    }
    if (body_too_large(status, body, len)) {
        version_too_large(r, consistent);
        return;
    }
    if (status < 200 || status > 299) {
        status_text(body, len, status, text, sizeof text);
        report(r, "list %s: %s", r->what, text);
        back_off(r, NEXT_LIST, consistent, status == 429 ? resp->retry_after : -1);
        return;
    }
    if (kn_list_parse(body, len, &r->o.norm, list_item, r, &rv, &cont, &perr) < 0) {
        report(r, "list %s: %s", r->what, perr.msg);
        back_off(r, NEXT_LIST, consistent, -1);
        return;
    }
    if (r->st.u.listing.incomplete) {
        free(rv);
        free(cont);
        report(r, "list %s: out of memory keeping the items; listing again", r->what);
        back_off(r, NEXT_LIST, consistent, -1);
        return;
    }
    if (cont && r->sink.ops->lists_in_full) {
        free(rv);
        free(r->st.u.listing.cont);
        r->st.u.listing.cont = cont;
        request_page(r);
        return;
    }
    free(cont);
    if (r->sink.ops->listed(r, rv ? rv : "") < 0) {
        free(rv);
        report(r, "list %s: out of memory keeping the items; listing again", r->what);
        back_off(r, NEXT_LIST, consistent, -1);
        return;
    }
    set_rv(r, rv);
    free(rv);
    go(r, NEXT_WATCH, 0);
}

/* ---- watch (and streaming list) ---- */

static void watch_done(void *ud, int ok, long status, const char *body, size_t len,
                       const struct kn_response *resp, const struct kn_err *err);

static struct run *current_run(struct kn_reflector *r)
{
    if (r->st.phase == WATCHING)
        return &r->st.u.watching;
    if (r->st.phase == LISTING && r->st.u.listing.streaming)
        return &r->st.u.listing.run;
    return NULL;
}

static int on_line(void *ud, const char *line, size_t len)
{
    struct kn_reflector *r = ud;
    struct run *run = current_run(r);
    struct kn_watch_event ev;
    struct kn_err err;
    int rc;
    if (kn_watch_parse(line, len, &r->o.norm, &ev, &err) < 0) {
        report(r, "watch %s: %s; resuming from resourceVersion %s", r->what, err.msg, r->rv);
        run->broken = 1;
        return 1;
    }
    run->events++;
    count(r, &r->stats.events);
    if (ev.type == KN_EV_ERROR) {
        if (ev.code == 410) {
            run->expired = 1;
        } else if (ev.rv_too_large) {
            run->too_large = 1;
        } else {
            report(r, "watch %s: %s (%s, code %d)", r->what, ev.message, ev.reason, ev.code);
            run->broken = 1;
        }
        return 1;
    }
    if (r->st.phase == LISTING) {
        /* the initial state: gathered, then made the store's at the bookmark
         * annotated k8s.io/initial-events-end, as after a list */
        if (ev.type == KN_EV_BOOKMARK && ev.initial_events_end) {
            struct run keep = *run;
            if (!r->st.u.listing.incomplete)
                count(r, &r->stats.streamed); /* before the notifications, as the list's own count */
            if (r->st.u.listing.incomplete || r->sink.ops->listed(r, ev.rv) < 0) {
                report(r, "list %s: out of memory keeping the items; listing again", r->what);
                run->desync = 1;
                return 1;
            }
            set_rv(r, ev.rv);
            /* the same stream goes on as the watch */
            r->st.phase = WATCHING;
            r->st.u.watching = keep;
            return 0;
        }
        if (ev.type != KN_EV_BOOKMARK && r->sink.ops->item(r, &ev) < 0)
            r->st.u.listing.incomplete = 1;
        kn_obj_unref(ev.obj);
        return 0;
    }
    if (ev.type == KN_EV_MODIFIED)
        count(r, &r->stats.modified);
    rc = r->sink.ops->event(r, &ev); /* takes ev.obj */
    if (rc < 0) {
        report(r, "watch %s: out of memory applying an event; listing again", r->what);
        run->desync = 1;
        return 1;
    }
    set_rv(r, ev.rv);
    return 0;
}

static int watch_data(void *ud, const char *p, size_t n)
{
    struct kn_reflector *r = ud;
    struct run *run = current_run(r);
    struct kn_err err;
    int rc;
    if (!run)
        return 1;
    rc = kn_framer_feed(&r->framer, p, n, on_line, r, &err);
    if (rc < 0) {
        report(r, "watch %s: %s", r->what, err.msg);
        if ((run = current_run(r)))
            run->broken = 1;
        return 1;
    }
    return rc;
}

static void start_watch(struct kn_reflector *r, int listing, int consistent)
{
    struct url u = {0};
    struct kn_err err;
    char rv[64], timeout[16];
    int span = r->o.watch_max - r->o.watch_min;
    struct run *run;
    void *stream;
    leave(r);
    kn_reflector_rv(r, rv);
    /* a randomized timeout, so that many watches do not end together */
    snprintf(timeout, sizeof timeout, "%d", r->o.watch_min + (span > 0 ? rand_r(&r->seed) % (span + 1) : 0));
    put(&u, r->path, strlen(r->path));
    add_param(&u, "watch", "1");
    add_param(&u, "allowWatchBookmarks", "true");
    add_param(&u, "timeoutSeconds", timeout);
    add_param(&u, "labelSelector", r->label_selector);
    add_param(&u, "fieldSelector", r->field_selector);
    if (listing) {
        /* client-go's watch-list: "" (a consistent read) when the version
         * expired or none is known, else anything not older than it */
        add_param(&u, "sendInitialEvents", "true");
        add_param(&u, "resourceVersionMatch", "NotOlderThan");
        add_param(&u, "resourceVersion", consistent ? "" : rv);
        r->st.phase = LISTING;
        memset(&r->st.u.listing, 0, sizeof r->st.u.listing);
        r->st.u.listing.consistent = consistent;
        r->st.u.listing.streaming = 1;
        run = &r->st.u.listing.run;
    } else {
        if (rv[0])
            add_param(&u, "resourceVersion", rv);
        r->st.phase = WATCHING;
        memset(&r->st.u.watching, 0, sizeof r->st.u.watching);
        run = &r->st.u.watching;
    }
    kn_framer_reset(&r->framer);
    run->started = now_s();
    count(r, &r->stats.watches);
    if (u.oom) {
        kn_buf_free(&u.b);
        report(r, "watch %s: out of memory; trying again", r->what);
        back_off(r, listing ? NEXT_LIST : NEXT_WATCH, consistent, -1);
        return;
    }
    /* The stall limit: the API server sends a bookmark about once a minute,
     * so a stream silent for this long may be dead (no FIN ever comes when a
     * peer vanishes); it is resumed from the last version, which costs one
     * request when it was only quiet. */
    stream = r->t.watch(r->t.ud, u.b.data, (r->o.stall_limit > 0 ? r->o.stall_limit : 55) * 1000L, watch_data,
                        watch_done, r, &err);
    kn_buf_free(&u.b);
    if (!stream) {
        report(r, "watch %s: %s", r->what, err.msg);
        back_off(r, listing ? NEXT_LIST : NEXT_WATCH, consistent, -1);
        return;
    }
    run->stream = stream;
}

static void relist_after_expiry(struct kn_reflector *r)
{
    if (r->sink.ops->expired)
        r->sink.ops->expired(r);
    start_list(r, 1);
}

/* The version asked for is newer than the server can serve: its watch cache
 * lags behind etcd (an API server that restarted, or one of several behind a
 * balancer), or etcd went back in time (a restore), in which case it never
 * will. As client-go (isTooLargeResourceVersionError): give the version up
 * and list from the latest, a consistent read. A list does so at once, as
 * client-go's does; a watch first backs off, since the same lagging cache
 * serves the next watch. A raw watch is told as of an expired version: what
 * happened in between is not replayed. A consistent read that gets this
 * answer (a cache that serves consistent reads too) only waits and tries
 * again. */
static void version_too_large(struct kn_reflector *r, int consistent)
{
    char rv[64];
    int watching = r->st.phase == WATCHING;
    kn_reflector_rv(r, rv);
    report(r, "%s %s: resourceVersion %s is newer than the server can serve (Too large resource version); %s",
           watching ? "watch" : "list", r->what, consistent ? "\"\"" : rv,
           consistent ? "trying again" : "listing from the latest");
    if (consistent) {
        back_off(r, NEXT_LIST, 1, -1);
    } else if (watching) {
        if (r->sink.ops->expired)
            r->sink.ops->expired(r);
        back_off(r, NEXT_LIST, 1, -1);
    } else {
        start_list(r, 1);
    }
}

/* A streaming list ended before its initial-events-end bookmark. */
static void streaming_list_done(struct kn_reflector *r, int ok, long status, const char *body, size_t len,
                                const struct kn_response *resp, const struct kn_err *err)
{
    char text[KN_ERR_MSG];
    int consistent = r->st.u.listing.consistent;
    if (r->st.u.listing.run.desync) {
        back_off(r, NEXT_LIST, consistent, -1);
    } else if (ok == 0 && (status == 400 || status == 422 || status == 501)) {
        /* a server without streaming lists (older, or WatchList off) */
        r->no_streaming = 1;
        start_list(r, consistent);
    } else if (ok == 0 && (status < 200 || status > 299)) {
        status_text(body, len, status, text, sizeof text);
        report(r, "list %s: %s", r->what, text);
        back_off(r, NEXT_LIST, consistent, status == 429 ? resp->retry_after : -1);
    } else {
        if (ok < 0)
            report(r, "list %s: %s", r->what, err->msg);
        back_off(r, NEXT_LIST, consistent, -1);
    }
}

static void watch_done(void *ud, int ok, long status, const char *body, size_t len,
                       const struct kn_response *resp, const struct kn_err *err)
{
    struct kn_reflector *r = ud;
    struct run *run = current_run(r), w;
    char text[KN_ERR_MSG];
    double ran;
    if (!run || (ok < 0 && strcmp(err->reason, "Cancelled") == 0))
        return;
    run->stream = NULL;
    count(r, &r->stats.reconnects);
    if (run->expired || status == 410) {
        relist_after_expiry(r);
        return;
    }
    if (run->too_large || (ok == 0 && body_too_large(status, body, len))) {
        version_too_large(r, r->st.phase == LISTING && r->st.u.listing.consistent);
        return;
    }
    if (r->st.phase == LISTING) {
        streaming_list_done(r, ok, status, body, len, resp, err);
        return;
    }
    w = *run;
    ran = now_s() - w.started;
    if (w.desync) {
        /* a raw watch resumes from the version before the event it could not pass on */
        back_off(r, r->sink.ops->lists_in_full ? NEXT_LIST : NEXT_WATCH, 0, -1);
        return;
    }
    if (w.broken) {
        /* a bad line after a healthy run is news, not a repeat: no doubled wait */
        if (ran > 30 || w.events > 0)
            r->backoff = 0;
        back_off(r, NEXT_WATCH, 0, -1);
        return;
    }
    if (ok < 0 && resp->curl_code == CURLE_OPERATION_TIMEDOUT) {
        /* no byte within the stall limit: resume at once, quietly */
        count(r, &r->stats.stalls);
        r->backoff = 0;
        go(r, NEXT_WATCH, 0);
        return;
    }
    if (ok < 0) {
        /* a connection that broke: resume from the last version seen */
        report(r, "watch %s: %s; resuming from resourceVersion %s", r->what, err->msg, r->rv);
        if (ran > 30 || w.events > 0)
            r->backoff = 0;
        back_off(r, NEXT_WATCH, 0, -1);
        return;
    }
    if (status >= 200 && status < 300) {
        if (w.events == 0 && ran < 1) {
            /* closed at once with nothing: a failure, not a timeout */
            back_off(r, NEXT_WATCH, 0, -1);
        } else {
            r->backoff = 0;
            go(r, NEXT_WATCH, 0);
        }
        return;
    }
    status_text(body, len, status, text, sizeof text);
    report(r, "watch %s: %s", r->what, text);
    if (status == 429) /* too many requests: the version is fine, only wait */
        back_off(r, NEXT_WATCH, 0, resp->retry_after);
    else if (status == 401) /* the credential is refreshed for the next request; the version is fine */
        back_off(r, NEXT_WATCH, 0, -1);
    else
        back_off(r, r->sink.ops->relist_on_error ? NEXT_LIST : NEXT_WATCH, 0, -1);
}

static void go(struct kn_reflector *r, enum next next, int consistent)
{
    if (next == NEXT_LIST)
        start_list(r, consistent);
    else
        start_watch(r, 0, 0);
}

/* ---- sinks ---- */

/* The informer's store: an event is announced only when the store holds
 * what it says (kn_store_put reports ENOMEM through errno). */
static int store_put(struct kn_store *s, struct kn_obj *obj, struct kn_obj **old)
{
    errno = 0;
    *old = kn_store_put(s, obj);
    return !*old && errno ? -1 : 0;
}

static int store_item(struct kn_reflector *r, const struct kn_watch_event *ev)
{
    struct kn_obj *old;
    if (ev->type == KN_EV_DELETED) {
        kn_obj_unref(kn_store_delete(r->sink.pending, ev->obj->key));
        return 0;
    }
    if (!ev->obj)
        return 0;
    if (store_put(r->sink.pending, ev->obj, &old) < 0)
        return -1;
    kn_obj_unref(old);
    return 0;
}

/* The list is complete: make the store equal to it, telling handlers what
 * changed (objects that vanished meanwhile are deleted with
 * final_state_unknown, as client-go's DeletedFinalStateUnknown). */
static int store_listed(struct kn_reflector *r, const char *rv)
{
    size_t n, i;
    struct kn_obj **all;
    struct kn_qevent *ev;
    int first, failed = 0;
    struct kn_store *store = r->sink.store, *pending = r->sink.pending;
    /* kn_store_list returns NULL only for want of memory (an empty store
     * gives an empty array): read as "nothing listed", it would make a
     * relist a no-op, or keep every vanished object. */
    all = kn_store_list(pending, NULL, &n);
    if (!all)
        return -1;
    /* The bookkeeping first: whoever sees a notification of this relist
     * also sees the relist counted and its version. */
    pthread_mutex_lock(&r->mu);
    snprintf(r->rv, sizeof r->rv, "%s", rv);
    first = !r->synced;
    r->stats.lists++;
    if (!first)
        r->stats.relists++;
    pthread_mutex_unlock(&r->mu);
    for (i = 0; i < n; i++) {
        struct kn_obj *cur = kn_store_get(store, all[i]->key), *old;
        int same = cur && strcmp(cur->rv, all[i]->rv) == 0;
        kn_obj_unref(cur);
        if (same)
            continue;
        if (prepare(r, cur ? KN_Q_UPDATE : KN_Q_ADD, &ev) < 0 || store_put(store, all[i], &old) < 0) {
            kn_qevent_free(ev);
            failed = 1;
            continue;
        }
        deliver(r, ev, old, kn_obj_ref(all[i]), 0);
    }
    kn_store_release(all, n);
    all = kn_store_list(store, NULL, &n);
    if (!all) /* what was applied so far was announced; the relist this asks for does the rest */
        return -1;
    for (i = 0; i < n; i++) {
        struct kn_obj *still = kn_store_get(pending, all[i]->key);
        if (still) {
            kn_obj_unref(still);
            continue;
        }
        if (prepare(r, KN_Q_DELETE, &ev) < 0) {
            failed = 1;
            continue;
        }
        deliver(r, ev, NULL, kn_store_delete(store, all[i]->key), 1);
    }
    kn_store_release(all, n);
    kn_store_clear(pending);
    if (failed)
        return -1;
    if (first) {
        if (prepare(r, KN_Q_SYNCED, &ev) < 0)
            return -1;
        pthread_mutex_lock(&r->mu);
        r->synced = 1;
        pthread_mutex_unlock(&r->mu);
        deliver(r, ev, NULL, NULL, 0);
    }
    return 0;
}

static int store_event(struct kn_reflector *r, const struct kn_watch_event *e)
{
    struct kn_obj *old;
    struct kn_qevent *ev;
    switch (e->type) {
    case KN_EV_ADDED:
    case KN_EV_MODIFIED:
        old = kn_store_get(r->sink.store, e->obj->key);
        if (prepare(r, old ? KN_Q_UPDATE : KN_Q_ADD, &ev) < 0) {
            kn_obj_unref(old);
            kn_obj_unref(e->obj);
            return -1;
        }
        kn_obj_unref(old);
        if (store_put(r->sink.store, e->obj, &old) < 0) {
            kn_qevent_free(ev);
            kn_obj_unref(e->obj);
            return -1;
        }
        deliver(r, ev, old, e->obj, 0);
        return 0;
    case KN_EV_DELETED:
        /* the event carries the object's final state */
        if (prepare(r, KN_Q_DELETE, &ev) < 0) {
            kn_obj_unref(e->obj);
            return -1;
        }
        old = kn_store_delete(r->sink.store, e->obj->key);
        if (!old) {
            /* Never held (a relist saw it gone first): handlers never heard
             * of it, so they hear nothing now, as client-go's DeltaFIFO
             * drops the deletion of an object it does not know. */
            kn_qevent_free(ev);
            kn_obj_unref(e->obj);
            return 0;
        }
        kn_obj_unref(old);
        deliver(r, ev, NULL, e->obj, 0);
        return 0;
    default: /* bookmarks only move the version */
        kn_obj_unref(e->obj);
        return 0;
    }
}

static const struct sink_ops sink_store = {
    .lists_in_full = 1,
    .may_stream = 1,
    .relist_on_error = 1,
    .starts_listing = 1,
    .item = store_item,
    .listed = store_listed,
    .event = store_event,
};

/* A raw watch: every event goes to the queue as it came. */
static int raw_item(struct kn_reflector *r, const struct kn_watch_event *ev)
{
    (void)r, (void)ev;
    return 0;
}

static int raw_listed(struct kn_reflector *r, const char *rv)
{
    (void)r, (void)rv;
    return 0;
}

static int push_raw(struct kn_reflector *r, const char *type, struct kn_obj *obj, const char *rv)
{
    struct kn_qevent *ev = kn_qevent_new(KN_Q_RAW, r->id);
    if (!ev)
        return -1;
    snprintf(ev->raw_type, sizeof ev->raw_type, "%s", type);
    snprintf(ev->rv, sizeof ev->rv, "%s", rv ? rv : "");
    deliver(r, ev, NULL, obj, 0);
    return 0;
}

static int raw_event(struct kn_reflector *r, const struct kn_watch_event *ev)
{
    static const char *names[] = { "ADDED", "MODIFIED", "DELETED", "BOOKMARK" };
    if (ev->type == KN_EV_BOOKMARK && !r->sink.bookmarks) {
        kn_obj_unref(ev->obj);
        return 0;
    }
    if (push_raw(r, names[ev->type], ev->obj, ev->rv) < 0) {
        kn_obj_unref(ev->obj);
        return -1; /* the version stays before it: the watch resumes there */
    }
    return 0;
}

static void raw_expired(struct kn_reflector *r)
{
    char rv[64];
    kn_reflector_rv(r, rv);
    if (push_raw(r, "EXPIRED", NULL, rv) < 0)
        report(r, "watch %s: out of memory telling that resourceVersion %s expired", r->what, rv);
}

static const struct sink_ops sink_raw = {
    .lists_in_full = 0,
    .may_stream = 0,
    .relist_on_error = 0,
    .starts_listing = 0,
    .item = raw_item,
    .listed = raw_listed,
    .event = raw_event,
    .expired = raw_expired,
};

/* ---- resync ---- */

static void resync(void *ud)
{
    struct kn_reflector *r = ud;
    r->resync_armed = 0;
    if (r->st.phase == STOPPED)
        return;
    if (r->synced) {
        size_t n;
        struct kn_obj **all = kn_store_list(r->sink.store, NULL, &n);
        for (size_t i = 0; all && i < n; i++) {
            struct kn_qevent *ev;
            if (prepare(r, KN_Q_UPDATE, &ev) == 0) /* out of memory: this round skips it */
                deliver(r, ev, kn_obj_ref(all[i]), kn_obj_ref(all[i]), 0);
        }
        kn_store_release(all, n);
    }
    r->resync_armed = 1;
    r->t.arm(r->t.ud, &r->resync_timer, (long)(r->o.resync * 1e3), resync, r);
}

/* ---- lifecycle (on the reflector's thread) ---- */

static void begin(void *ud)
{
    struct kn_reflector *r = ud;
    if (r->st.phase != IDLE && r->st.phase != STOPPED)
        return;
    r->backoff = 0;
    pthread_mutex_lock(&r->mu);
    r->running = 1;
    pthread_mutex_unlock(&r->mu);
    if (r->sink.ops->starts_listing)
        start_list(r, 0);
    else
        start_watch(r, 0, 0); /* without a version the server first sends the current state as ADDED */
    if (r->sink.store && r->o.resync > 0 && !r->resync_armed) {
        r->resync_armed = 1;
        r->t.arm(r->t.ud, &r->resync_timer, (long)(r->o.resync * 1e3), resync, r);
    }
}

static void halt(void *ud)
{
    struct kn_reflector *r = ud;
    leave(r);
    r->st.phase = STOPPED;
    if (r->resync_armed) {
        r->t.disarm(r->t.ud, &r->resync_timer);
        r->resync_armed = 0;
    }
    pthread_mutex_lock(&r->mu);
    r->running = 0;
    pthread_mutex_unlock(&r->mu);
    /* What is queued already happened to the store: it is still delivered,
     * so handlers and cache agree after a stop and a start. clear() and
     * free drop it. */
}

static void wipe(void *ud)
{
    struct kn_reflector *r = ud;
    int was_running = r->running;
    halt(r);
    kn_queue_drop(r->q, r->id);
    if (r->sink.store)
        kn_store_clear(r->sink.store);
    if (r->sink.pending)
        kn_store_clear(r->sink.pending);
    pthread_mutex_lock(&r->mu);
    r->synced = 0;
    r->rv[0] = '\0';
    pthread_mutex_unlock(&r->mu);
    if (was_running) {
        r->st.phase = IDLE;
        begin(r);
    }
}

struct snap {
    struct kn_reflector *r;
    struct kn_obj **objs;
    size_t n;
    unsigned long long seq;
    int mask;
};

static void take_snapshot(void *ud)
{
    struct snap *s = ud;
    s->seq = s->r->seq;
    if (s->r->sink.store) {
        s->objs = kn_store_list(s->r->sink.store, NULL, &s->n);
        if (!s->objs) /* out of memory: the mask stays, or a late handler would miss the objects held */
            return;
    }
    s->r->notify = s->mask;
}

struct notify_arg {
    struct kn_reflector *r;
    int on;
};

static void set_notify(void *ud)
{
    struct notify_arg *a = ud;
    a->r->notify = a->on;
}

void kn_reflector_set_notify(struct kn_reflector *r, int mask)
{
    struct notify_arg a = { r, mask };
    r->t.call(r->t.ud, set_notify, &a);
}

struct kn_reflector *kn_reflector_new_on(const struct kn_rtransport *t, struct kn_queue *q, unsigned long id,
                                         const struct kn_reflector_opts *o, struct kn_err *err)
{
    struct kn_reflector *r = calloc(1, sizeof *r);
    if (!r) {
        kn_err_set(err, 0, "Informer", "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    r->t = *t;
    r->q = kn_queue_ref(q);
    r->id = id;
    r->o = *o;
    r->path = strdup(o->path);
    r->what = strdup(o->what ? o->what : o->path);
    r->label_selector = dup_or_null(o->label_selector);
    r->field_selector = dup_or_null(o->field_selector);
    r->api_version = dup_or_null(o->norm.api_version);
    r->kind = dup_or_null(o->norm.kind);
    r->o.path = r->o.what = r->o.label_selector = r->o.field_selector = r->o.resource_version = NULL;
    r->o.norm.api_version = r->api_version;
    r->o.norm.kind = r->kind;
    if (r->o.page_size <= 0)
        r->o.page_size = 500;
    if (r->o.watch_min <= 0)
        r->o.watch_min = 300;
    if (r->o.watch_max < r->o.watch_min)
        r->o.watch_max = r->o.watch_min == 300 ? 600 : r->o.watch_min;
    r->seed = (unsigned)time(NULL) ^ (unsigned)id * 2654435761u;
    if (o->raw) {
        /* the start version, if any, is where the first watch begins */
        r->sink.ops = &sink_raw;
        r->sink.bookmarks = o->bookmarks;
        if (o->resource_version)
            snprintf(r->rv, sizeof r->rv, "%s", o->resource_version);
    } else {
        r->sink.ops = &sink_store;
        r->sink.store = kn_store_new();
        r->sink.pending = kn_store_new();
    }
    if (!r->path || !r->what || (o->label_selector && !r->label_selector) ||
        (o->field_selector && !r->field_selector) || (o->norm.api_version && !r->api_version) ||
        (o->norm.kind && !r->kind) || (!o->raw && (!r->sink.store || !r->sink.pending))) {
        kn_err_set(err, 0, "Informer", "out of memory");
        kn_reflector_free(r);
        return NULL;
    }
    return r;
}

struct kn_reflector *kn_reflector_new(struct kn_client *c, struct kn_queue *q, unsigned long id,
                                      const struct kn_reflector_opts *o, struct kn_err *err)
{
    struct kn_rtransport t;
    kn_rtransport_client(c, &t);
    return kn_reflector_new_on(&t, q, id, o, err);
}

void kn_reflector_free(struct kn_reflector *r)
{
    if (!r)
        return;
    r->t.call(r->t.ud, halt, r);
    kn_queue_drop(r->q, r->id);
    kn_framer_free(&r->framer);
    if (r->sink.store)
        kn_store_free(r->sink.store);
    if (r->sink.pending)
        kn_store_free(r->sink.pending);
    kn_queue_unref(r->q);
    free(r->path);
    free(r->what);
    free(r->label_selector);
    free(r->field_selector);
    free(r->api_version);
    free(r->kind);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void kn_reflector_start(struct kn_reflector *r)
{
    r->t.call(r->t.ud, begin, r);
}

void kn_reflector_stop(struct kn_reflector *r)
{
    r->t.call(r->t.ud, halt, r);
}

void kn_reflector_clear(struct kn_reflector *r)
{
    r->t.call(r->t.ud, wipe, r);
}

struct kn_store *kn_reflector_store(struct kn_reflector *r)
{
    return r->sink.store;
}

int kn_reflector_synced(struct kn_reflector *r)
{
    int v;
    pthread_mutex_lock(&r->mu);
    v = r->synced;
    pthread_mutex_unlock(&r->mu);
    return v;
}

int kn_reflector_running(struct kn_reflector *r)
{
    int v;
    pthread_mutex_lock(&r->mu);
    v = r->running;
    pthread_mutex_unlock(&r->mu);
    return v;
}

void kn_reflector_rv(struct kn_reflector *r, char out[64])
{
    pthread_mutex_lock(&r->mu);
    memcpy(out, r->rv, 64);
    pthread_mutex_unlock(&r->mu);
}

void kn_reflector_stats(struct kn_reflector *r, struct kn_reflector_stats *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->stats;
    pthread_mutex_unlock(&r->mu);
}

struct kn_obj **kn_reflector_snapshot(struct kn_reflector *r, int mask, size_t *n, unsigned long long *seq)
{
    struct snap s = { r, NULL, 0, 0, mask };
    r->t.call(r->t.ud, take_snapshot, &s);
    *n = s.n;
    *seq = s.seq;
    return s.objs;
}
