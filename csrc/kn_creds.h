/* The credentials of one client: the config's static token and certificate,
 * a token file re-read when it rotates, and an exec plugin's credential.
 *
 * A plugin may take seconds (a cloud SDK, a browser login), so it runs on a
 * refresh thread of its own, never on the caller's thread and never under a
 * lock another thread needs: the I/O thread asks with kn_creds_poll, which
 * never waits, and learns from ready() when a refresh has ended; a thread
 * that can wait (a blocking request) uses kn_creds_get.
 *
 * What is sent is a kn_cred: made once per refresh in one allocation,
 * immutable, shared by reference. Handing one to a transfer copies nothing,
 * so it cannot fail half-way (a request without the plugin's certificate);
 * a credential that cannot be made is the refresh's error. */
#ifndef KN_CREDS_H
#define KN_CREDS_H

#include "kn_config.h"
#include "kn_err.h"

struct kn_cred {
    const char *token;        /* bearer token, or NULL */
    struct kn_blob cert, key; /* client certificate and key (PEM), or empty */
};

struct kn_creds;

/* Called on the refresh thread when a refresh has ended, well or not, after
 * its outcome is visible to kn_creds_poll; never under the creds' lock. */
typedef void (*kn_creds_ready_fn)(void *ud);

/* cfg is borrowed and must outlive the creds. exec_timeout_ms bounds one run
 * of the plugin. */
struct kn_creds *kn_creds_new(const struct kn_config *cfg, int exec_timeout_ms, kn_creds_ready_fn ready, void *ud,
                              struct kn_err *err);
/* No refresh starts from now on (callers get an error) and ready() is not
 * called again; waits for a refresh in flight, so it may take as long as the
 * plugin's run. */
void kn_creds_close(struct kn_creds *k);
/* Closes, then frees; credentials still held by callers stay valid. */
void kn_creds_free(struct kn_creds *k);

/* The credential to send, blocking while a plugin runs: refreshed first when
 * the exec credential is missing, expired or rejected (refresh: the server
 * answered 401 to the last one), and the token file re-read when it changed
 * (or, with refresh, in any case). NULL with err set when there is none.
 * Not for the I/O thread: use kn_creds_poll there. */
const struct kn_cred *kn_creds_get(struct kn_creds *k, int refresh, struct kn_err *err);

/* The same without ever waiting for a plugin. Returns the credential, or
 * NULL with *pending set when a refresh is running (one is started when
 * may_refresh and one is due; ready() tells when it ends), or NULL with err
 * set. Without may_refresh no refresh starts: the credential the last one
 * gave is returned, or the error it ended with. */
const struct kn_cred *kn_creds_poll(struct kn_creds *k, int may_refresh, int *pending, struct kn_err *err);

/* The server answered 401 to a credential: the next get or poll refreshes. */
void kn_creds_stale(struct kn_creds *k);
unsigned kn_creds_exec_runs(struct kn_creds *k);

/* Drops a reference from get or poll; the last one wipes the secrets. */
void kn_cred_release(const struct kn_cred *c);

#endif
