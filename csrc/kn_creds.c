/* A client's credentials; see kn_creds.h for the shape and the threads. */
#define _GNU_SOURCE /* explicit_bzero */
#include "kn_creds.h"
#include "kn_loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "kn_buf.h"
#include "kn_exec.h"

/* The C tests fail chosen allocations of the credential (spec/c/test_creds.c);
 * elsewhere this is malloc. */
#ifdef KN_TEST_ALLOC
void *kn_test_cred_alloc(size_t n);
#define cred_alloc kn_test_cred_alloc
#else
#define cred_alloc malloc
#endif

/* A kn_cred and what it points to, in one block. */
struct cred {
    struct kn_cred pub; /* first: callers hold &pub */
    atomic_int refs;
    size_t size;        /* of the block, for the wipe */
};

struct kn_creds {
    const struct kn_config *cfg;
    int exec_timeout_ms;
    kn_creds_ready_fn ready;
    void *ud;

    pthread_mutex_t mu; /* guards all below; never held while a plugin runs */
    pthread_cond_t cv;  /* a refresh ended */
    struct cred *cur;   /* what is sent now (one reference is the cache's), or NULL */
    int stale;          /* the server answered 401 */
    int closed;

    /* the exec plugin: its last credential, and the refresh thread */
    struct kn_exec_cred exec;
    int have_exec;
    int refreshing;
    int have_thread;    /* a refresh thread to join */
    pthread_t thread;
    struct kn_err exec_err; /* why the last refresh failed */
    unsigned exec_runs;

    /* the token file, re-read when it changes (rotation) */
    char *file_token;
    struct timespec file_mtime;
    off_t file_size;
    ino_t file_ino;
};

void kn_cred_release(const struct kn_cred *c)
{
    struct cred *k = (struct cred *)c;
    if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
        return;
    explicit_bzero(k, k->size);
    free(k);
}

static const struct kn_cred *cred_ref(struct cred *k)
{
    atomic_fetch_add(&k->refs, 1);
    return &k->pub;
}

/* Builds the credential to send from the plugin's, the token file's and the
 * config's parts, the first present winning. One allocation: when it fails
 * there is no credential and the caller says so, never a partial one. */
static struct cred *cred_make(struct kn_creds *k, struct kn_err *err)
{
    const struct kn_config *cfg = k->cfg;
    const char *token = cfg->token;
    const struct kn_blob *cert = &cfg->cert, *key = &cfg->key;
    size_t tlen, size;
    struct cred *c;
    unsigned char *p;
    if (k->file_token)
        token = k->file_token;
    if (k->have_exec && k->exec.token)
        token = k->exec.token;
    if (k->have_exec && k->exec.cert.len)
        cert = &k->exec.cert, key = &k->exec.key;
    tlen = token ? strlen(token) + 1 : 0;
    size = sizeof *c + tlen + cert->len + key->len;
    c = cred_alloc(size);
    if (!c) {
        kn_err_set(err, 0, "Config", "out of memory for the credential of user \"%s\"",
                   cfg->user_name ? cfg->user_name : "?");
        return NULL;
    }
    memset(c, 0, sizeof *c);
    atomic_init(&c->refs, 1);
    c->size = size;
    p = (unsigned char *)(c + 1);
    if (token) {
        memcpy(p, token, tlen);
        c->pub.token = (const char *)p;
        p += tlen;
    }
    if (cert->len) {
        memcpy(p, cert->data, cert->len);
        c->pub.cert.data = p;
        c->pub.cert.len = cert->len;
        p += cert->len;
        memcpy(p, key->data, key->len);
        c->pub.key.data = p;
        c->pub.key.len = key->len;
    }
    return c;
}

/* Replaces the cached credential; NULL on failure (err set), the old one kept. */
static struct cred *cred_renew(struct kn_creds *k, struct kn_err *err)
{
    struct cred *c = cred_make(k, err);
    if (!c)
        return NULL;
    kn_cred_release(k->cur ? &k->cur->pub : NULL);
    k->cur = c;
    return c;
}

/* Re-reads the token file when it changed (or when force): bound service
 * account tokens rotate about every hour. Under k->mu; a local file, so
 * quick. Returns 1 when the token changed, 0 when not, -1 with err set. */
static int file_token(struct kn_creds *k, int force, struct kn_err *err)
{
    const struct kn_config *cfg = k->cfg;
    struct stat st;
    size_t len;
    char *t;
    if (stat(cfg->token_file, &st) < 0)
        return kn_err_set(err, 0, "Config", "%s: cannot read the token file %s: %s", cfg->origin, cfg->token_file,
                          strerror(errno));
    if (!force && k->file_token && st.st_mtim.tv_sec == k->file_mtime.tv_sec &&
        st.st_mtim.tv_nsec == k->file_mtime.tv_nsec && st.st_size == k->file_size && st.st_ino == k->file_ino)
        return 0;
    t = kn_read_file(cfg->token_file, &len);
    if (!t)
        return kn_err_set(err, 0, "Config", "%s: cannot read the token file %s: %s", cfg->origin, cfg->token_file,
                          strerror(errno));
    while (len && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' '))
        t[--len] = '\0';
    if (!len) {
        free(t);
        return kn_err_set(err, 0, "Config", "%s: the token file %s is empty", cfg->origin, cfg->token_file);
    }
    if (k->file_token)
        explicit_bzero(k->file_token, strlen(k->file_token));
    free(k->file_token);
    k->file_token = t;
    k->file_mtime = st.st_mtim;
    k->file_size = st.st_size;
    k->file_ino = st.st_ino;
    return 1;
}

/* Whether the plugin must run before anything is sent. */
static int exec_due(struct kn_creds *k)
{
    return k->cfg->exec && (!k->have_exec || k->stale || (k->exec.expiry != 0 && time(NULL) >= k->exec.expiry));
}

static void *refresh_main(void *arg)
{
    struct kn_creds *k = arg;
    struct kn_exec_cred got;
    struct kn_err err = { 0, "", "" };
    int rc, tell;
    memset(&got, 0, sizeof got);
    rc = kn_exec_run(k->cfg, k->exec_timeout_ms, &got, &err);
    pthread_mutex_lock(&k->mu);
    kn_exec_cred_clear(&k->exec);
    k->have_exec = 0;
    if (rc == 0) {
        k->exec = got; /* moved: nothing left to wipe in got */
        k->have_exec = 1;
        if (!cred_renew(k, &err))
            rc = -1;
    }
    if (rc < 0) {
        /* nothing to send until a refresh succeeds: the old credential
         * expired or was refused, or this is the first */
        kn_exec_cred_clear(&k->exec);
        k->have_exec = 0;
        kn_cred_release(k->cur ? &k->cur->pub : NULL);
        k->cur = NULL;
        k->exec_err = err;
    }
    k->refreshing = 0;
    tell = !k->closed;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    /* outside the lock; kn_creds_close joins this thread before its caller
     * frees what ready() touches */
    if (tell && k->ready)
        k->ready(k->ud);
    return NULL;
}

/* Starts the plugin on a refresh thread, under k->mu. */
static int refresh_start(struct kn_creds *k, struct kn_err *err)
{
    int rc;
    if (k->closed)
        return kn_err_set(err, 0, "Config", "the client is closed");
    if (k->have_thread) {
        /* the last refresh's thread has ended its work (refreshing is 0):
         * at most it is returning from ready() */
        pthread_join(k->thread, NULL);
        k->have_thread = 0;
    }
    k->stale = 0;
    k->refreshing = 1;
    k->exec_runs++;
    rc = kn_thread_start(&k->thread, refresh_main, k);
    if (rc != 0) {
        k->refreshing = 0;
        return kn_err_set(err, 0, "ExecPlugin", "cannot start a thread for the exec plugin: %s", strerror(rc));
    }
    k->have_thread = 1;
    return 0;
}

/* The current credential once no plugin needs to run: the token file
 * checked, the cache filled. Under k->mu. */
static const struct kn_cred *current(struct kn_creds *k, int force_file, struct kn_err *err)
{
    const struct kn_config *cfg = k->cfg;
    if (cfg->exec && !k->have_exec) {
        if (k->exec_err.reason[0])
            *err = k->exec_err;
        else
            kn_err_set(err, 0, "ExecPlugin", "the exec plugin gave no credential");
        return NULL;
    }
    if (cfg->token_file && !(cfg->exec && k->exec.token)) {
        int changed = file_token(k, force_file || k->stale, err);
        if (changed < 0)
            return NULL;
        k->stale = 0;
        if (changed && !cred_renew(k, err))
            return NULL;
    }
    if (!k->cur && !cred_renew(k, err))
        return NULL;
    return cred_ref(k->cur);
}

struct kn_creds *kn_creds_new(const struct kn_config *cfg, int exec_timeout_ms, kn_creds_ready_fn ready, void *ud,
                              struct kn_err *err)
{
    struct kn_creds *k = calloc(1, sizeof *k);
    if (!k) {
        kn_err_set(err, 0, "Config", "out of memory");
        return NULL;
    }
    k->cfg = cfg;
    k->exec_timeout_ms = exec_timeout_ms;
    k->ready = ready;
    k->ud = ud;
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    return k;
}

void kn_creds_close(struct kn_creds *k)
{
    int join;
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    k->closed = 1;
    join = k->have_thread;
    k->have_thread = 0;
    pthread_mutex_unlock(&k->mu);
    if (join)
        pthread_join(k->thread, NULL);
}

void kn_creds_free(struct kn_creds *k)
{
    if (!k)
        return;
    kn_creds_close(k);
    kn_cred_release(k->cur ? &k->cur->pub : NULL);
    kn_exec_cred_clear(&k->exec);
    if (k->file_token)
        explicit_bzero(k->file_token, strlen(k->file_token));
    free(k->file_token);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    free(k);
}

const struct kn_cred *kn_creds_get(struct kn_creds *k, int refresh, struct kn_err *err)
{
    const struct kn_cred *c;
    pthread_mutex_lock(&k->mu);
    if (refresh)
        k->stale = 1;
    if (exec_due(k) || k->refreshing) {
        /* one refresh at a time: join the one running, else start one */
        if (!k->refreshing && refresh_start(k, err) < 0) {
            pthread_mutex_unlock(&k->mu);
            return NULL;
        }
        while (k->refreshing)
            pthread_cond_wait(&k->cv, &k->mu);
    }
    /* the plugin's answer is used even when it expires at once: asking again
     * would loop */
    c = current(k, refresh, err);
    pthread_mutex_unlock(&k->mu);
    return c;
}

const struct kn_cred *kn_creds_poll(struct kn_creds *k, int may_refresh, int *pending, struct kn_err *err)
{
    const struct kn_cred *c = NULL;
    *pending = 0;
    pthread_mutex_lock(&k->mu);
    if (k->refreshing) {
        *pending = 1;
    } else if (may_refresh && exec_due(k)) {
        if (refresh_start(k, err) == 0)
            *pending = 1;
    } else {
        c = current(k, 0, err);
    }
    pthread_mutex_unlock(&k->mu);
    return c;
}

void kn_creds_stale(struct kn_creds *k)
{
    pthread_mutex_lock(&k->mu);
    k->stale = 1;
    pthread_mutex_unlock(&k->mu);
}

unsigned kn_creds_exec_runs(struct kn_creds *k)
{
    unsigned n;
    pthread_mutex_lock(&k->mu);
    n = k->exec_runs;
    pthread_mutex_unlock(&k->mu);
    return n;
}
