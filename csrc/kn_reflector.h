/* The reflector: the list+watch state machine of one informer (or one raw
 * watch), after client-go's tools/cache/reflector.go. It lists in pages,
 * watches from the list's resourceVersion, resumes from the last version it
 * saw, relists when that version has expired (410), and keeps a store in
 * step with the server, pushing add/update/delete notifications to a queue.
 * All of its state lives on the client's I/O thread; the functions below
 * may be called from any thread. */
#ifndef KN_REFLECTOR_H
#define KN_REFLECTOR_H

#include "kn_client.h"
#include "kn_loop.h"
#include "kn_obj.h"
#include "kn_queue.h"
#include "kn_store.h"

struct kn_reflector_opts {
    const char *path;             /* collection path, e.g. /api/v1/namespaces/default/configmaps */
    const char *what;             /* for messages, e.g. "configmaps in default" */
    const char *label_selector;   /* NULL: none */
    const char *field_selector;
    struct kn_normalize norm;
    int page_size;                /* list limit; <= 0: 500 */
    double resync;                /* seconds; > 0: update(obj, obj) for every cached object that often */
    int watch_min, watch_max;     /* timeoutSeconds of a watch is drawn from [min, max]; 0: 300..600 */
    int paged_only;               /* 1: never a streaming list (sendInitialEvents), always pages */
    int stall_limit;              /* seconds without a byte after which a watch is resumed; 0: 55 */
    /* raw watch (c:watch): no store, every event goes to the queue as KN_Q_RAW */
    int raw;
    const char *resource_version; /* raw: where to start; NULL or "": now, after the current state as ADDED */
    int bookmarks;                /* raw: pass BOOKMARK events on */
};

struct kn_reflector_stats {
    unsigned long lists;          /* complete lists (the first included) */
    unsigned long streamed;       /* of which came as streaming lists (sendInitialEvents) */
    unsigned long relists;        /* lists after the first (410, errors, clear) */
    unsigned long watches;        /* watch requests started */
    unsigned long reconnects;     /* watches started again after a failure */
    unsigned long stalls;         /* watches resumed after the stall limit (a quiet or dead stream) */
    unsigned long events;         /* watch events applied */
    unsigned long modified;       /* of which MODIFIED, after the initial state */
    unsigned long errors;
};

struct kn_reflector;

/* The transport seam: how a reflector lists, watches, cancels and waits
 * (client-go's ListerWatcher plus its clock). kn_reflector_new uses the
 * client's streams and I/O-thread timers; the C tests drive a reflector
 * with a scripted fake server through kn_reflector_new_on. */
struct kn_rtransport {
    void *ud;
    /* A GET of path (query included). list collects the body; watch hands
     * its 2xx bytes to data, and ends with CURLE_OPERATION_TIMEDOUT in
     * resp->curl_code after stall_ms without a byte. Both return a handle,
     * or NULL with err set; done then runs exactly once, later (never from
     * inside this call), on the reflector's thread, with the arguments of
     * kn_stream_done_fn. */
    void *(*list)(void *ud, const char *path, kn_stream_done_fn done, void *cb, struct kn_err *err);
    void *(*watch)(void *ud, const char *path, long stall_ms, kn_stream_data_fn data, kn_stream_done_fn done,
                   void *cb, struct kn_err *err);
    /* Ends a stream whose done has not run; done has run (reason
     * "Cancelled") when this returns. */
    void (*cancel)(void *ud, void *stream);
    /* Timers the reflector owns (they cannot fail for want of memory), and a
     * call that runs fn(arg) on the reflector's thread and returns after it. */
    void (*arm)(void *ud, struct kn_timer *t, long delay_ms, kn_loop_fn fn, void *arg);
    void (*disarm)(void *ud, struct kn_timer *t);
    void (*call)(void *ud, kn_loop_fn fn, void *arg);
};

struct kn_reflector *kn_reflector_new_on(const struct kn_rtransport *t, struct kn_queue *q, unsigned long id,
                                         const struct kn_reflector_opts *o, struct kn_err *err);
struct kn_reflector *kn_reflector_new(struct kn_client *c, struct kn_queue *q, unsigned long id,
                                      const struct kn_reflector_opts *o, struct kn_err *err);
/* Stops it and frees it (the store too). */
void kn_reflector_free(struct kn_reflector *r);

void kn_reflector_start(struct kn_reflector *r);
/* After it returns, no event of this reflector is pushed; those already
 * waiting are still delivered. The store keeps its objects. */
void kn_reflector_stop(struct kn_reflector *r);
/* Drops every cached object and waiting event; a running reflector relists. */
void kn_reflector_clear(struct kn_reflector *r);

struct kn_store *kn_reflector_store(struct kn_reflector *r); /* NULL for a raw watch */
int kn_reflector_synced(struct kn_reflector *r);
int kn_reflector_running(struct kn_reflector *r);
void kn_reflector_rv(struct kn_reflector *r, char out[64]);
void kn_reflector_stats(struct kn_reflector *r, struct kn_reflector_stats *out);
/* Which notifications are queued (bits 1 << KN_Q_ADD, KN_Q_UPDATE,
 * KN_Q_DELETE): only those someone handles, so an informer with no handler
 * keeps only its store and costs no queue or Lua time. None until set. */
void kn_reflector_set_notify(struct kn_reflector *r, int mask);
/* The cached objects and the sequence number of the last event pushed, as
 * one consistent picture (for a handler or an index added late); the mask
 * is set in the same step, so nothing falls between the two. Release with
 * kn_store_release. NULL when memory ran out (the mask is then unchanged)
 * or for a raw watch. */
struct kn_obj **kn_reflector_snapshot(struct kn_reflector *r, int mask, size_t *n, unsigned long long *seq);

#endif
