/* kinformer.core: the Lua binding, the only C file that knows Lua. It turns
 * core structs into userdata and tables; arguments are checked by the Lua
 * face (lua/kinformer), so misuse here is a plain argument error. */
#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "kn_calls.h"
#include "kn_client.h"
#include "kn_config.h"
#include "lk_core.h"
#include "lk_json.h"
#include "kn_queue.h"

#define CLIENT_MT "kinformer.core.client"

/* nil, { code, reason, message }: the one error shape of the core; the Lua
 * face gives it a metatable. */
int lk_push_err(lua_State *L, const struct kn_err *err)
{
    lua_pushnil(L);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, err->code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, err->reason);
    lua_setfield(L, -2, "reason");
    lua_pushstring(L, err->msg);
    lua_setfield(L, -2, "message");
    return 2;
}

static const char *opt_string(lua_State *L, int t, const char *key)
{
    const char *s;
    lua_getfield(L, t, key);
    s = lua_tostring(L, -1); /* stays alive: the value is in the options table */
    lua_pop(L, 1);
    return s;
}

struct lclient *lk_check_client(lua_State *L, int idx)
{
    struct lclient *lc = luaL_checkudata(L, idx, CLIENT_MT);
    if (!lc->c)
        luaL_error(L, "kinformer: the client is closed");
    return lc;
}

static struct kn_client *check_client(lua_State *L)
{
    return lk_check_client(L, 1)->c;
}

/* core.client{ kubeconfig=, context=, in_cluster=, timeout= } */
static int l_client(lua_State *L)
{
    struct kn_config_opts o = {0};
    struct kn_client_opts co = {0};
    struct kn_err err = {0};
    struct kn_config *cfg;
    struct lclient *lc;
    luaL_checktype(L, 1, LUA_TTABLE);
    o.kubeconfig = opt_string(L, 1, "kubeconfig");
    o.context = opt_string(L, 1, "context");
    lua_getfield(L, 1, "in_cluster");
    o.in_cluster = lua_toboolean(L, -1);
    lua_getfield(L, 1, "timeout");
    co.timeout_ms = (int)(luaL_optnumber(L, -1, 0) * 1000);
    lua_getfield(L, 1, "qps");
    co.qps = luaL_optnumber(L, -1, 0);
    lua_getfield(L, 1, "burst");
    co.burst = (int)luaL_optinteger(L, -1, 0);
    lua_getfield(L, 1, "max_retries");
    co.max_retries = (int)luaL_optinteger(L, -1, 0);
    lua_getfield(L, 1, "http1");
    co.http1 = lua_toboolean(L, -1);
    /* seconds; nil: the default, 0: no probing */
    lua_getfield(L, 1, "ping_interval");
    if (!lua_isnil(L, -1))
        co.ping_interval_ms = lua_tonumber(L, -1) > 0 ? (int)(lua_tonumber(L, -1) * 1000) : -1;
    lua_getfield(L, 1, "ping_timeout");
    co.ping_timeout_ms = (int)(luaL_optnumber(L, -1, 0) * 1000);
    lua_pop(L, 8);

    lc = lua_newuserdatauv(L, sizeof *lc, 0);
    lc->c = NULL;
    lc->informers = 0;
    lc->calls = NULL;
    luaL_setmetatable(L, CLIENT_MT);
    cfg = kn_config_load(&o, &err);
    if (!cfg)
        return lk_push_err(L, &err);
    lc->c = kn_client_new(cfg, &co, &err);
    if (!lc->c)
        return lk_push_err(L, &err);
    return 1;
}

/* Reads the request table at index 2 (its strings stay in it). */
static void read_request(lua_State *L, struct kn_request *req)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    req->method = opt_string(L, 2, "method");
    req->path = opt_string(L, 2, "path");
    lua_getfield(L, 2, "body");
    req->body = lua_tolstring(L, -1, &req->body_len); /* the table keeps it alive */
    lua_getfield(L, 2, "timeout");
    req->timeout_ms = (int)(luaL_optnumber(L, -1, 0) * 1000);
    lua_getfield(L, 2, "idempotent");
    req->idempotent = lua_toboolean(L, -1);
    lua_pop(L, 3);
    req->content_type = opt_string(L, 2, "content_type");
    req->accept = opt_string(L, 2, "accept");
    if (!req->method || !req->path || req->path[0] != '/')
        luaL_argerror(L, 2, "method and a path starting with '/' are needed");
}

/* client:request{ method=, path=, body=, content_type=, accept=, timeout=, idempotent= }
 *   --> status, body, content_type, http_version | nil, err */
static int l_request(lua_State *L)
{
    struct kn_client *c = check_client(L);
    struct kn_request req = {0};
    struct kn_response resp = {0};
    struct kn_err err = {0};
    int own_handlers = !lk_signals_installed();
    read_request(L, &req);
    /* Ctrl-C or SIGTERM ends a blocking call at once (reason Interrupted);
     * outside kinformer.run the handlers are ours only for this call. */
    if (own_handlers)
        lk_signals_begin(0);
    req.interrupt = lk_signal_flag();
    if (kn_client_request(c, &req, &resp, &err) < 0) {
        if (own_handlers) {
            lk_signals_end();
            lk_signal_clear();
        }
        kn_buf_free(&resp.body);
        return lk_push_err(L, &err);
    }
    if (own_handlers) {
        lk_signals_end();
        lk_signal_clear(); /* one that came as the answer did: the call is done */
    }
    lua_pushinteger(L, resp.status);
    lua_pushlstring(L, resp.body.data ? resp.body.data : "", resp.body.len);
    lua_pushstring(L, resp.content_type);
    lua_pushinteger(L, resp.http_version);
    kn_buf_free(&resp.body);
    return 4;
}

/* A background request's answer, carried to the Lua thread in a KN_Q_REPLY event. */
struct reply {
    struct kn_queue *q;     /* referenced until the event is pushed */
    struct kn_qevent *ev;   /* made up front: an answer is never lost for want of memory */
    int ok;
    long status, http_version;
    char content_type[128];
    struct kn_buf body;
    struct kn_err err;
};

static void reply_free(void *payload)
{
    struct reply *r = payload;
    kn_buf_free(&r->body);
    free(r);
}

/* On a worker thread. */
static void reply_done(void *ud, int ok, struct kn_response *resp, const struct kn_err *err)
{
    struct reply *r = ud;
    struct kn_queue *q = r->q;
    struct kn_qevent *ev = r->ev;
    r->ok = ok;
    r->status = resp->status;
    r->http_version = resp->http_version;
    memcpy(r->content_type, resp->content_type, sizeof r->content_type);
    r->body = resp->body; /* taken over */
    if (ok < 0)
        r->err = *err;
    r->q = NULL;
    r->ev = NULL;
    ev->payload = r;
    ev->payload_free = reply_free;
    kn_queue_push(q, ev);
    kn_queue_unref(q);
}

void lk_set_reply(lua_State *L, void *payload)
{
    struct reply *r = payload;
    if (r->ok < 0) {
        lk_push_err(L, &r->err); /* nil, err */
        lua_setfield(L, -3, "err");
        lua_pop(L, 1);
        return;
    }
    lua_pushinteger(L, r->status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
    lua_setfield(L, -2, "body");
    lua_pushstring(L, r->content_type);
    lua_setfield(L, -2, "content_type");
    lua_pushinteger(L, r->http_version);
    lua_setfield(L, -2, "http_version");
}

/* client:request_async(request, id) --> true | nil, err. The answer comes as
 * a "reply" event with source = id (core.next_event). */
static int l_request_async(lua_State *L)
{
    struct lclient *lc = lk_check_client(L, 1);
    struct kn_request req = {0};
    struct kn_err err = {0};
    lua_Integer id = luaL_checkinteger(L, 3);
    struct reply *r;
    read_request(L, &req);
    if (!lc->calls && !(lc->calls = kn_calls_new(lc->c, 0))) {
        kn_err_set(&err, 0, "Transport", "out of memory for the request threads");
        return lk_push_err(L, &err);
    }
    r = calloc(1, sizeof *r);
    if (r)
        r->ev = kn_qevent_new(KN_Q_REPLY, (unsigned long)id);
    if (!r || !r->ev) {
        free(r);
        kn_err_set(&err, 0, "Transport", "out of memory for a request");
        return lk_push_err(L, &err);
    }
    r->q = kn_queue_ref(lk_queue(L));
    if (kn_calls_submit(lc->calls, &req, reply_done, r, &err) < 0) {
        kn_queue_unref(r->q);
        kn_qevent_free(r->ev);
        free(r);
        return lk_push_err(L, &err);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* client:pending_requests() --> background requests not yet answered */
static int l_pending_requests(lua_State *L)
{
    struct lclient *lc = lk_check_client(L, 1);
    lua_pushinteger(L, lc->calls ? kn_calls_pending(lc->calls) : 0);
    return 1;
}

static void free_client(struct lclient *lc)
{
    kn_calls_free(lc->calls); /* their answers need the client */
    lc->calls = NULL;
    kn_client_free(lc->c);
    lc->c = NULL;
}

static void set_str(lua_State *L, const char *key, const char *v)
{
    if (v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, key);
    }
}

/* client:info() --> { server, namespace, context, cluster, user, origin, auth } */
static int l_info(lua_State *L)
{
    const struct kn_config *cfg = kn_client_config(check_client(L));
    lua_createtable(L, 0, 8);
    set_str(L, "server", cfg->server);
    set_str(L, "namespace", cfg->namespace);
    set_str(L, "context", cfg->context);
    set_str(L, "cluster", cfg->cluster_name);
    set_str(L, "user", cfg->user_name);
    set_str(L, "origin", cfg->origin);
    set_str(L, "tls_server_name", cfg->tls_server_name);
    /* Which kind of credential is in use, never the credential itself. */
    set_str(L, "auth", cfg->exec ? "exec" : cfg->token_file ? "token-file" : cfg->token ? "token"
                       : cfg->cert.len ? "client-certificate" : "none");
    return 1;
}

/* client:stats() --> { requests, connections, retries, exec_runs } */
static int l_stats(lua_State *L)
{
    struct kn_client_stats st;
    kn_client_stats(check_client(L), &st);
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, (lua_Integer)st.requests);
    lua_setfield(L, -2, "requests");
    lua_pushinteger(L, (lua_Integer)st.connections);
    lua_setfield(L, -2, "connections");
    lua_pushinteger(L, (lua_Integer)st.retries);
    lua_setfield(L, -2, "retries");
    lua_pushinteger(L, (lua_Integer)st.http2);
    lua_setfield(L, -2, "http2");
    lua_pushinteger(L, (lua_Integer)st.exec_runs);
    lua_setfield(L, -2, "exec_runs");
    lua_pushinteger(L, (lua_Integer)st.pings);
    lua_setfield(L, -2, "pings");
    lua_pushinteger(L, (lua_Integer)st.dead_conns);
    lua_setfield(L, -2, "dead_connections");
    return 1;
}

static int l_close(lua_State *L)
{
    struct lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    if (lc->informers > 0)
        return luaL_error(L, "kinformer: close or stop_all the client's %d informer(s) before the client",
                          lc->informers);
    free_client(lc);
    return 0;
}

/* __gc never raises: an informer keeps its client alive (a user value), and
 * informers are finalized before the client they were made from, so none is
 * left here; were one left, the client is kept (leaked) rather than freed
 * under it. */
static int l_gc(lua_State *L)
{
    struct lclient *lc = lua_touserdata(L, 1);
    if (lc && lc->c && lc->informers == 0)
        free_client(lc);
    return 0;
}

static int l_tostring(lua_State *L)
{
    struct lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    if (!lc->c)
        lua_pushstring(L, "kinformer.core.client (closed)");
    else
        lua_pushfstring(L, "kinformer.core.client (%s)", kn_client_config(lc->c)->server);
    return 1;
}

static const luaL_Reg client_methods[] = {
    { "request", l_request },
    { "request_async", l_request_async },
    { "pending_requests", l_pending_requests },
    { "info", l_info },
    { "stats", l_stats },
    { "close", l_close },
    { NULL, NULL },
};

static const luaL_Reg client_meta[] = {
    { "__gc", l_gc },
#if LUA_VERSION_NUM >= 504
    { "__close", l_close },
#endif
    { "__tostring", l_tostring },
    { NULL, NULL },
};

static const luaL_Reg core_funcs[] = {
    { "client", l_client },
    { NULL, NULL },
};

int luaopen_kinformer_core(lua_State *L)
{
    /* Reference-counted inside libcurl; process-wide by libcurl's design. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    luaL_newmetatable(L, CLIENT_MT);
    luaL_setfuncs(L, client_meta, 0);
    luaL_newlib(L, client_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, core_funcs);
    lk_json_register(L);
    lk_informer_register(L);
    lk_workqueue_register(L);
    lk_signal_register(L);
    lk_serve_register(L);
    lua_pushstring(L, curl_version());
    lua_setfield(L, -2, "curl_version");
    return 1;
}
