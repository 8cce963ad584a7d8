/* What /healthz and /readyz answer from: a few atomics that their owners
 * update from any thread without waiting for anything, read by the HTTP
 * server's thread at request time.
 *
 * - The Lua loop: kn_health_waiting when it blocks for events (healthy however
 *   long it idles), kn_health_busy when it starts running callbacks. Busy for
 *   longer than busy_threshold means a callback is stuck: unhealthy.
 * - Liveness checks: named, each with a last beat and a max age (a thread
 *   that beats, such as a client's I/O thread); a check fails when its beat is
 *   older than its max age, or at once when its owner marks it down.
 * - Ready: set by the owner once every informer has synced.
 *
 * Times come from the clock given in the options (monotonic seconds by
 * default; the tests pass a fake one). The owner frees it after the server
 * that reads it has stopped. */
#ifndef KN_HEALTH_H
#define KN_HEALTH_H

#include <stddef.h>

#include "kn_err.h"

#define KN_HEALTH_MAX_CHECKS 16
#define KN_HEALTH_NAME 48   /* a check's name, NUL included */
#define KN_HEALTH_REASON 160 /* the reason given to kn_health_down, NUL included */
#define KN_HEALTH_DEFAULT_BUSY 30.0

struct kn_health;

struct kn_health_opts {
    double busy_threshold;        /* seconds; <= 0 or NaN: KN_HEALTH_DEFAULT_BUSY */
    double (*now)(void *clock_ud); /* monotonic seconds, callable from any thread; NULL: CLOCK_MONOTONIC */
    void *clock_ud;
};

/* NULL when out of memory. opts may be NULL. The loop starts "waiting", not
 * ready, with no checks. */
struct kn_health *kn_health_new(const struct kn_health_opts *opts);
void kn_health_free(struct kn_health *h);

/* The Lua loop's state. Never block: one atomic store each. */
void kn_health_busy(struct kn_health *h);
void kn_health_waiting(struct kn_health *h);

void kn_health_set_ready(struct kn_health *h, int ready);
int kn_health_ready(const struct kn_health *h);

/* Adds a liveness check, alive as of now; max_age <= 0 (or NaN): no age
 * limit, only kn_health_down fails it. Returns its id (>= 0), or -1 with err
 * (the name empty, too long, not printable ASCII or taken; more than
 * KN_HEALTH_MAX_CHECKS). Checks are never removed. */
int kn_health_add_check(struct kn_health *h, const char *name, double max_age, struct kn_err *err);
/* The id of a check, or -1. */
int kn_health_find(const struct kn_health *h, const char *name);
/* The check's owner is alive now (and no longer down). An atomic store: any
 * thread, as often as it likes. A bad id is ignored. */
void kn_health_beat(struct kn_health *h, int id);
/* The check fails at once, with reason (one line, cut at
 * KN_HEALTH_REASON - 1 bytes; may be NULL), until the next beat. */
void kn_health_down(struct kn_health *h, int id, const char *reason);

/* 1 when healthy; 0 with one line in reason (size n) saying what failed
 * first: the Lua loop's stuck callback, then the checks in the order added. */
int kn_health_check(struct kn_health *h, char *reason, size_t n);

#endif
