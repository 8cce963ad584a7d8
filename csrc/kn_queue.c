#include "kn_queue.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct kn_queue {
    int refs;
    pthread_mutex_t mu;
    struct kn_qevent *head, *tail;
    size_t len;
    int efd;       /* readable while len > 0 */
};

struct kn_queue *kn_queue_new(void)
{
    struct kn_queue *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        free(q);
        return NULL;
    }
    q->refs = 1;
    pthread_mutex_init(&q->mu, NULL);
    return q;
}

struct kn_queue *kn_queue_ref(struct kn_queue *q)
{
    __atomic_add_fetch(&q->refs, 1, __ATOMIC_ACQ_REL);
    return q;
}

void kn_queue_unref(struct kn_queue *q)
{
    struct kn_qevent *ev, *next;
    if (!q || __atomic_sub_fetch(&q->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    for (ev = q->head; ev; ev = next) {
        next = ev->next;
        kn_qevent_free(ev);
    }
    close(q->efd);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

struct kn_qevent *kn_qevent_new(enum kn_qtype type, unsigned long source)
{
    struct kn_qevent *ev = calloc(1, sizeof *ev);
    if (ev) {
        ev->type = type;
        ev->source = source;
    }
    return ev;
}

void kn_qevent_free(struct kn_qevent *ev)
{
    if (!ev)
        return;
    kn_obj_unref(ev->old);
    kn_obj_unref(ev->obj);
    free(ev->message);
    free(ev);
}

/* The eventfd counts nothing: it is 1 while events wait, 0 otherwise. */
static void signal_fd(struct kn_queue *q, int on)
{
    uint64_t v = 1;
    if (on) {
        while (write(q->efd, &v, sizeof v) < 0 && errno == EINTR)
            ;
    } else {
        while (read(q->efd, &v, sizeof v) < 0 && errno == EINTR)
            ;
    }
}

void kn_queue_push(struct kn_queue *q, struct kn_qevent *ev)
{
    ev->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->tail)
        q->tail->next = ev;
    else
        q->head = ev;
    q->tail = ev;
    if (q->len++ == 0)
        signal_fd(q, 1);
    pthread_mutex_unlock(&q->mu);
}

struct kn_qevent *kn_queue_pop(struct kn_queue *q)
{
    struct kn_qevent *ev;
    pthread_mutex_lock(&q->mu);
    ev = q->head;
    if (ev) {
        q->head = ev->next;
        if (!q->head)
            q->tail = NULL;
        if (--q->len == 0)
            signal_fd(q, 0);
        ev->next = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    return ev;
}

int kn_queue_wait(struct kn_queue *q, int timeout_ms)
{
    struct pollfd p = { q->efd, POLLIN, 0 };
    int rc;
    do
        rc = poll(&p, 1, timeout_ms);
    while (rc < 0 && errno == EINTR);
    return rc > 0;
}

void kn_queue_drop(struct kn_queue *q, unsigned long source)
{
    struct kn_qevent **p, *dropped = NULL;
    pthread_mutex_lock(&q->mu);
    for (p = &q->head; *p;) {
        struct kn_qevent *ev = *p;
        if (ev->source == source) {
            *p = ev->next;
            ev->next = dropped;
            dropped = ev;
            q->len--;
        } else {
            p = &ev->next;
        }
    }
    q->tail = NULL;
    for (struct kn_qevent *ev = q->head; ev; ev = ev->next)
        q->tail = ev;
    if (q->len == 0 && dropped)
        signal_fd(q, 0);
    pthread_mutex_unlock(&q->mu);
    while (dropped) {
        struct kn_qevent *next = dropped->next;
        kn_qevent_free(dropped);
        dropped = next;
    }
}

size_t kn_queue_length(struct kn_queue *q, unsigned long source)
{
    size_t n = 0;
    pthread_mutex_lock(&q->mu);
    if (!source)
        n = q->len;
    else
        for (struct kn_qevent *ev = q->head; ev; ev = ev->next)
            n += ev->source == source;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int kn_queue_fd(struct kn_queue *q)
{
    return q->efd;
}
