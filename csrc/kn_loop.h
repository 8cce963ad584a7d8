/* The I/O thread of a client: one libcurl multi handle, so every request and
 * watch of the client shares one connection pool (HTTP/2: one connection,
 * many streams). Transfers are handed over from any thread; their callbacks
 * (write, header, done) run on the I/O thread and must never call into Lua. */
#ifndef KN_LOOP_H
#define KN_LOOP_H

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>

#include "kn_err.h"

struct kn_loop;

struct kn_xfer {
    CURL *easy;
    /* Called on the I/O thread once the transfer has left the multi handle:
     * rc is CURLE_OK, a transfer error, or CURLE_ABORTED_BY_CALLBACK when it
     * was cancelled or the loop stopped. The easy handle is the caller's to
     * clean up. */
    void (*done)(struct kn_xfer *x, CURLcode rc);
    /* loop-private */
    struct kn_xfer *next;
    int state;
};

struct kn_loop *kn_loop_new(struct kn_err *err);
/* Stops the thread; transfers still running end with CURLE_ABORTED_BY_CALLBACK. */
void kn_loop_free(struct kn_loop *l);

/* Queues a transfer; its done callback will run exactly once. */
void kn_loop_add(struct kn_loop *l, struct kn_xfer *x);
/* Asks for a queued or running transfer to end (done runs with
 * CURLE_ABORTED_BY_CALLBACK unless it already finished). */
void kn_loop_cancel(struct kn_loop *l, struct kn_xfer *x);
/* Runs one transfer to completion, blocking the calling thread. When stop
 * is given and becomes non-zero (a signal handler sets it), the transfer is
 * cancelled within 50 ms and CURLE_ABORTED_BY_CALLBACK returned. */
CURLcode kn_loop_run(struct kn_loop *l, CURL *easy, const volatile sig_atomic_t *stop);

/* pthread_create with every signal blocked in the new thread: signals go to
 * the Lua thread, whose waits they end. */
int kn_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/* Timers and calls: functions that run on the I/O thread, so that state
 * owned by that thread (reflectors) is never touched from another. */
typedef void (*kn_loop_fn)(void *ud);
/* Loop-private, but public in size so that a caller can own one (kn_loop_arm). */
struct kn_timer {
    double at;            /* monotonic seconds */
    kn_loop_fn fn;
    void *ud;
    struct kn_timer *next;
    int owned;            /* the caller's memory: the loop never frees it */
};
/* Runs fn(ud) on the I/O thread after delay_ms (0: at the next turn). The
 * handle stays valid until fn has run or kn_loop_timer_cancel returned. */
struct kn_timer *kn_loop_after(struct kn_loop *l, long delay_ms, kn_loop_fn fn, void *ud);
/* The same with a timer the caller owns, which cannot fail for want of
 * memory (retries that must not be lost). t must not be armed already; it is
 * free again once fn has started or kn_loop_timer_cancel returned. */
void kn_loop_arm(struct kn_loop *l, struct kn_timer *t, long delay_ms, kn_loop_fn fn, void *ud);
/* Cancels a timer that has not fired; safe with NULL. Must be called on the
 * I/O thread, or for a timer whose callback cannot be running. Returns 1 if
 * it was cancelled, 0 if it had already fired. */
int kn_loop_timer_cancel(struct kn_loop *l, struct kn_timer *t);
/* Runs fn(ud) on the I/O thread and waits for it to return. From the I/O
 * thread itself it just calls fn. */
void kn_loop_call(struct kn_loop *l, kn_loop_fn fn, void *ud);
int kn_loop_on_thread(struct kn_loop *l);

/* Connections, known by their local port (CURLINFO_LOCAL_PORT of a transfer
 * on it). The idle hook runs on the I/O thread for every connection that
 * libcurl reads from (it has transfers waiting) and that has received no
 * byte for idle_s seconds, once per silence: a byte starts a new one. It may
 * start transfers; idle_s <= 0 or fn NULL turns it off. */
typedef void (*kn_loop_idle_fn)(void *ud, long port, double last_in);
void kn_loop_on_idle(struct kn_loop *l, double idle_s, kn_loop_idle_fn fn, void *ud);
/* I/O thread only. When a byte last came on the connection (monotonic
 * seconds), or -1 when no socket of the loop has that port. */
double kn_loop_conn_seen(struct kn_loop *l, long port);
/* I/O thread only. Ends the connection under all its transfers (they fail,
 * and libcurl never reuses it). Returns -1 when no socket has that port. */
int kn_loop_conn_kill(struct kn_loop *l, long port);

/* Lock and condition shared with callers that wait for their own transfers. */
void kn_loop_lock(struct kn_loop *l);
void kn_loop_unlock(struct kn_loop *l);
void kn_loop_wait(struct kn_loop *l);
void kn_loop_broadcast(struct kn_loop *l);

#endif
