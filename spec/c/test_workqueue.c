/* kn_workqueue: client-go's work queue semantics on a fake clock (a double
 * the tests advance): dedup, no key on two workers, delays, the rate
 * limiter, shutdown, out-of-memory at every allocation, and a large run.
 * A reference model (plain arrays, O(keys) per step) predicts every get. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_fail.h"
#include "kn_workqueue.h"
#include "test.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

static struct kn_wq_stats stats(const struct kn_wq *q)
{
    struct kn_wq_stats s;
    kn_wq_get_stats(q, &s);
    return s;
}

static size_t records(const struct kn_wq *q)
{
    size_t n = 0;
    CHECK(kn_wq_check(q, &n) == 0);
    return n;
}

/* xorshift64*: the same sequence on every run and machine. */
static unsigned rnd(unsigned long long *s, unsigned n)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (unsigned)((*s * 2685821657736338717ull) >> 33) % n;
}

/* ---- the reference model ---- */

#define MK 64

struct model {
    int keys;
    char name[MK][16];
    int waiting[MK], dirty[MK], processing[MK], delayed[MK], failures[MK];
    int owed[MK]; /* added since it was last handed out: must be handed out again */
    double due[MK], since[MK];
    unsigned long long seq[MK], next_seq, adds;
    int fifo[MK], fifo_len;
};

static void m_init(struct model *m, int keys)
{
    memset(m, 0, sizeof *m);
    m->keys = keys;
    for (int k = 0; k < keys; k++)
        snprintf(m->name[k], sizeof m->name[k], "ns/k%d", k);
}

static void m_enqueue(struct model *m, int k, double since)
{
    if (m->waiting[k] || m->dirty[k])
        return;
    m->adds++;
    m->since[k] = since;
    if (m->processing[k]) {
        m->dirty[k] = 1;
    } else {
        m->waiting[k] = 1;
        m->fifo[m->fifo_len++] = k;
    }
}

static void m_add(struct model *m, int k, double now)
{
    m->owed[k] = 1;
    m_enqueue(m, k, now);
}

static void m_add_after(struct model *m, int k, double d, double now)
{
    if (!(d > 0)) {
        m_add(m, k, now);
        return;
    }
    m->owed[k] = 1;
    if (m->delayed[k] && !(now + d < m->due[k]))
        return;
    m->delayed[k] = 1;
    m->due[k] = now + d;
    m->seq[k] = m->next_seq++;
}

/* The key get hands out, or -1. */
static int m_get(struct model *m, double now, double *waited)
{
    int k;
    for (;;) { /* due keys in (time, order set) order */
        int first = -1;
        for (k = 0; k < m->keys; k++)
            if (m->delayed[k] && m->due[k] <= now &&
                (first < 0 || m->due[k] < m->due[first] || (m->due[k] == m->due[first] && m->seq[k] < m->seq[first])))
                first = k;
        if (first < 0)
            break;
        m->delayed[first] = 0;
        m_enqueue(m, first, m->due[first]);
    }
    if (!m->fifo_len)
        return -1;
    k = m->fifo[0];
    memmove(m->fifo, m->fifo + 1, (size_t)--m->fifo_len * sizeof *m->fifo);
    m->waiting[k] = 0;
    m->processing[k] = 1;
    m->owed[k] = 0;
    *waited = now - m->since[k];
    return k;
}

static void m_done(struct model *m, int k)
{
    m->processing[k] = 0;
    if (m->dirty[k]) {
        m->dirty[k] = 0;
        m->waiting[k] = 1;
        m->fifo[m->fifo_len++] = k;
    }
}

/* Everything the queue shows equals the model, and its invariants hold. */
static int m_agrees(const struct model *m, const struct kn_wq *q, double now)
{
    struct kn_wq_stats s = stats(q);
    size_t delayed = 0, processing = 0, len = 0, remembered = 0, recs;
    double next = -1;
    int ok = 1;
    for (int k = 0; k < m->keys; k++) {
        int has = m->waiting[k] || m->processing[k] || m->delayed[k];
        delayed += m->delayed[k];
        processing += m->processing[k];
        len += m->waiting[k] || m->delayed[k];
        remembered += has || m->failures[k];
        if (m->delayed[k] && (next < 0 || m->due[k] - now < next))
            next = m->due[k] - now > 0 ? m->due[k] - now : 0;
        ok &= kn_wq_has(q, m->name[k]) == has && kn_wq_failures(q, m->name[k]) == m->failures[k];
    }
    ok &= s.depth == (size_t)m->fifo_len && s.delayed == delayed && s.processing == processing && s.adds == m->adds;
    ok &= kn_wq_len(q) == len && NEAR(kn_wq_next_due(q, now), next);
    ok &= kn_wq_check(q, &recs) == 0 && recs == remembered;
    return ok;
}

/* ---- tests ---- */

static void test_dedup(void)
{
    struct kn_wq *q = kn_wq_new(NULL);
    double waited = -1;
    const char *k;
    for (int i = 0; i < 1000; i++)
        CHECK(kn_wq_add(q, "a", 1.0) == 0);
    CHECK(stats(q).depth == 1 && stats(q).adds == 1 && kn_wq_len(q) == 1);
    k = kn_wq_get(q, 3.5, &waited);
    CHECK_STR(k, "a");
    CHECK(NEAR(waited, 2.5));
    CHECK(kn_wq_get(q, 3.5, &waited) == NULL && waited == 0);
    /* added while processing: not handed out again until done */
    for (int i = 0; i < 1000; i++)
        CHECK(kn_wq_add(q, "a", 4.0 + i) == 0);
    CHECK(kn_wq_has(q, "a") && stats(q).depth == 0 && stats(q).processing == 1 && stats(q).adds == 2);
    CHECK(kn_wq_len(q) == 0); /* dirty, not waiting */
    CHECK(kn_wq_get(q, 5, NULL) == NULL);
    CHECK(kn_wq_done(q, "a", 6) == 0);
    CHECK(stats(q).depth == 1 && stats(q).processing == 0);
    CHECK_STR(kn_wq_get(q, 7, &waited), "a");
    CHECK(NEAR(waited, 3)); /* since the first add while processing */
    CHECK(kn_wq_get(q, 7, NULL) == NULL);
    CHECK(kn_wq_done(q, "a", 8) == 0);
    CHECK(kn_wq_done(q, "a", 8) == -1 && kn_wq_done(q, "never", 8) == -1);
    CHECK(!kn_wq_has(q, "a") && kn_wq_get(q, 9, NULL) == NULL && records(q) == 0);
    /* FIFO order, without duplicates */
    kn_wq_add(q, "x", 10);
    kn_wq_add(q, "y", 10);
    kn_wq_add(q, "z", 10);
    kn_wq_add(q, "x", 10);
    CHECK_STR(kn_wq_get(q, 10, NULL), "x");
    kn_wq_add(q, "x", 10); /* dirty: comes after y and z, at done */
    CHECK(kn_wq_done(q, "x", 10) == 0);
    CHECK_STR(kn_wq_get(q, 10, NULL), "y");
    CHECK_STR(kn_wq_get(q, 10, NULL), "z");
    CHECK_STR(kn_wq_get(q, 10, NULL), "x");
    CHECK(records(q) == 3 && stats(q).processing == 3);
    /* the returned string is the queue's copy, not the caller's */
    {
        char key[] = "copied";
        kn_wq_add(q, key, 11);
        key[0] = 'X';
        CHECK(kn_wq_has(q, "copied") && !kn_wq_has(q, key));
        CHECK_STR(kn_wq_get(q, 11, NULL), "copied");
    }
    kn_wq_free(q); /* frees processing keys too */
}

/* Eight workers get, add and finish keys at random against the model: every
 * get is the one predicted; no key is handed out while a worker holds it;
 * every key added is handed out again after its add. */
static void test_random_workers(void)
{
    enum { WORKERS = 8, OPS = 100000 };
    struct model m;
    struct kn_wq *q = kn_wq_new(NULL);
    unsigned long long s = 0x9e3779b97f4a7c15ull;
    int held[WORKERS], holder[MK], disagree = 0, twice = 0, wrong = 0, failed_calls = 0;
    double now = 0;
    m_init(&m, 40);
    for (int w = 0; w < WORKERS; w++)
        held[w] = -1;
    for (int k = 0; k < MK; k++)
        holder[k] = -1;
    for (int op = 0; op < OPS; op++) {
        int w = (int)rnd(&s, WORKERS), k = (int)rnd(&s, (unsigned)m.keys);
        unsigned r = rnd(&s, 100);
        double waited = 0, want_waited = 0;
        now += rnd(&s, 10) * 0.001;
        if (r < 30) {
            failed_calls += kn_wq_add(q, m.name[k], now) != 0;
            m_add(&m, k, now);
        } else if (r < 40) {
            double d = rnd(&s, 500) * 0.001; /* 0 now and then: an add */
            failed_calls += kn_wq_add_after(q, m.name[k], d, now) != 0;
            m_add_after(&m, k, d, now);
        } else if (r < 45) {
            double d = 0;
            failed_calls += kn_wq_add_rate_limited(q, m.name[k], now, &d) != 0 || !(d > 0);
            m.failures[k]++;
            m_add_after(&m, k, d, now);
        } else if (r < 50) {
            kn_wq_forget(q, m.name[k]);
            m.failures[k] = 0;
        } else if (r < 75 || held[w] < 0) {
            const char *got;
            int want;
            if (held[w] >= 0)
                continue;
            got = kn_wq_get(q, now, &waited);
            want = m_get(&m, now, &want_waited);
            if (want < 0 ? got != NULL : !got || strcmp(got, m.name[want]) != 0 || !NEAR(waited, want_waited)) {
                wrong++;
                continue;
            }
            if (want >= 0) {
                twice += holder[want] >= 0;
                holder[want] = w;
                held[w] = want;
            }
        } else {
            failed_calls += kn_wq_done(q, m.name[held[w]], now) != 0;
            m_done(&m, held[w]);
            holder[held[w]] = -1;
            held[w] = -1;
        }
        disagree += !m_agrees(&m, q, now);
        if (disagree + wrong + twice > 0)
            break;
    }
    CHECK_MSG(wrong == 0, "%d gets differ from the model", wrong);
    CHECK_MSG(twice == 0, "%d keys handed out while processing", twice);
    CHECK_MSG(disagree == 0, "the queue's state left the model's");
    /* No more adds: the workers finish, every delay runs out, and what is
     * left is handed out one by one. */
    now += 1e7;
    for (int w = 0; w < WORKERS; w++)
        if (held[w] >= 0) {
            failed_calls += kn_wq_done(q, m.name[held[w]], now) != 0;
            m_done(&m, held[w]);
        }
    for (;;) {
        double waited, want_waited = 0;
        const char *got = kn_wq_get(q, now, &waited);
        int want = m_get(&m, now, &want_waited);
        wrong += want < 0 ? got != NULL : !got || strcmp(got, m.name[want]) != 0 || !NEAR(waited, want_waited);
        if (want < 0 || !got)
            break;
        failed_calls += kn_wq_done(q, got, now) != 0;
        m_done(&m, want);
        disagree += !m_agrees(&m, q, now);
    }
    CHECK(wrong == 0 && disagree == 0);
    CHECK(failed_calls == 0);
    for (int k = 0; k < m.keys; k++)
        CHECK_MSG(!m.owed[k], "%s was added and never handed out", m.name[k]);
    CHECK(kn_wq_len(q) == 0 && stats(q).processing == 0 && kn_wq_next_due(q, now) == -1);
    CHECK(stats(q).adds > 10000 && stats(q).retries > 1000);
    kn_wq_free(q);
}

static void test_delays(void)
{
    struct kn_wq *q = kn_wq_new(NULL);
    double waited;
    CHECK(kn_wq_next_due(q, 0) == -1);
    kn_wq_add_after(q, "a", 3, 0);
    kn_wq_add_after(q, "b", 1, 0);
    kn_wq_add_after(q, "c", 2, 0);
    CHECK(stats(q).delayed == 3 && stats(q).depth == 0 && kn_wq_len(q) == 3 && stats(q).adds == 0);
    CHECK(kn_wq_has(q, "a") && NEAR(kn_wq_next_due(q, 0), 1));
    CHECK(kn_wq_get(q, 0.5, NULL) == NULL && NEAR(kn_wq_next_due(q, 0.5), 0.5));
    CHECK(kn_wq_next_due(q, 1.5) == 0); /* due, not yet promoted */
    CHECK_STR(kn_wq_get(q, 2.5, &waited), "b");
    CHECK(NEAR(waited, 1.5)); /* ready since 1, its due time */
    CHECK(stats(q).depth == 1 && stats(q).delayed == 1 && stats(q).adds == 2);
    CHECK_STR(kn_wq_get(q, 2.5, &waited), "c");
    CHECK(NEAR(waited, 0.5) && NEAR(kn_wq_next_due(q, 2.5), 0.5));
    kn_wq_done(q, "b", 3);
    kn_wq_done(q, "c", 3);
    /* the earliest time wins: a later add_after does not move it, an earlier one does */
    kn_wq_add_after(q, "x", 5, 10);
    kn_wq_add_after(q, "x", 10, 10);
    CHECK(NEAR(kn_wq_next_due(q, 10), 0) && stats(q).delayed == 2); /* a is due since 3 */
    CHECK_STR(kn_wq_get(q, 10, NULL), "a");
    kn_wq_done(q, "a", 10);
    CHECK(NEAR(kn_wq_next_due(q, 10), 5));
    kn_wq_add_after(q, "x", 2, 10);
    CHECK(NEAR(kn_wq_next_due(q, 10), 2) && stats(q).delayed == 1);
    CHECK(kn_wq_get(q, 11.9, NULL) == NULL);
    CHECK_STR(kn_wq_get(q, 12, NULL), "x");
    kn_wq_done(q, "x", 12);
    CHECK(kn_wq_next_due(q, 12) == -1 && records(q) == 0);
    /* due keys come in time order, equal times in the order set; a key
     * added before the get that promotes them is ahead of them all */
    kn_wq_add_after(q, "t3", 3, 20);
    kn_wq_add_after(q, "t1a", 1, 20);
    kn_wq_add_after(q, "t2", 2, 20);
    kn_wq_add_after(q, "t1b", 1, 20);
    kn_wq_add_after(q, "t1c", 4, 20);
    kn_wq_add_after(q, "t1c", 1, 20); /* moved earlier: set after t1b */
    kn_wq_add(q, "now", 30);
    CHECK_STR(kn_wq_get(q, 30, NULL), "now"); /* queued before the get that promotes */
    {
        static const char *const order[] = { "t1a", "t1b", "t1c", "t2", "t3" };
        for (int i = 0; i < 5; i++)
            CHECK_STR(kn_wq_get(q, 30, NULL), order[i]);
    }
    CHECK(kn_wq_get(q, 30, NULL) == NULL);
    kn_wq_free(q);

    /* A delayed key added at once is ready now; its delay stays and, when due,
     * is an add: nothing while it waits, a new run once it was done. */
    q = kn_wq_new(NULL);
    kn_wq_add_after(q, "d", 5, 0);
    kn_wq_add(q, "d", 1);
    CHECK(stats(q).depth == 1 && stats(q).delayed == 1 && kn_wq_len(q) == 1);
    CHECK_STR(kn_wq_get(q, 1, &waited), "d");
    CHECK(NEAR(waited, 0));
    kn_wq_done(q, "d", 2);
    CHECK(kn_wq_has(q, "d") && kn_wq_len(q) == 1);
    CHECK_STR(kn_wq_get(q, 6, &waited), "d");
    CHECK(NEAR(waited, 1) && stats(q).adds == 2);
    kn_wq_done(q, "d", 6);
    /* add_after of a waiting key: recorded; when due while still waiting, nothing */
    kn_wq_add(q, "w", 10);
    kn_wq_add_after(q, "w", 1, 10);
    CHECK(stats(q).depth == 1 && stats(q).delayed == 1 && kn_wq_len(q) == 1);
    CHECK_STR(kn_wq_get(q, 12, NULL), "w");
    CHECK(stats(q).adds == 3 && stats(q).delayed == 0 && kn_wq_get(q, 12, NULL) == NULL);
    /* due while processing: dirty, handed out after done */
    kn_wq_add_after(q, "w", 1, 12);
    CHECK(kn_wq_get(q, 14, NULL) == NULL && stats(q).processing == 1);
    kn_wq_done(q, "w", 15);
    CHECK_STR(kn_wq_get(q, 15, &waited), "w");
    CHECK(NEAR(waited, 2)); /* ready since 13 */
    kn_wq_done(q, "w", 15);
    /* delay <= 0 (and NaN) is add */
    kn_wq_add_after(q, "z", 0, 20);
    kn_wq_add_after(q, "n", NAN, 20);
    kn_wq_add_after(q, "m", -1, 20);
    CHECK(stats(q).depth == 3 && stats(q).delayed == 0);
    CHECK(records(q) == 3);
    kn_wq_free(q);
}

static void test_rate_limiter(void)
{
    struct kn_wq_opts no_bucket = { 0, 0, -1, 0 };
    struct kn_wq *q = kn_wq_new(&no_bucket);
    double d = -1, want = 0.005, now = 0;
    int i;
    /* per key: 5 ms doubling, capped at 1000 s */
    for (i = 0; i < 30; i++) {
        CHECK(kn_wq_add_rate_limited(q, "k", now, &d) == 0);
        CHECK_MSG(NEAR(d, want), "failure %d: delay %g, want %g", i, d, want);
        CHECK(kn_wq_failures(q, "k") == i + 1);
        want = want * 2 > 1000 ? 1000 : want * 2;
    }
    CHECK(d == 1000 && stats(q).retries == 30 && stats(q).delayed == 1);
    CHECK(NEAR(kn_wq_next_due(q, 0), 0.005)); /* the earliest time kept */
    kn_wq_add_rate_limited(q, "other", now, &d);
    CHECK(NEAR(d, 0.005)); /* each key its own */
    kn_wq_forget(q, "k");
    CHECK(kn_wq_failures(q, "k") == 0 && kn_wq_has(q, "k")); /* forget does not remove */
    kn_wq_add_rate_limited(q, "k", now, &d);
    CHECK(NEAR(d, 0.005));
    /* a key remembered only for its failures is kept until forget */
    CHECK_STR(kn_wq_get(q, 1, NULL), "k");
    CHECK_STR(kn_wq_get(q, 1, NULL), "other");
    kn_wq_done(q, "k", 1);
    kn_wq_done(q, "other", 1);
    CHECK(!kn_wq_has(q, "k") && kn_wq_failures(q, "k") == 1 && records(q) == 2);
    kn_wq_forget(q, "k");
    kn_wq_forget(q, "other");
    kn_wq_forget(q, "never");
    CHECK(records(q) == 0);
    kn_wq_free(q);

    /* the bucket (10/s, burst 100): 100 at once, then 0.1 s apart */
    q = kn_wq_new(NULL);
    for (i = 0; i < 110; i++) {
        char key[16];
        snprintf(key, sizeof key, "b%d", i);
        kn_wq_add_rate_limited(q, key, now, &d);
        want = i < 100 ? 0.005 : (i - 99) * 0.1;
        CHECK_MSG(NEAR(d, want), "take %d: delay %g, want %g", i, d, want);
    }
    /* one second refills ten tokens: the deficit of ten is gone, no more */
    now = 1;
    kn_wq_add_rate_limited(q, "late", now, &d);
    CHECK(NEAR(d, 0.1));
    /* the larger of the two: a key's backoff beyond the bucket's delay */
    for (i = 0; i < 10; i++)
        kn_wq_add_rate_limited(q, "slow", now, &d);
    CHECK(NEAR(d, 0.005 * 512)); /* the bucket's would be 1.1 */
    /* long enough refills up to the burst, no more */
    now = 100;
    for (i = 0; i < 101; i++) {
        char key[16];
        snprintf(key, sizeof key, "c%d", i);
        kn_wq_add_rate_limited(q, key, now, &d);
    }
    CHECK(NEAR(d, 0.1));
    kn_wq_free(q);
}

static void shutdown_setup(struct kn_wq *q)
{
    kn_wq_add(q, "c", 0);
    CHECK_STR(kn_wq_get(q, 0, NULL), "c");
    kn_wq_add(q, "c", 0); /* dirty */
    kn_wq_add(q, "a", 0);
    kn_wq_add(q, "b", 0);
    kn_wq_add_after(q, "d", 1, 0);
    kn_wq_add_rate_limited(q, "e", 0, NULL);
}

static void test_shutdown(void)
{
    struct kn_wq *q = kn_wq_new(NULL);
    double d = -1;
    shutdown_setup(q);
    CHECK(!kn_wq_shutting_down(q));
    kn_wq_shutdown(q, 1);
    CHECK(kn_wq_shutting_down(q) && records(q) == 4); /* e: its failure */
    CHECK(!kn_wq_has(q, "d") && !kn_wq_has(q, "e") && stats(q).delayed == 0 && kn_wq_next_due(q, 0) == -1);
    CHECK(kn_wq_add(q, "new", 0) == 0 && kn_wq_add_after(q, "new", 1, 0) == 0);
    CHECK(kn_wq_add_rate_limited(q, "new", 0, &d) == 0 && d == 0 && kn_wq_failures(q, "new") == 0);
    CHECK(!kn_wq_has(q, "new") && stats(q).retries == 1);
    CHECK_STR(kn_wq_get(q, 5, NULL), "a"); /* waiting keys still handed out */
    CHECK_STR(kn_wq_get(q, 5, NULL), "b");
    CHECK(kn_wq_get(q, 5, NULL) == NULL);
    CHECK(kn_wq_done(q, "c", 5) == 0); /* added before the shutdown: runs again */
    CHECK_STR(kn_wq_get(q, 5, NULL), "c");
    kn_wq_done(q, "a", 5);
    kn_wq_done(q, "b", 5);
    kn_wq_done(q, "c", 5);
    CHECK(kn_wq_get(q, 9, NULL) == NULL && kn_wq_len(q) == 0 && records(q) == 1);
    kn_wq_free(q);

    q = kn_wq_new(NULL);
    shutdown_setup(q);
    kn_wq_shutdown(q, 0);
    CHECK(kn_wq_get(q, 5, NULL) == NULL && kn_wq_len(q) == 0 && stats(q).depth == 0);
    CHECK(kn_wq_has(q, "c") && stats(q).processing == 1); /* processing keys finish */
    CHECK(kn_wq_done(q, "c", 5) == 0);
    CHECK(kn_wq_get(q, 5, NULL) == NULL && !kn_wq_has(q, "c") && records(q) == 1);
    kn_wq_free(q);

    /* a drain can be cut short by a second call, not restarted */
    q = kn_wq_new(NULL);
    kn_wq_add(q, "a", 0);
    kn_wq_add(q, "b", 0);
    kn_wq_shutdown(q, 1);
    CHECK_STR(kn_wq_get(q, 0, NULL), "a");
    kn_wq_shutdown(q, 0);
    CHECK(kn_wq_get(q, 0, NULL) == NULL);
    kn_wq_shutdown(q, 1);
    CHECK(kn_wq_done(q, "a", 0) == 0 && records(q) == 0);
    kn_wq_free(q);
}

/* ---- out of memory ---- */

/* A scenario of adds, delays, rate-limited adds, gets and dones over enough
 * keys to grow and shrink the table and the heap. Each call that fails must
 * say so, and must have changed nothing: the model, which skips failed calls,
 * still predicts every get and every count. */
static void oom_scenario(void *arg, unsigned long n)
{
    struct model m;
    struct kn_wq *q;
    unsigned long long s = 12345;
    int held[4] = { -1, -1, -1, -1 }, bad = 0;
    double now = 0;
    (void)arg;
    m_init(&m, MK);
    af_arm(n);
    q = kn_wq_new(NULL);
    if (!q) {
        af_disarm();
        CHECK_MSG(af_failed(), "n=%lu: kn_wq_new returned NULL with memory left", n);
        return;
    }
    for (int op = 0; op < 900 && !bad; op++) {
        int k = (int)rnd(&s, MK), w = (int)rnd(&s, 4), before = af_failed(), rc = 0;
        /* three rounds of mostly adds, then mostly gets: the table and the
         * heap grow and shrink again and again */
        unsigned r = op % 300 < 150 ? rnd(&s, 100) : 50 + rnd(&s, 50);
        double d = 0;
        now += 0.01;
        if (r < 25) {
            rc = kn_wq_add(q, m.name[k], now);
            if (rc == 0)
                m_add(&m, k, now);
        } else if (r < 40) {
            d = 0.05 + rnd(&s, 100) * 0.01;
            rc = kn_wq_add_after(q, m.name[k], d, now);
            if (rc == 0)
                m_add_after(&m, k, d, now);
        } else if (r < 50) {
            rc = kn_wq_add_rate_limited(q, m.name[k], now, &d);
            if (rc == 0) {
                m.failures[k]++;
                m_add_after(&m, k, d, now);
            } else {
                bad += d != 0;
            }
        } else if (held[w] < 0) {
            double waited, want_waited = 0;
            const char *got = kn_wq_get(q, now, &waited);
            int want = m_get(&m, now, &want_waited);
            bad += want < 0 ? got != NULL : !got || strcmp(got, m.name[want]) != 0;
            held[w] = want;
        } else {
            bad += kn_wq_done(q, m.name[held[w]], now) != 0;
            m_done(&m, held[w]);
            held[w] = -1;
        }
        /* -1 exactly when this call met the failed allocation (get and done
         * meet it only in an optional shrink, and must not fail) */
        CHECK_MSG((rc == -1) == (af_failed() && !before && r < 50), "n=%lu op %d: returned %d, allocation %s", n, op,
                  rc, af_failed() && !before ? "failed" : "did not fail");
        bad += !m_agrees(&m, q, now);
    }
    af_disarm();
    CHECK_MSG(!bad, "n=%lu: the queue left the model", n);
    kn_wq_free(q);
}

/* The failures the scenario may meet only by chance: a key the queue
 * already holds, whose delay finds the heap full. */
static void test_oom_held_key(void)
{
    struct kn_wq *q = kn_wq_new(NULL);
    struct kn_wq_stats before;
    char key[16];
    double d = -1;
    kn_wq_add_rate_limited(q, "k", 0, NULL);
    CHECK_STR(kn_wq_get(q, 1, NULL), "k");
    kn_wq_done(q, "k", 1); /* remembered for its failure */
    kn_wq_add(q, "w", 1);  /* waiting */
    for (int i = 0; stats(q).delayed < 16; i++) { /* the heap's first block, full */
        snprintf(key, sizeof key, "d%d", i);
        kn_wq_add_after(q, key, 5, 1);
    }
    kn_wq_get_stats(q, &before);
    af_arm(1); /* each call's first allocation fails: the heap's growth */
    CHECK(kn_wq_add_rate_limited(q, "k", 2, &d) == -1 && d == 0);
    af_arm(1);
    CHECK(kn_wq_add_after(q, "w", 1, 2) == -1);
    af_arm(1);
    CHECK(kn_wq_add_rate_limited(q, "new", 2, NULL) == -1);
    af_disarm();
    CHECK(kn_wq_failures(q, "k") == 1 && !kn_wq_has(q, "k") && !kn_wq_has(q, "new"));
    CHECK(stats(q).delayed == 16 && stats(q).depth == 1 && stats(q).retries == before.retries);
    CHECK(records(q) == 18);
    CHECK(kn_wq_add_rate_limited(q, "k", 2, &d) == 0 && NEAR(d, 0.01)); /* the failure counted once */
    kn_wq_free(q);
}

static void test_oom(void)
{
    unsigned long total = af_every(oom_scenario, NULL);
    CHECK_MSG(total > 50, "the scenario made %lu allocations", total);
    test_oom_held_key();
}

/* A million keys through add, get and done: memory goes back as keys finish. */
static void test_million(void)
{
    enum { N = 1000000 };
    struct kn_wq *q = kn_wq_new(NULL);
    char key[48];
    size_t got = 0, in_order = 1;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "namespace-%d/object-%d", i % 97, i);
        if (kn_wq_add(q, key, i * 1e-6) != 0)
            break;
    }
    CHECK(stats(q).depth == N && records(q) == N);
    for (int i = 0; i < N; i++) {
        const char *k = kn_wq_get(q, 2, NULL);
        if (!k)
            break;
        snprintf(key, sizeof key, "namespace-%d/object-%d", i % 97, i);
        in_order &= strcmp(k, key) == 0;
        got += kn_wq_done(q, key, 2) == 0;
    }
    CHECK(got == N && in_order && records(q) == 0 && kn_wq_get(q, 3, NULL) == NULL);
    kn_wq_free(q);
}

void test_workqueue(void)
{
    test_dedup();
    test_random_workers();
    test_delays();
    test_rate_limiter();
    test_shutdown();
    test_oom();
    test_million();
}
