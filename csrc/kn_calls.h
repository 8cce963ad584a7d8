/* Requests that do not block their caller: each runs kn_client_request (so
 * with the client's credentials, rate limit and retries) on one of a few
 * worker threads, and hands its answer to a callback there. A reconcile in a
 * Lua coroutine waits for its answer this way while other coroutines run,
 * as a goroutine per call does in client-go. Workers start on demand, up to
 * max_threads, and sleep on a condition variable when there is no work, so
 * an idle pool wakes nothing. */
#ifndef KN_CALLS_H
#define KN_CALLS_H

#include "kn_client.h"

struct kn_calls;

/* resp is the callee's: free its body with kn_buf_free. ok is 0 when an HTTP
 * answer came (resp->status), -1 with err when none did. Runs on a worker
 * thread. */
typedef void (*kn_call_done_fn)(void *ud, int ok, struct kn_response *resp, const struct kn_err *err);

/* max_threads <= 0: 16. NULL when out of memory. The client must outlive the pool. */
struct kn_calls *kn_calls_new(struct kn_client *c, int max_threads);
/* Copies req. 0, or -1 with err (out of memory, or the pool is closing);
 * done is called exactly once when 0 is returned, never otherwise. */
int kn_calls_submit(struct kn_calls *p, const struct kn_request *req, kn_call_done_fn done, void *ud,
                    struct kn_err *err);
/* Waits for every submitted call to finish (each ends within its timeout)
 * and for the workers to exit, then frees the pool. */
void kn_calls_free(struct kn_calls *p);
/* Calls submitted and not yet done. */
int kn_calls_pending(struct kn_calls *p);

#endif
