/* The watch stream: a chunked HTTP body of newline-delimited JSON events
 * ({"type": "ADDED", "object": {...}}) cut into lines, and each line turned
 * into an event. No Lua, no I/O: bytes in, events out. */
#ifndef KN_WATCH_H
#define KN_WATCH_H

#include <stddef.h>

#include "kn_buf.h"
#include "kn_err.h"
#include "kn_obj.h"

/* Splits a byte stream into lines. A line may arrive in many chunks, and a
 * chunk may hold many lines; bytes of an unfinished line are kept. */
struct kn_framer {
    struct kn_buf partial;
    size_t max_line;        /* a longer line is an error (default 64 MiB) */
};

/* Feeds bytes; calls on_line for every complete line (without its '\n';
 * empty lines and a trailing '\r' are skipped). Stops and returns the
 * callback's value when it is non-zero; returns -1 with err set when a line
 * grows past max_line; 0 otherwise. */
int kn_framer_feed(struct kn_framer *f, const char *p, size_t n,
                   int (*on_line)(void *ud, const char *line, size_t len), void *ud, struct kn_err *err);
/* Bytes of an unfinished line still held (a stream that ends mid-line lost them). */
size_t kn_framer_pending(const struct kn_framer *f);
void kn_framer_reset(struct kn_framer *f);
void kn_framer_free(struct kn_framer *f);

enum kn_ev_type { KN_EV_ADDED, KN_EV_MODIFIED, KN_EV_DELETED, KN_EV_BOOKMARK, KN_EV_ERROR };

struct kn_watch_event {
    enum kn_ev_type type;
    struct kn_obj *obj;      /* ADDED, MODIFIED, DELETED: the normalized object (a reference the caller owns) */
    char rv[64];             /* the event's resourceVersion (the object's, or the bookmark's) */
    int initial_events_end;  /* BOOKMARK annotated k8s.io/initial-events-end: "true" */
    int code;                /* ERROR: the Status code (410 when the version is too old) */
    char reason[64];         /* ERROR: the Status reason ("Expired", "Gone", ...) */
    char message[256];       /* ERROR: the Status message */
    int rv_too_large;        /* ERROR: the version asked for is newer than the server can serve (see below) */
};

struct kn_json;
/* Whether the metav1.Status at index status says that the resourceVersion
 * asked for is newer than the server can serve yet (its watch cache lags, or
 * etcd went back in time): a cause ResourceVersionTooLarge, or for servers
 * before 1.19 a Timeout whose message says "Too large resource version", as
 * client-go's isTooLargeResourceVersionError reads it. Never allocates. */
int kn_status_rv_too_large(const struct kn_json *j, int status);

/* Parses one line into ev. Returns 0, or -1 with err set for a line that is
 * not a watch event (bad JSON, unknown type, missing object). On success with
 * an object, the caller must kn_obj_unref(ev->obj). */
int kn_watch_parse(const char *line, size_t len, const struct kn_normalize *norm, struct kn_watch_event *ev,
                   struct kn_err *err);

#endif
