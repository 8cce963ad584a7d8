/* The reflector's transport over a client: its streams and its I/O thread's
 * timers (see struct kn_rtransport in kn_reflector.h). */
#include "kn_reflector_client.h"

static void *client_list(void *ud, const char *path, kn_stream_done_fn done, void *cb, struct kn_err *err)
{
    struct kn_request req = {0};
    req.method = "GET";
    req.path = path;
    return kn_client_stream(ud, &req, 0, NULL, done, cb, err);
}

static void *client_watch(void *ud, const char *path, long stall_ms, kn_stream_data_fn data, kn_stream_done_fn done,
                          void *cb, struct kn_err *err)
{
    struct kn_request req = {0};
    req.method = "GET";
    req.path = path;
    req.timeout_ms = (int)stall_ms;
    return kn_client_stream(ud, &req, 1, data, done, cb, err);
}

static void client_cancel(void *ud, void *stream)
{
    (void)ud;
    kn_stream_cancel(stream);
}

static void client_arm(void *ud, struct kn_timer *t, long delay_ms, kn_loop_fn fn, void *arg)
{
    kn_loop_arm(kn_client_loop(ud), t, delay_ms, fn, arg);
}

static void client_disarm(void *ud, struct kn_timer *t)
{
    kn_loop_timer_cancel(kn_client_loop(ud), t);
}

static void client_call(void *ud, kn_loop_fn fn, void *arg)
{
    kn_loop_call(kn_client_loop(ud), fn, arg);
}

void kn_rtransport_client(struct kn_client *c, struct kn_rtransport *out)
{
    out->ud = c;
    out->list = client_list;
    out->watch = client_watch;
    out->cancel = client_cancel;
    out->arm = client_arm;
    out->disarm = client_disarm;
    out->call = client_call;
}
