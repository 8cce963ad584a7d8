/* kn_creds: a slow exec plugin runs on the refresh thread while kn_creds_poll
 * answers at once; one refresh serves every waiter; a credential that
 * cannot be made (no memory) is an error, never one without its certificate. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kn_creds.h"
#include "test.h"

/* The allocation hook of kn_creds.c in this build (-DKN_TEST_ALLOC): when
 * fail_next is set, the next credential allocation fails. */
static int fail_next;

void *kn_test_cred_alloc(size_t n)
{
    if (__atomic_exchange_n(&fail_next, 0, __ATOMIC_SEQ_CST))
        return NULL;
    return malloc(n);
}

struct ready {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
};

static void on_ready(void *ud)
{
    struct ready *r = ud;
    pthread_mutex_lock(&r->mu);
    r->n++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Waits up to 10 s for ready() to have run n times. */
static int wait_ready(struct ready *r, int n)
{
    struct timespec until;
    int ok;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&r->mu);
    while (r->n < n && pthread_cond_timedwait(&r->cv, &r->mu, &until) == 0)
        ;
    ok = r->n >= n;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

#define CRED_JSON(status) \
    "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{" status "}}'\n"

struct getter {
    struct kn_creds *k;
    const struct kn_cred *got;
    struct kn_err err;
};

static void *get_main(void *arg)
{
    struct getter *g = arg;
    g->got = kn_creds_get(g->k, 0, &g->err);
    return NULL;
}

static void slow_plugin(const char *dir)
{
    char *cmd = t_write(dir, "slow.sh", "#!/bin/sh\nsleep 1\n" CRED_JSON("\"token\":\"slow-token\""), 0755);
    struct kn_exec ex = { "client.authentication.k8s.io/v1", cmd, NULL, NULL, 0, NULL };
    struct kn_config cfg = { 0 };
    struct ready r = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    struct kn_err err = { 0, "", "" };
    struct getter g = { 0 };
    const struct kn_cred *c;
    struct kn_creds *k;
    pthread_t th;
    int pending = 0;
    double t0;

    cfg.origin = "test";
    cfg.user_name = "u";
    cfg.exec = &ex;
    k = kn_creds_new(&cfg, 5000, on_ready, &r, &err);
    CHECK(k != NULL);

    /* the I/O thread's question is answered at once while the plugin sleeps */
    t0 = now_s();
    c = kn_creds_poll(k, 1, &pending, &err);
    CHECK(c == NULL && pending == 1);
    CHECK_MSG(now_s() - t0 < 0.2, "poll took %.3f s while the plugin ran", now_s() - t0);
    c = kn_creds_poll(k, 1, &pending, &err);
    CHECK(c == NULL && pending == 1);

    /* a blocking caller joins the same refresh rather than starting another */
    g.k = k;
    CHECK(pthread_create(&th, NULL, get_main, &g) == 0);
    CHECK(wait_ready(&r, 1));
    pthread_join(th, NULL);
    CHECK(g.got != NULL);
    if (g.got)
        CHECK_STR(g.got->token, "slow-token");
    kn_cred_release(g.got);
    CHECK(kn_creds_exec_runs(k) == 1);

    c = kn_creds_poll(k, 0, &pending, &err);
    CHECK(c != NULL && pending == 0);
    if (c)
        CHECK_STR(c->token, "slow-token");
    kn_cred_release(c);

    /* a 401: the next poll starts a refresh and answers at once again */
    kn_creds_stale(k);
    t0 = now_s();
    c = kn_creds_poll(k, 1, &pending, &err);
    CHECK(c == NULL && pending == 1 && now_s() - t0 < 0.2);
    /* freed while the plugin runs: waits for it, no ready() after close, no leak */
    kn_creds_free(k);
    free(cmd);
}

static void failing_plugin(const char *dir)
{
    char *cmd = t_write(dir, "fail.sh", "#!/bin/sh\nexit 3\n", 0755);
    struct kn_exec ex = { "client.authentication.k8s.io/v1", cmd, NULL, NULL, 0, NULL };
    struct kn_config cfg = { 0 };
    struct ready r = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    struct kn_err err = { 0, "", "" };
    const struct kn_cred *c;
    struct kn_creds *k;
    int pending = 0;

    cfg.origin = "test";
    cfg.user_name = "u";
    cfg.exec = &ex;
    k = kn_creds_new(&cfg, 5000, on_ready, &r, &err);
    c = kn_creds_poll(k, 1, &pending, &err);
    CHECK(c == NULL && pending == 1);
    CHECK(wait_ready(&r, 1));
    /* the waiters get the refresh's error, and asking so starts no new run */
    c = kn_creds_poll(k, 0, &pending, &err);
    CHECK(c == NULL && pending == 0);
    CHECK_STR(err.reason, "ExecPlugin");
    CHECK_HAS(err.msg, "exited with status 3");
    CHECK(kn_creds_exec_runs(k) == 1);
    /* a later stream or request tries again */
    c = kn_creds_poll(k, 1, &pending, &err);
    CHECK(c == NULL && pending == 1);
    CHECK(wait_ready(&r, 2));
    CHECK(kn_creds_exec_runs(k) == 2);
    kn_creds_free(k);
    free(cmd);
}

/* Every allocation of a credential fails in turn (there is one per
 * credential: the block holding token, certificate and key): the answer is
 * "out of memory", never a credential without the certificate; the next
 * attempt works. */
static void no_memory(const char *dir)
{
    char *cmd = t_write(dir, "cert.sh", "#!/bin/sh\n"
                        CRED_JSON("\"clientCertificateData\":\"CERT-PEM\",\"clientKeyData\":\"KEY-PEM\""), 0755);
    struct kn_exec ex = { "client.authentication.k8s.io/v1", cmd, NULL, NULL, 0, NULL };
    struct kn_config cfg = { 0 };
    struct kn_err err = { 0, "", "" };
    const struct kn_cred *c;
    struct kn_creds *k;

    cfg.origin = "test";
    cfg.user_name = "u";
    cfg.exec = &ex;
    k = kn_creds_new(&cfg, 5000, NULL, NULL, &err);
    fail_next = 1;
    c = kn_creds_get(k, 0, &err);
    CHECK(c == NULL);
    CHECK_HAS(err.msg, "out of memory");
    CHECK_HAS(err.msg, "\"u\"");
    CHECK(fail_next == 0); /* the failure was the credential's allocation */
    c = kn_creds_get(k, 0, &err);
    CHECK(c != NULL);
    if (c) {
        CHECK(c->cert.len == 8 && memcmp(c->cert.data, "CERT-PEM", 8) == 0);
        CHECK(c->key.len == 7 && memcmp(c->key.data, "KEY-PEM", 7) == 0);
        CHECK(c->token == NULL);
    }
    kn_cred_release(c);
    CHECK(kn_creds_exec_runs(k) == 2);
    kn_creds_free(k);

    /* the static credential of the config alike */
    cfg.exec = NULL;
    cfg.token = "static-token";
    cfg.cert.data = (unsigned char *)"C";
    cfg.cert.len = 1;
    cfg.key.data = (unsigned char *)"K";
    cfg.key.len = 1;
    k = kn_creds_new(&cfg, 5000, NULL, NULL, &err);
    fail_next = 1;
    CHECK(kn_creds_get(k, 0, &err) == NULL);
    CHECK_HAS(err.msg, "out of memory");
    c = kn_creds_get(k, 0, &err);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->token, "static-token");
        CHECK(c->cert.len == 1 && c->key.len == 1);
    }
    /* a credential held by a transfer outlives the creds */
    kn_creds_free(k);
    if (c)
        CHECK_STR(c->token, "static-token");
    kn_cred_release(c);
    free(cmd);
}

void test_creds(void)
{
    char *dir = t_mkdtemp();
    slow_plugin(dir);
    failing_plugin(dir);
    no_memory(dir);
    t_rmtree(dir);
}
