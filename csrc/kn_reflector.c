#include "kn_reflector.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kn_json.h"
#include "kn_list.h"
#include "kn_loop.h"
#include "kn_watch.h"

enum state { IDLE, LISTING, WATCHING, WAITING, STOPPED };

struct kn_reflector {
    struct kn_client *c;
    struct kn_loop *loop;
    struct kn_queue *q;
    unsigned long id;
    struct kn_reflector_opts o;     /* strings below are our copies */
    char *path, *what, *label_selector, *field_selector, *api_version, *kind, *start_rv;
    struct kn_store *store;         /* NULL for a raw watch */
    unsigned seed;

    /* shared with other threads, under mu */
    pthread_mutex_t mu;
    char rv[64];                    /* last resourceVersion seen */
    int synced, running;
    struct kn_reflector_stats stats;

    /* I/O thread only */
    enum state state;
    struct kn_stream *stream;
    struct kn_timer *timer;         /* backoff or a pending start */
    struct kn_timer *resync_timer;
    struct kn_framer framer;
    struct kn_store *pending;       /* a list being gathered, page by page */
    char *cont;                     /* its continue token */
    int rv_unavailable;             /* the last version expired: list with "" (a consistent read) */
    int expired;                    /* the watch saw ERROR 410 */
    int stream_error;               /* the watch stream held something that is not an event */
    int initial;                    /* a streaming list: initial events go to pending until the bookmark */
    int no_streaming;               /* the server refused sendInitialEvents: list in pages */
    double backoff;                 /* seconds; 0: not backing off */
    double watch_started;
    int notify;                     /* which of add/update/delete to queue: bits 1 << KN_Q_* */
    unsigned long watch_events;
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

/* ---- queue ---- */

static void push(struct kn_reflector *r, enum kn_qtype type, struct kn_obj *old, struct kn_obj *obj, int unknown)
{
    struct kn_qevent *ev = type == KN_Q_SYNCED || (r->notify & (1 << type)) ? kn_qevent_new(type, r->id) : NULL;
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

static void push_raw(struct kn_reflector *r, const char *type, struct kn_obj *obj, const char *rv)
{
    struct kn_qevent *ev = kn_qevent_new(KN_Q_RAW, r->id);
    if (!ev) {
        kn_obj_unref(obj);
        return;
    }
    snprintf(ev->raw_type, sizeof ev->raw_type, "%s", type);
    snprintf(ev->rv, sizeof ev->rv, "%s", rv ? rv : "");
    ev->obj = obj;
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
    pthread_mutex_lock(&r->mu);
    r->stats.errors++;
    pthread_mutex_unlock(&r->mu);
    if (!ev)
        return;
    ev->message = strdup(msg);
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

/* ---- URLs ---- */

static void add_param(struct kn_buf *b, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!value)
        return;
    kn_buf_puts(b, strchr(b->data, '?') ? "&" : "?");
    kn_buf_puts(b, name);
    kn_buf_puts(b, "=");
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            kn_buf_append(b, p, 1);
        } else {
            char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
            kn_buf_append(b, e, 3);
        }
    }
}

/* ---- scheduling ---- */

static void do_list(void *ud);
static void do_watch(void *ud);

static void schedule(struct kn_reflector *r, double delay, kn_loop_fn fn)
{
    kn_loop_timer_cancel(r->loop, r->timer);
    r->state = WAITING;
    r->timer = kn_loop_after(r->loop, (long)(delay * 1e3), fn, r);
}

/* Jittered exponential backoff: under a second at first, doubling, 30 s at most. */
static void back_off(struct kn_reflector *r, kn_loop_fn fn, int retry_after)
{
    double d;
    r->backoff = r->backoff > 0 ? r->backoff * 2 : 0.8;
    if (r->backoff > 30)
        r->backoff = 30;
    d = r->backoff * (0.5 + (double)rand_r(&r->seed) / RAND_MAX); /* 0.5x .. 1.5x */
    if (retry_after > 0)
        d = retry_after > 30 ? 30 : retry_after;
    schedule(r, d, fn);
}

/* ---- list ---- */

static void list_done(void *ud, int ok, long status, const char *body, size_t len,
                      const struct kn_response *resp, const struct kn_err *err);

static void start_list(struct kn_reflector *r)
{
    struct kn_buf path = {0};
    struct kn_request req = {0};
    struct kn_err err;
    char limit[24];
    r->timer = NULL;
    r->state = LISTING;
    kn_buf_puts(&path, r->path);
    if (r->o.raw) {
        /* a raw watch lists only to learn a current version */
        add_param(&path, "limit", "1");
    } else {
        snprintf(limit, sizeof limit, "%d", r->o.page_size);
        add_param(&path, "limit", limit);
        add_param(&path, "labelSelector", r->label_selector);
        add_param(&path, "fieldSelector", r->field_selector);
    }
    if (r->cont) {
        add_param(&path, "continue", r->cont);
    } else {
        /* client-go's relistResourceVersion: "" after an expired version (a
         * consistent read), "0" when none is known yet (the watch cache may
         * answer), else the last version seen */
        char rv[64];
        kn_reflector_rv(r, rv);
        add_param(&path, "resourceVersion", r->rv_unavailable || r->o.raw ? "" : rv[0] ? rv : "0");
    }
    req.method = "GET";
    req.path = path.data;
    r->stream = kn_client_stream(r->c, &req, 0, NULL, list_done, r, &err);
    kn_buf_free(&path);
    if (!r->stream) {
        report(r, "list %s: %s", r->what, err.msg);
        back_off(r, do_list, -1);
    }
}

static void start_watch(struct kn_reflector *r, int initial);

static void do_list(void *ud)
{
    struct kn_reflector *r = ud;
    free(r->cont);
    r->cont = NULL;
    if (r->pending)
        kn_store_clear(r->pending);
    if (!r->o.raw && !r->no_streaming && !r->o.paged_only)
        start_watch(r, 1); /* a streaming list: the initial state as events, then the watch goes on */
    else
        start_list(r);
}

static void notify(struct kn_reflector *r, struct kn_obj *old, struct kn_obj *obj)
{
    if (!old)
        push(r, KN_Q_ADD, NULL, obj, 0);
    else if (strcmp(old->rv, obj->rv) != 0)
        push(r, KN_Q_UPDATE, old, obj, 0);
    else {
        kn_obj_unref(old);
        kn_obj_unref(obj);
    }
}

/* The list is complete: make the store equal to it, telling handlers what
 * changed (objects that vanished meanwhile are deleted with
 * final_state_unknown, as client-go's DeletedFinalStateUnknown). */
static void replace(struct kn_reflector *r, const char *rv)
{
    size_t n, i;
    struct kn_obj **all;
    int first;
    /* The bookkeeping first: whoever sees a notification of this relist
     * also sees the relist counted and its version. */
    pthread_mutex_lock(&r->mu);
    snprintf(r->rv, sizeof r->rv, "%s", rv);
    first = !r->synced;
    r->synced = 1;
    r->stats.lists++;
    if (!first)
        r->stats.relists++;
    pthread_mutex_unlock(&r->mu);
    all = kn_store_list(r->pending, NULL, &n);
    for (i = 0; i < n; i++) {
        struct kn_obj *old = kn_store_put(r->store, all[i]);
        notify(r, old, kn_obj_ref(all[i]));
    }
    kn_store_release(all, n);
    all = kn_store_list(r->store, NULL, &n);
    for (i = 0; i < n; i++) {
        struct kn_obj *still = kn_store_get(r->pending, all[i]->key);
        if (still) {
            kn_obj_unref(still);
            continue;
        }
        push(r, KN_Q_DELETE, NULL, kn_store_delete(r->store, all[i]->key), 1);
    }
    kn_store_release(all, n);
    kn_store_clear(r->pending);
    if (first)
        push(r, KN_Q_SYNCED, NULL, NULL, 0);
}

static void list_item(void *ud, struct kn_obj *o, int index, const struct kn_err *item_err)
{
    struct kn_reflector *r = ud;
    if (!o) {
        report(r, "list %s: item %d skipped: %s", r->what, index, item_err->msg);
        return;
    }
    if (r->pending)
        kn_obj_unref(kn_store_put(r->pending, o));
    kn_obj_unref(o);
}

static void list_done(void *ud, int ok, long status, const char *body, size_t len,
                      const struct kn_response *resp, const struct kn_err *err)
{
    struct kn_reflector *r = ud;
    struct kn_err perr;
    char text[KN_ERR_MSG];
    char *rv = NULL, *cont = NULL;
    r->stream = NULL;
    if (r->state == STOPPED || (ok < 0 && strcmp(err->reason, "Cancelled") == 0))
        return;
    if (ok < 0) {
        report(r, "list %s: %s", r->what, err->msg);
        back_off(r, do_list, -1);
        return;
    }
    if (status == 410) {
        /* an expired continue token or version: a consistent list from the start */
        r->rv_unavailable = 1;
        do_list(r);
        return;
    }
    if (status < 200 || status > 299) {
        status_text(body, len, status, text, sizeof text);
        report(r, "list %s: %s", r->what, text);
        back_off(r, do_list, status == 429 ? resp->retry_after : -1);
        return;
    }
    if (kn_list_parse(body, len, &r->o.norm, list_item, r, &rv, &cont, &perr) < 0) {
        report(r, "list %s: %s", r->what, perr.msg);
        back_off(r, do_list, -1);
        return;
    }
    if (r->o.raw) {
        /* a raw watch lists only for a fresh version to watch from */
        free(cont);
        set_rv(r, rv);
        free(rv);
        r->rv_unavailable = 0;
        do_watch(r);
        return;
    }
    free(r->cont);
    r->cont = cont;
    if (r->cont) {
        free(rv);
        start_list(r);
        return;
    }
    replace(r, rv ? rv : "");
    free(rv);
    r->rv_unavailable = 0;
    do_watch(r);
}

/* ---- watch ---- */

static void watch_done(void *ud, int ok, long status, const char *body, size_t len,
                       const struct kn_response *resp, const struct kn_err *err);

static int on_line(void *ud, const char *line, size_t len)
{
    struct kn_reflector *r = ud;
    struct kn_watch_event ev;
    struct kn_err err;
    struct kn_obj *old;
    if (kn_watch_parse(line, len, &r->o.norm, &ev, &err) < 0) {
        report(r, "watch %s: %s; resuming from resourceVersion %s", r->what, err.msg, r->rv);
        r->stream_error = 1;
        return 1;
    }
    r->watch_events++;
    pthread_mutex_lock(&r->mu);
    r->stats.events++;
    pthread_mutex_unlock(&r->mu);
    if (ev.type == KN_EV_ERROR) {
        if (ev.code == 410) {
            r->expired = 1;
        } else {
            report(r, "watch %s: %s (%s, code %d)", r->what, ev.message, ev.reason, ev.code);
            r->stream_error = 1;
        }
        return 1;
    }
    if (r->initial) {
        /* the initial state: gathered, then made the store's at the bookmark
         * annotated k8s.io/initial-events-end, as after a list */
        if (ev.type == KN_EV_BOOKMARK && ev.initial_events_end) {
            r->initial = 0;
            r->rv_unavailable = 0;
            pthread_mutex_lock(&r->mu);
            r->stats.streamed++;
            pthread_mutex_unlock(&r->mu);
            replace(r, ev.rv);
        } else if (ev.type == KN_EV_DELETED) {
            kn_obj_unref(kn_store_delete(r->pending, ev.obj->key));
            kn_obj_unref(ev.obj);
        } else if (ev.obj) {
            kn_obj_unref(kn_store_put(r->pending, ev.obj));
            kn_obj_unref(ev.obj);
        }
        return 0;
    }
    if (r->o.raw) {
        static const char *names[] = { "ADDED", "MODIFIED", "DELETED", "BOOKMARK" };
        if (ev.type != KN_EV_BOOKMARK || r->o.bookmarks)
            push_raw(r, names[ev.type], ev.obj, ev.rv);
        else
            kn_obj_unref(ev.obj);
        set_rv(r, ev.rv);
        return 0;
    }
    if (ev.type == KN_EV_MODIFIED) {
        pthread_mutex_lock(&r->mu);
        r->stats.modified++;
        pthread_mutex_unlock(&r->mu);
    }
    switch (ev.type) {
    case KN_EV_ADDED:
    case KN_EV_MODIFIED:
        old = kn_store_put(r->store, ev.obj);
        if (old)
            push(r, KN_Q_UPDATE, old, ev.obj, 0);
        else
            push(r, KN_Q_ADD, NULL, ev.obj, 0);
        break;
    case KN_EV_DELETED:
        /* the event carries the object's final state */
        kn_obj_unref(kn_store_delete(r->store, ev.obj->key));
        push(r, KN_Q_DELETE, NULL, ev.obj, 0);
        break;
    default: /* bookmarks only move the version */
        break;
    }
    set_rv(r, ev.rv);
    return 0;
}

static int watch_data(void *ud, const char *p, size_t n)
{
    struct kn_reflector *r = ud;
    struct kn_err err;
    int rc = kn_framer_feed(&r->framer, p, n, on_line, r, &err);
    if (rc < 0) {
        report(r, "watch %s: %s", r->what, err.msg);
        r->stream_error = 1;
        return 1;
    }
    return rc;
}

static void do_watch(void *ud)
{
    start_watch(ud, 0);
}

static void start_watch(struct kn_reflector *r, int initial)
{
    struct kn_buf path = {0};
    struct kn_request req = {0};
    struct kn_err err;
    char rv[64], timeout[16];
    int span = r->o.watch_max - r->o.watch_min;
    r->timer = NULL;
    r->state = WATCHING;
    kn_reflector_rv(r, rv);
    /* a randomized timeout, so that many watches do not end together */
    snprintf(timeout, sizeof timeout, "%d", r->o.watch_min + (span > 0 ? rand_r(&r->seed) % (span + 1) : 0));
    kn_buf_puts(&path, r->path);
    add_param(&path, "watch", "1");
    add_param(&path, "allowWatchBookmarks", "true");
    add_param(&path, "timeoutSeconds", timeout);
    add_param(&path, "labelSelector", r->label_selector);
    add_param(&path, "fieldSelector", r->field_selector);
    if (initial) {
        /* client-go's watch-list: "" (a consistent read) when the version
         * expired or none is known, else anything not older than it */
        add_param(&path, "sendInitialEvents", "true");
        add_param(&path, "resourceVersionMatch", "NotOlderThan");
        add_param(&path, "resourceVersion", r->rv_unavailable ? "" : rv);
        r->state = LISTING;
    } else if (rv[0]) {
        add_param(&path, "resourceVersion", rv);
    }
    r->initial = initial;
    req.method = "GET";
    req.path = path.data;
    /* The stall limit: the API server sends a bookmark about once a minute,
     * so a stream silent for this long may be dead (no FIN ever comes when a
     * peer vanishes); it is resumed from the last version, which costs one
     * request when it was only quiet. */
    req.timeout_ms = (r->o.stall_limit > 0 ? r->o.stall_limit : 55) * 1000;
    kn_framer_reset(&r->framer);
    if (initial && r->pending)
        kn_store_clear(r->pending);
    r->expired = r->stream_error = 0;
    r->watch_events = 0;
    r->watch_started = now_s();
    r->stream = kn_client_stream(r->c, &req, 1, watch_data, watch_done, r, &err);
    kn_buf_free(&path);
    pthread_mutex_lock(&r->mu);
    r->stats.watches++;
    pthread_mutex_unlock(&r->mu);
    if (!r->stream) {
        report(r, "watch %s: %s", r->what, err.msg);
        back_off(r, initial ? do_list : do_watch, -1);
    }
}

static void relist_after_expiry(struct kn_reflector *r)
{
    r->rv_unavailable = 1;
    if (r->o.raw) {
        char rv[64];
        kn_reflector_rv(r, rv);
        push_raw(r, "EXPIRED", NULL, rv);
    }
    do_list(r);
}

static void watch_done(void *ud, int ok, long status, const char *body, size_t len,
                       const struct kn_response *resp, const struct kn_err *err)
{
    struct kn_reflector *r = ud;
    char text[KN_ERR_MSG];
    double ran = now_s() - r->watch_started;
    r->stream = NULL;
    if (r->state == STOPPED || (ok < 0 && strcmp(err->reason, "Cancelled") == 0))
        return;
    pthread_mutex_lock(&r->mu);
    r->stats.reconnects++;
    pthread_mutex_unlock(&r->mu);
    if (r->expired || status == 410) {
        relist_after_expiry(r);
        return;
    }
    if (r->initial) {
        /* the streaming list did not finish */
        r->initial = 0;
        if (ok == 0 && (status == 400 || status == 422 || status == 501)) {
            /* a server without streaming lists (older, or WatchList off) */
            r->no_streaming = 1;
            do_list(r);
        } else if (ok == 0 && (status < 200 || status > 299)) {
            status_text(body, len, status, text, sizeof text);
            report(r, "list %s: %s", r->what, text);
            back_off(r, do_list, status == 429 ? resp->retry_after : -1);
        } else {
            if (ok < 0)
                report(r, "list %s: %s", r->what, err->msg);
            back_off(r, do_list, -1);
        }
        return;
    }
    if (r->stream_error) {
        /* a bad line after a healthy run is news, not a repeat: no doubled wait */
        if (ran > 30 || r->watch_events > 0)
            r->backoff = 0;
        back_off(r, do_watch, -1);
        return;
    }
    if (ok < 0 && resp->curl_code == CURLE_OPERATION_TIMEDOUT) {
        /* no byte within the stall limit: resume at once, quietly */
        pthread_mutex_lock(&r->mu);
        r->stats.stalls++;
        pthread_mutex_unlock(&r->mu);
        r->backoff = 0;
        do_watch(r);
        return;
    }
    if (ok < 0) {
        /* a connection that broke: resume from the last version seen */
        report(r, "watch %s: %s; resuming from resourceVersion %s", r->what, err->msg, r->rv);
        if (ran > 30 || r->watch_events > 0)
            r->backoff = 0;
        back_off(r, do_watch, -1);
        return;
    }
    if (status >= 200 && status < 300) {
        if (r->watch_events == 0 && ran < 1) {
            /* closed at once with nothing: a failure, not a timeout */
            back_off(r, do_watch, -1);
        } else {
            r->backoff = 0;
            do_watch(r);
        }
        return;
    }
    status_text(body, len, status, text, sizeof text);
    report(r, "watch %s: %s", r->what, text);
    if (status == 429) /* too many requests: the version is fine, only wait */
        back_off(r, do_watch, resp->retry_after);
    else if (status == 401) /* the credential is refreshed for the next request; the version is fine */
        back_off(r, do_watch, -1);
    else
        back_off(r, r->o.raw ? do_watch : do_list, -1);
}

/* ---- resync ---- */

static void resync(void *ud)
{
    struct kn_reflector *r = ud;
    r->resync_timer = NULL;
    if (r->state == STOPPED)
        return;
    if (r->synced) {
        size_t n;
        struct kn_obj **all = kn_store_list(r->store, NULL, &n);
        for (size_t i = 0; i < n; i++)
            push(r, KN_Q_UPDATE, kn_obj_ref(all[i]), kn_obj_ref(all[i]), 0);
        kn_store_release(all, n);
    }
    r->resync_timer = kn_loop_after(r->loop, (long)(r->o.resync * 1e3), resync, r);
}

/* ---- lifecycle (run on the I/O thread) ---- */

static void begin(void *ud)
{
    struct kn_reflector *r = ud;
    if (r->state != IDLE && r->state != STOPPED)
        return;
    r->backoff = 0;
    pthread_mutex_lock(&r->mu);
    r->running = 1;
    pthread_mutex_unlock(&r->mu);
    if (r->o.raw)
        do_watch(r); /* without a version the server first sends the current state as ADDED */
    else
        do_list(r);
    if (!r->o.raw && r->o.resync > 0 && !r->resync_timer)
        r->resync_timer = kn_loop_after(r->loop, (long)(r->o.resync * 1e3), resync, r);
}

static void halt(void *ud)
{
    struct kn_reflector *r = ud;
    r->state = STOPPED;
    if (r->stream) {
        struct kn_stream *s = r->stream;
        r->stream = NULL;
        kn_stream_cancel(s);
    }
    kn_loop_timer_cancel(r->loop, r->timer);
    kn_loop_timer_cancel(r->loop, r->resync_timer);
    r->timer = r->resync_timer = NULL;
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
    if (r->store)
        kn_store_clear(r->store);
    if (r->pending)
        kn_store_clear(r->pending);
    pthread_mutex_lock(&r->mu);
    r->synced = 0;
    r->rv[0] = '\0';
    pthread_mutex_unlock(&r->mu);
    r->rv_unavailable = 0;
    if (was_running) {
        r->state = IDLE;
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
    s->objs = s->r->store ? kn_store_list(s->r->store, NULL, &s->n) : NULL;
    s->seq = s->r->seq;
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
    kn_loop_call(r->loop, set_notify, &a);
}

struct kn_reflector *kn_reflector_new(struct kn_client *c, struct kn_queue *q, unsigned long id,
                                      const struct kn_reflector_opts *o, struct kn_err *err)
{
    struct kn_reflector *r = calloc(1, sizeof *r);
    if (!r) {
        kn_err_set(err, 0, "Informer", "out of memory");
        return NULL;
    }
    r->c = c;
    r->loop = kn_client_loop(c);
    r->q = kn_queue_ref(q);
    r->id = id;
    r->o = *o;
    r->path = strdup(o->path);
    r->what = strdup(o->what ? o->what : o->path);
    r->label_selector = dup_or_null(o->label_selector);
    r->field_selector = dup_or_null(o->field_selector);
    r->api_version = dup_or_null(o->norm.api_version);
    r->kind = dup_or_null(o->norm.kind);
    r->o.norm.api_version = r->api_version;
    r->o.norm.kind = r->kind;
    if (r->o.page_size <= 0)
        r->o.page_size = 500;
    if (r->o.watch_min <= 0)
        r->o.watch_min = 300;
    if (r->o.watch_max < r->o.watch_min)
        r->o.watch_max = r->o.watch_min == 300 ? 600 : r->o.watch_min;
    r->seed = (unsigned)time(NULL) ^ (unsigned)id * 2654435761u;
    pthread_mutex_init(&r->mu, NULL);
    if (o->raw && o->resource_version)
        snprintf(r->rv, sizeof r->rv, "%s", o->resource_version);
    if (!o->raw) {
        r->store = kn_store_new();
        r->pending = kn_store_new();
    }
    if (!r->path || !r->what || (!o->raw && (!r->store || !r->pending))) {
        kn_err_set(err, 0, "Informer", "out of memory");
        kn_reflector_free(r);
        return NULL;
    }
    return r;
}

void kn_reflector_free(struct kn_reflector *r)
{
    if (!r)
        return;
    kn_loop_call(r->loop, halt, r);
    kn_queue_drop(r->q, r->id);
    kn_framer_free(&r->framer);
    if (r->store)
        kn_store_free(r->store);
    if (r->pending)
        kn_store_free(r->pending);
    kn_queue_unref(r->q);
    free(r->cont);
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
    kn_loop_call(r->loop, begin, r);
}

void kn_reflector_stop(struct kn_reflector *r)
{
    kn_loop_call(r->loop, halt, r);
}

void kn_reflector_clear(struct kn_reflector *r)
{
    kn_loop_call(r->loop, wipe, r);
}

struct kn_store *kn_reflector_store(struct kn_reflector *r)
{
    return r->store;
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
    kn_loop_call(r->loop, take_snapshot, &s);
    *n = s.n;
    *seq = s.seq;
    return s.objs;
}
