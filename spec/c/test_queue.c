/* kn_queue: the I/O thread pushes, the Lua thread pops in batches. Order,
 * drop and length must see both the waiting batch and what came in since,
 * and the eventfd must be readable exactly while something waits. */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>

#include "kn_queue.h"
#include "test.h"

static int readable(struct kn_queue *q)
{
    struct pollfd p = { kn_queue_fd(q), POLLIN, 0 };
    return poll(&p, 1, 0) == 1;
}

static void push(struct kn_queue *q, unsigned long source, unsigned long long seq)
{
    struct kn_qevent *ev = kn_qevent_new(KN_Q_UPDATE, source);
    ev->seq = seq;
    kn_queue_push(q, ev);
}

/* Pops one event; 1 if it is (source, seq). */
static int pop_is(struct kn_queue *q, unsigned long source, unsigned long long seq)
{
    struct kn_qevent *ev = kn_queue_pop(q);
    int ok = ev && ev->source == source && ev->seq == seq;
    kn_qevent_free(ev);
    return ok;
}

static void test_batches(void)
{
    struct kn_queue *q = kn_queue_new();
    CHECK(q && !readable(q) && kn_queue_pop(q) == NULL);
    push(q, 1, 1);
    push(q, 2, 1);
    push(q, 1, 2);
    CHECK(readable(q));
    CHECK(pop_is(q, 1, 1)); /* the batch (2, 1), (1, 2) now waits on the consumer's side */
    push(q, 2, 2);          /* and this one on the producer's */
    push(q, 1, 3);
    CHECK(kn_queue_length(q, 0) == 4);
    CHECK(kn_queue_length(q, 1) == 2 && kn_queue_length(q, 2) == 2);
    kn_queue_drop(q, 2);
    CHECK(kn_queue_length(q, 0) == 2 && kn_queue_length(q, 2) == 0);
    CHECK(readable(q));
    CHECK(pop_is(q, 1, 2));
    CHECK(readable(q)); /* (1, 3) is still on the producer's side */
    push(q, 3, 1);      /* after a drop, the tails must still be right */
    CHECK(pop_is(q, 1, 3));
    CHECK(pop_is(q, 3, 1));
    CHECK(!readable(q) && kn_queue_pop(q) == NULL && kn_queue_length(q, 0) == 0);
    /* dropping everything turns the fd off */
    push(q, 4, 1);
    CHECK(pop_is(q, 4, 1) && !readable(q));
    push(q, 5, 1);
    push(q, 5, 2);
    CHECK(pop_is(q, 5, 1));
    push(q, 5, 3);
    kn_queue_drop(q, 5);
    CHECK(!readable(q) && kn_queue_length(q, 0) == 0);
    push(q, 6, 1); /* and a push after it turns it on again */
    CHECK(readable(q) && pop_is(q, 6, 1));
    push(q, 7, 1); /* the queue frees what still waits */
    kn_queue_unref(q);
}

#define N_EVENTS 200000

static void *producer(void *arg)
{
    struct kn_queue *q = arg;
    for (unsigned long long i = 1; i <= N_EVENTS; i++)
        push(q, 1 + (i & 1), i);
    return NULL;
}

/* The two threads at full speed: nothing lost, nothing reordered. */
static void test_threads(void)
{
    struct kn_queue *q = kn_queue_new();
    pthread_t t;
    unsigned long long want = 1, wrong = 0;
    pthread_create(&t, NULL, producer, q);
    while (want <= N_EVENTS) {
        struct kn_qevent *ev = kn_queue_pop(q);
        if (!ev) {
            kn_queue_wait(q, 1000);
            continue;
        }
        wrong += ev->seq != want || ev->source != 1 + (want & 1);
        want++;
        kn_qevent_free(ev);
    }
    pthread_join(t, NULL);
    CHECK(wrong == 0);
    CHECK(!readable(q) && kn_queue_length(q, 0) == 0);
    kn_queue_unref(q);
}

void test_queue(void)
{
    test_batches();
    test_threads();
}
