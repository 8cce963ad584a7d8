/* A scripted fake API server behind the reflector's transport seam
 * (struct kn_rtransport): requests are recorded and stay open until the
 * test answers them; timers wait until the test fires them; calls run at
 * once (the test is the reflector's thread). */
#ifndef FAKE_SERVER_H
#define FAKE_SERVER_H

#include "kn_reflector.h"

#define FAKE_MAX_REQS 64
#define FAKE_MAX_TIMERS 4

struct fake_req {
    char *path;
    int watch;
    long stall_ms;
    int open;
    kn_stream_data_fn data;
    kn_stream_done_fn done;
    void *cb;
};

struct fake {
    struct kn_rtransport t;
    struct fake_req reqs[FAKE_MAX_REQS];
    int nreqs;
    struct kn_timer *timers[FAKE_MAX_TIMERS]; /* armed; ->at holds the delay in seconds */
    int ntimers;
    int refuse;     /* the next list or watch fails to start */
};

void fake_init(struct fake *f);
void fake_free(struct fake *f);       /* the requests' paths */

/* The request still open (at most one is), or NULL. */
struct fake_req *fake_open(struct fake *f);
/* Answers the open list, or ends the open watch, with an HTTP status and body
 * (retry_after -1: no Retry-After). */
void fake_reply(struct fake *f, long status, const char *body, int retry_after);
/* A transport failure of the open request (curl_code as libcurl's; CURLE_OPERATION_TIMEDOUT: the stall limit). */
void fake_fail(struct fake *f, int curl_code, const char *msg);
/* Sends watch lines (JSON, ' for ") on the open watch; when the reflector ends
 * the transfer (a non-zero return), the fake answers 200 as libcurl does. */
void fake_send(struct fake *f, const char *json);
/* Fires the earliest armed timer; its delay in ms, or -1 when none is armed. */
long fake_fire(struct fake *f);
long fake_next_delay(struct fake *f);   /* without firing; -1 when none */

/* A reflector of ConfigMaps (/api/v1/configmaps) over the fake, with every
 * notification on: lists in pages of 2 (FAKE_PAGED), a streaming list
 * first (FAKE_STREAMING), or a raw watch from resourceVersion 10
 * (FAKE_RAW). NULL when it cannot be made (out of memory). */
enum fake_mode { FAKE_PAGED, FAKE_STREAMING, FAKE_RAW };
struct kn_reflector *fake_reflector(struct fake *f, struct kn_queue *q, enum fake_mode mode);

#endif
