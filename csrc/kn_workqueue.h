/* A work queue of string keys for controllers, with client-go's semantics
 * (util/workqueue): keys wait in a FIFO without duplicates; a key handed out
 * by get is "processing" until done, and an add meanwhile only marks it
 * dirty, so it runs again after done and never on two workers at once.
 * Delayed adds sit in a heap of ready times; add_rate_limited delays by the
 * larger of a per-key exponential backoff and an overall token bucket
 * (client-go's DefaultControllerRateLimiter: 5 ms doubling to 1000 s, 10/s
 * with a burst of 100).
 *
 * Time is the caller's: every call that needs it takes `now` in seconds on a
 * monotonic clock, so tests drive a fake clock and the owner decides how to
 * wait for next_due (the Lua loop sleeps on its event queue until then, so an
 * idle queue wakes nothing). One thread only: the Lua thread owns it. */
#ifndef KN_WORKQUEUE_H
#define KN_WORKQUEUE_H

#include <stddef.h>

struct kn_wq;

struct kn_wq_opts {
    double base_delay; /* per-key backoff after the first failure, s; <= 0: 0.005 */
    double max_delay;  /* its cap, s; <= 0: 1000 */
    double qps;        /* the overall bucket's rate; 0: 10; < 0: no bucket */
    int burst;         /* its size; <= 0: 100 */
};

struct kn_wq_stats {
    size_t depth;          /* keys waiting (ready) */
    size_t delayed;        /* keys in the delay heap */
    size_t processing;     /* keys handed out and not yet done */
    /* Adds that queued or dirtied a key, delayed keys coming due included
     * (workqueue_adds_total). client-go counts the same: its Add returns
     * before the metric when the key is already dirty. */
    unsigned long long adds;
    /* add_rate_limited calls that were not ignored (workqueue_retries_total).
     * client-go counts every AddAfter there; ours counts the failures. */
    unsigned long long retries;
};

/* NULL when out of memory. */
struct kn_wq *kn_wq_new(const struct kn_wq_opts *opts);
void kn_wq_free(struct kn_wq *q);

/* 0, or -1 when out of memory (the queue is unchanged). After shutdown, adds
 * are ignored (0). */
int kn_wq_add(struct kn_wq *q, const char *key, double now);
/* delay <= 0 (or NaN) is add. A key already waiting for a later time moves
 * earlier; never later (client-go keeps the earliest ready time). The delay
 * is kept whatever else the key is doing: when it comes due it is an add
 * like any other (nothing if the key still waits; a key added at once in
 * the meantime and done by then runs again, as in client-go). Delayed keys
 * with equal times come due in the order their times were set. */
int kn_wq_add_after(struct kn_wq *q, const char *key, double delay, double now);
/* add_after with the rate limiter's delay for key; counts a failure of key.
 * *delay_out (may be NULL) gets the delay chosen (always > 0). Both limiters
 * count the call, as client-go's MaxOfRateLimiter asks both: the bucket's
 * token is spent even when the backoff is longer. After shutdown: ignored,
 * no failure counted, *delay_out 0. */
int kn_wq_add_rate_limited(struct kn_wq *q, const char *key, double now, double *delay_out);
/* Forgets key's failures (its next rate-limited delay starts again at
 * base_delay); does not remove the key. */
void kn_wq_forget(struct kn_wq *q, const char *key);
/* Failures of key counted since the last forget. */
int kn_wq_failures(const struct kn_wq *q, const char *key);

/* Moves every delayed key whose time has come into the FIFO, then hands out
 * the oldest waiting key: it becomes processing, and the returned string
 * stays valid until kn_wq_done for it. NULL when nothing is ready (or the
 * queue is shut down and empty). *waited (may be NULL) gets the seconds the
 * key waited since it became ready (workqueue_queue_duration_seconds): since
 * its add, or its due time for a delayed key. Never allocates. */
const char *kn_wq_get(struct kn_wq *q, double now, double *waited);
/* Ends processing of key: a key that was added meanwhile waits again (at
 * the FIFO's tail; after a shutdown without drain it is dropped). 0, -1 when
 * key is not processing. Never allocates. */
int kn_wq_done(struct kn_wq *q, const char *key, double now);
/* 1 if key is waiting, delayed or processing. */
int kn_wq_has(const struct kn_wq *q, const char *key);

/* Seconds until the next delayed key is due (0: one is due now), or -1 when
 * nothing is delayed. Ready keys are not counted: check stats.depth. */
double kn_wq_next_due(const struct kn_wq *q, double now);
/* Keys waiting, ready or delayed, each once; not the processing keys that
 * were added again (they wait for done, and count in stats.processing). */
size_t kn_wq_len(const struct kn_wq *q);

/* No new keys from now on; delayed keys are dropped; waiting keys are still
 * handed out when drain is 1, dropped when 0. Processing keys finish. */
void kn_wq_shutdown(struct kn_wq *q, int drain);
int kn_wq_shutting_down(const struct kn_wq *q);
void kn_wq_get_stats(const struct kn_wq *q, struct kn_wq_stats *out);

/* For tests (added with the implementation: after an out-of-memory failure
 * the contract says the queue is unchanged, and only the queue can see its
 * own structures). 0 when every internal invariant holds (table, FIFO, heap
 * and the counts agree; no record outlives its key's state and failures),
 * else -1. *records (may be NULL) gets the number of keys the queue holds
 * memory for, those remembered only for their failures included. O(n). */
int kn_wq_check(const struct kn_wq *q, size_t *records);

#endif
