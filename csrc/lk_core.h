/* What the binding's files share: the client userdata. */
#ifndef LK_CORE_H
#define LK_CORE_H

#include <lua.h>

#include "kn_client.h"

struct kn_calls;
struct lclient {
    struct kn_client *c;     /* NULL once closed */
    int informers;           /* live informers using c: it cannot close before them */
    struct kn_calls *calls;  /* background requests (client:request_async), made on first use */
};

/* Pushes the fields of a background request's answer (a KN_Q_REPLY
 * event's payload) into the table on top of the stack: status, body,
 * content_type, http_version, or err. */
void lk_set_reply(lua_State *L, void *payload);

struct lclient *lk_check_client(lua_State *L, int idx);
/* Pushes nil and the error table { code, reason, message }; returns 2. */
int lk_push_err(lua_State *L, const struct kn_err *err);
void lk_informer_register(lua_State *L);
void lk_workqueue_register(lua_State *L);
void lk_signal_register(lua_State *L);
/* Signals (lk_signal.c): handlers installed (nested), and the flag a blocking call watches. */
#include <signal.h>
void lk_signals_begin(int graceful);
void lk_signals_end(void);
int lk_signals_installed(void);
/* the flag a blocking call watches; cleared by this call (a call starts afresh) */
const volatile sig_atomic_t *lk_signal_flag(void);
void lk_signal_clear(void);
/* core.metrics and core.serve (lk_serve.c). */
void lk_serve_register(lua_State *L);
/* The health state of the server userdata at idx (raises if it is not
 * one), for C that reports liveness from its own thread (kn_health_beat). */
struct kn_health;
struct kn_health *lk_server_health(lua_State *L, int idx);

/* For the binding's C tests (spec/c/lua): the event queue of L's informers,
 * and informer:list's body on any store. */
struct kn_queue;
struct kn_store;
struct kn_queue *lk_queue(lua_State *L);
int lk_list(lua_State *L, struct kn_store *s, const char *ns);

#endif
