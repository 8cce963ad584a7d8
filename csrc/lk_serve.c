/* kinformer.core.metrics and kinformer.core.serve: the metrics registry
 * (kn_metrics), and the /metrics, /healthz, /readyz server (kn_serve) with
 * its health state (kn_health), as userdata. The server's thread never
 * enters Lua: these functions only update the registry and a few atomics.
 *
 *   local reg = core.metrics()
 *   local total = reg:counter("controller_runtime_reconcile_total", "help", { "controller", "result" })
 *   total:add(1, "web", "success")                 -- value, then one value per label, in order
 *   local depth = reg:gauge("workqueue_depth", "help", { "name" })
 *   depth:set(3, "web")  depth:add(-1, "web")
 *   local t = reg:histogram("controller_runtime_reconcile_time_seconds", "help", { "controller" }, buckets)
 *   t:observe(0.02, "web")                         -- buckets: optional list; default controller-runtime's
 *   total:get("web", "success") --> value (histogram: count, sum)   total:remove("web", "success") --> bool
 *   reg:render() --> the exposition text
 *
 *   local srv, err = core.serve{ address = "127.0.0.1", port = 8080, metrics = reg,
 *                                busy_threshold = 30, max_connections = 32, timeout = 10 }
 *   srv:port()                    the port bound (port = 0 picks a free one); nil once stopped
 *   srv:loop_state("busy")        the Lua loop runs callbacks from now ...
 *   srv:loop_state("waiting")     ... and waits for events: idle is healthy however long
 *   srv:set_ready(true)           /readyz answers 200 from now (503 before); srv:ready() reads it
 *   srv:liveness("io", 30)        a named check: /healthz fails if no beat for 30 s (0: no limit) ...
 *   srv:beat("io")                ... beats are cheap (one atomic store) ...
 *   srv:down("io", "reason")      ... and down fails it at once, until the next beat
 *   srv:health() --> true | false, reason       what /healthz would answer now
 *   srv:stop()                    closes the port and joins the server's thread (also srv:close(),
 *                                 __close); the state methods keep working until __gc frees them
 *
 * The Lua face marks its loop around the wait for events, so that a callback
 * that never returns shows on /healthz after busy_threshold seconds (default
 * 30) while an idle operator stays healthy:
 *
 *   srv:loop_state("waiting"); local ev = core.next_event(timeout_ms); srv:loop_state("busy")
 *
 * Misuse (a bad metric name, a counter going down, a wrong number of label
 * values) raises; a server that cannot start returns nil and the error table
 * { code, reason = "Bind" | "Serve" | "NoMemory", message }. */
#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#include "kn_health.h"
#include "kn_metrics.h"
#include "kn_serve.h"
#include "lk_core.h"

#define REG_MT "kinformer.core.metrics"
#define FAM_MT "kinformer.core.metric"
#define SRV_MT "kinformer.core.server"
#define BUF_MT "kinformer.core.metrics_buffer"

struct lreg {
    struct kn_metrics *reg;
};

struct lfam {
    struct kn_metrics *reg; /* a reference: the family lives as long as its registry */
    struct kn_mfam *f;
};

struct lsrv {
    struct kn_serve *s; /* NULL once stopped */
    struct kn_health *h;
};

/* ---- registry ---- */

static struct kn_metrics *check_reg(lua_State *L, int idx)
{
    return ((struct lreg *)luaL_checkudata(L, idx, REG_MT))->reg;
}

/* core.metrics() --> registry */
static int l_metrics(lua_State *L)
{
    struct lreg *r = lua_newuserdatauv(L, sizeof *r, 0);
    r->reg = NULL;
    luaL_setmetatable(L, REG_MT);
    r->reg = kn_metrics_new();
    if (!r->reg)
        return luaL_error(L, "kinformer: not enough memory for a metrics registry");
    return 1;
}

static int reg_gc(lua_State *L)
{
    struct lreg *r = luaL_checkudata(L, 1, REG_MT);
    kn_metrics_unref(r->reg);
    r->reg = NULL;
    return 0;
}

/* The strings of the list at idx (nil: none) pushed on the stack, and
 * pointed to from out; returns their count. */
static size_t push_labels(lua_State *L, int idx, const char **out)
{
    size_t n;
    if (lua_isnoneornil(L, idx))
        return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    n = lua_rawlen(L, idx);
    if (n > KN_METRICS_MAX_LABELS)
        luaL_error(L, "kinformer: %d label names, at most %d", (int)n, KN_METRICS_MAX_LABELS);
    luaL_checkstack(L, (int)n, "label names");
    for (size_t i = 0; i < n; i++) {
        if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TSTRING)
            luaL_error(L, "kinformer: label name %d is not a string", (int)i + 1);
        out[i] = lua_tostring(L, -1);
    }
    return n;
}

static int define(lua_State *L, enum kn_mtype type)
{
    struct kn_metrics *reg = check_reg(L, 1);
    const char *name = luaL_checkstring(L, 2), *help = luaL_optstring(L, 3, "");
    const char *labels[KN_METRICS_MAX_LABELS];
    double buckets[KN_METRICS_MAX_BUCKETS];
    size_t nlabels, nb = 0;
    struct kn_err err = {0};
    struct lfam *fam;
    if (!reg)
        return luaL_error(L, "kinformer: the metrics registry is closed");
    if (type == KN_HISTOGRAM && !lua_isnoneornil(L, 5)) {
        luaL_checktype(L, 5, LUA_TTABLE);
        nb = lua_rawlen(L, 5);
        if (nb > KN_METRICS_MAX_BUCKETS)
            return luaL_error(L, "kinformer: %d buckets, at most %d", (int)nb, KN_METRICS_MAX_BUCKETS);
        for (size_t i = 0; i < nb; i++) {
            lua_rawgeti(L, 5, (lua_Integer)i + 1);
            if (!lua_isnumber(L, -1))
                return luaL_error(L, "kinformer: bucket %d is not a number", (int)i + 1);
            buckets[i] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    }
    lua_settop(L, 4);
    nlabels = push_labels(L, 4, labels);
    fam = lua_newuserdatauv(L, sizeof *fam, 0);
    fam->reg = NULL;
    fam->f = NULL;
    luaL_setmetatable(L, FAM_MT);
    fam->f = type == KN_COUNTER ? kn_metrics_counter(reg, name, help, labels, nlabels, &err)
           : type == KN_GAUGE   ? kn_metrics_gauge(reg, name, help, labels, nlabels, &err)
                                : kn_metrics_histogram(reg, name, help, labels, nlabels, buckets, nb, &err);
    if (!fam->f)
        return luaL_error(L, "kinformer: %s", err.msg);
    kn_metrics_ref(reg);
    fam->reg = reg;
    return 1;
}

/* reg:counter(name, help, labels) --> family */
static int l_counter(lua_State *L)
{
    return define(L, KN_COUNTER);
}

static int l_gauge(lua_State *L)
{
    return define(L, KN_GAUGE);
}

/* reg:histogram(name, help, labels [, buckets]) */
static int l_histogram(lua_State *L)
{
    return define(L, KN_HISTOGRAM);
}

static int buf_gc(lua_State *L)
{
    kn_buf_free(luaL_checkudata(L, 1, BUF_MT));
    return 0;
}

/* reg:render() --> the text; the bytes sit in a userdata until copied, so
 * that a raise (out of memory) cannot leak them */
static int l_render(lua_State *L)
{
    struct kn_metrics *reg = check_reg(L, 1);
    struct kn_buf *b;
    if (!reg)
        return luaL_error(L, "kinformer: the metrics registry is closed");
    b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, BUF_MT);
    if (kn_metrics_render(reg, b) < 0)
        return luaL_error(L, "kinformer: not enough memory to render the metrics");
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    kn_buf_free(b);
    return 1;
}

static int reg_tostring(lua_State *L)
{
    lua_pushfstring(L, "kinformer.core.metrics (%p)", lua_touserdata(L, 1));
    return 1;
}

/* ---- families ---- */

static struct kn_mfam *check_fam(lua_State *L)
{
    struct lfam *fam = luaL_checkudata(L, 1, FAM_MT);
    if (!fam->f)
        luaL_error(L, "kinformer: this metric was never made");
    return fam->f;
}

/* Label values from stack index `from` on: strings or numbers, one per label. */
static size_t label_values(lua_State *L, struct kn_mfam *f, int from, const char **out)
{
    int n = lua_gettop(L) - from + 1;
    if (n < 0)
        n = 0;
    if ((size_t)n != kn_mfam_nlabels(f))
        luaL_error(L, "kinformer: metric %s takes %d label values, not %d", kn_mfam_name(f), (int)kn_mfam_nlabels(f),
                   n);
    for (int i = 0; i < n; i++) {
        size_t len;
        out[i] = luaL_checklstring(L, from + i, &len);
        if (strlen(out[i]) != len)
            luaL_error(L, "kinformer: metric %s: a label value holds a NUL byte", kn_mfam_name(f));
    }
    return (size_t)n;
}

static int update(lua_State *L, int (*op)(struct kn_mfam *, const char *const *, size_t, double, struct kn_err *))
{
    struct kn_mfam *f = check_fam(L);
    double v = luaL_checknumber(L, 2);
    const char *values[KN_METRICS_MAX_LABELS];
    size_t n = label_values(L, f, 3, values);
    struct kn_err err = {0};
    if (op(f, values, n, v, &err) < 0)
        return luaL_error(L, "kinformer: %s", err.msg);
    return 0;
}

/* family:add(value, labelvalues...) (counter, gauge) */
static int l_add(lua_State *L)
{
    return update(L, kn_metrics_add);
}

/* family:set(value, labelvalues...) (gauge) */
static int l_set(lua_State *L)
{
    return update(L, kn_metrics_set);
}

/* family:observe(value, labelvalues...) (histogram) */
static int l_observe(lua_State *L)
{
    return update(L, kn_metrics_observe);
}

/* Whole numbers as integers: counts read back as 3, not 3.0. */
static void push_value(lua_State *L, double v)
{
    if (v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(lua_Integer)v)
        lua_pushinteger(L, (lua_Integer)v);
    else
        lua_pushnumber(L, v);
}

/* family:get(labelvalues...) --> value (a histogram's: count, sum); 0 for a series never used */
static int l_get(lua_State *L)
{
    struct kn_mfam *f = check_fam(L);
    const char *values[KN_METRICS_MAX_LABELS];
    size_t n = label_values(L, f, 2, values);
    double v, sum;
    kn_metrics_get(f, values, n, &v, &sum);
    push_value(L, v);
    if (kn_mfam_type(f) != KN_HISTOGRAM)
        return 1;
    lua_pushnumber(L, sum);
    return 2;
}

/* family:remove(labelvalues...) --> whether the series was there */
static int l_remove(lua_State *L)
{
    struct kn_mfam *f = check_fam(L);
    const char *values[KN_METRICS_MAX_LABELS];
    size_t n = label_values(L, f, 2, values);
    lua_pushboolean(L, kn_metrics_remove(f, values, n) == 1);
    return 1;
}

static int fam_gc(lua_State *L)
{
    struct lfam *fam = luaL_checkudata(L, 1, FAM_MT);
    kn_metrics_unref(fam->reg);
    fam->reg = NULL;
    fam->f = NULL;
    return 0;
}

static int fam_tostring(lua_State *L)
{
    static const char *const types[] = { "counter", "gauge", "histogram" };
    struct lfam *fam = luaL_checkudata(L, 1, FAM_MT);
    if (!fam->f)
        lua_pushstring(L, "kinformer.core.metric (none)");
    else
        lua_pushfstring(L, "kinformer.core.metric (%s %s)", types[kn_mfam_type(fam->f)], kn_mfam_name(fam->f));
    return 1;
}

/* ---- server ---- */

static struct lsrv *check_srv(lua_State *L)
{
    struct lsrv *v = luaL_checkudata(L, 1, SRV_MT);
    if (!v->h)
        luaL_error(L, "kinformer: this server was never started");
    return v;
}

struct kn_health *lk_server_health(lua_State *L, int idx)
{
    struct lsrv *v = luaL_checkudata(L, idx, SRV_MT);
    if (!v->h)
        luaL_error(L, "kinformer: this server was never started");
    return v->h;
}

static double opt_number(lua_State *L, const char *key)
{
    double v;
    lua_getfield(L, 1, key);
    if (!lua_isnil(L, -1) && !lua_isnumber(L, -1))
        luaL_error(L, "kinformer: serve: %s must be a number", key);
    v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* core.serve{ address=, port=, metrics=, busy_threshold=, max_connections=, timeout= }
 * --> server | nil, err */
static int l_serve(lua_State *L)
{
    struct kn_serve_opts o = {0};
    struct kn_health_opts ho = {0};
    struct kn_metrics *reg = NULL;
    struct kn_err err = {0};
    struct lsrv *v;
    double port, conns, timeout;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "address");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "kinformer: serve: address must be a string");
    o.address = lua_tostring(L, -1); /* stays alive: the value is in the options table */
    lua_pop(L, 1);
    port = opt_number(L, "port");
    conns = opt_number(L, "max_connections");
    timeout = opt_number(L, "timeout");
    /* ranges first: converting a double out of range (or NaN) is undefined */
    if (!(port >= 0 && port <= 65535) || port != (double)(int)port)
        return luaL_error(L, "kinformer: serve: port must be an integer from 0 to 65535");
    if (!(conns >= 0 && conns <= 10000) || !(timeout >= 0 && timeout <= 86400))
        return luaL_error(L, "kinformer: serve: max_connections (0 to 10000) or timeout (0 to 86400 s) out of range");
    o.port = (int)port;
    o.max_connections = (unsigned)conns;
    o.timeout = (unsigned)timeout;
    ho.busy_threshold = opt_number(L, "busy_threshold");
    lua_getfield(L, 1, "metrics");
    if (!lua_isnil(L, -1)) {
        struct lreg *r = luaL_testudata(L, -1, REG_MT);
        if (!r || !r->reg)
            return luaL_error(L, "kinformer: serve: metrics must be a registry from core.metrics()");
        reg = r->reg;
    }
    lua_pop(L, 1);
    v = lua_newuserdatauv(L, sizeof *v, 0);
    v->s = NULL;
    v->h = NULL;
    luaL_setmetatable(L, SRV_MT);
    v->h = kn_health_new(&ho);
    if (!v->h)
        return luaL_error(L, "kinformer: not enough memory for a server");
    v->s = kn_serve_start(&o, reg, v->h, &err);
    if (!v->s)
        return lk_push_err(L, &err); /* the userdata goes with its health */
    return 1;
}

/* srv:port() --> the port | nil once stopped */
static int l_port(lua_State *L)
{
    struct lsrv *v = check_srv(L);
    if (!v->s)
        return 0;
    lua_pushinteger(L, kn_serve_port(v->s));
    return 1;
}

static int l_stop(lua_State *L)
{
    struct lsrv *v = luaL_checkudata(L, 1, SRV_MT);
    kn_serve_stop(v->s); /* joins the server's thread: at most one answer's time */
    v->s = NULL;
    return 0;
}

static int srv_gc(lua_State *L)
{
    struct lsrv *v = luaL_checkudata(L, 1, SRV_MT);
    kn_serve_stop(v->s);
    v->s = NULL;
    kn_health_free(v->h);
    v->h = NULL;
    return 0;
}

/* srv:loop_state("busy" | "waiting"): the Lua face calls it around its wait
 * for events. */
static int l_loop_state(lua_State *L)
{
    static const char *const states[] = { "waiting", "busy", NULL };
    struct lsrv *v = check_srv(L);
    if (luaL_checkoption(L, 2, NULL, states) == 1)
        kn_health_busy(v->h);
    else
        kn_health_waiting(v->h);
    return 0;
}

static int l_set_ready(lua_State *L)
{
    kn_health_set_ready(check_srv(L)->h, lua_toboolean(L, 2));
    return 0;
}

static int l_ready(lua_State *L)
{
    lua_pushboolean(L, kn_health_ready(check_srv(L)->h));
    return 1;
}

/* srv:liveness(name, max_age) */
static int l_liveness(lua_State *L)
{
    struct lsrv *v = check_srv(L);
    struct kn_err err = {0};
    if (kn_health_add_check(v->h, luaL_checkstring(L, 2), luaL_optnumber(L, 3, 0), &err) < 0)
        return luaL_error(L, "kinformer: %s", err.msg);
    return 0;
}

static int check_id(lua_State *L, struct lsrv *v)
{
    const char *name = luaL_checkstring(L, 2);
    int id = kn_health_find(v->h, name);
    if (id < 0)
        luaL_error(L, "kinformer: no liveness check named %s (srv:liveness adds one)", name);
    return id;
}

static int l_beat(lua_State *L)
{
    struct lsrv *v = check_srv(L);
    kn_health_beat(v->h, check_id(L, v));
    return 0;
}

/* srv:down(name [, reason]) */
static int l_down(lua_State *L)
{
    struct lsrv *v = check_srv(L);
    kn_health_down(v->h, check_id(L, v), luaL_optstring(L, 3, NULL));
    return 0;
}

/* srv:health() --> true | false, reason */
static int l_health(lua_State *L)
{
    char reason[KN_HEALTH_REASON + 200];
    if (kn_health_check(check_srv(L)->h, reason, sizeof reason)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_pushstring(L, reason);
    return 2;
}

static int srv_tostring(lua_State *L)
{
    struct lsrv *v = luaL_checkudata(L, 1, SRV_MT);
    if (!v->s)
        lua_pushstring(L, "kinformer.core.server (stopped)");
    else
        lua_pushfstring(L, "kinformer.core.server (port %d)", kn_serve_port(v->s));
    return 1;
}

/* ---- registration ---- */

static const luaL_Reg reg_methods[] = {
    { "counter", l_counter }, { "gauge", l_gauge }, { "histogram", l_histogram }, { "render", l_render },
    { NULL, NULL },
};

static const luaL_Reg reg_meta[] = {
    { "__gc", reg_gc }, { "__tostring", reg_tostring }, { NULL, NULL },
};

static const luaL_Reg fam_methods[] = {
    { "add", l_add }, { "set", l_set }, { "observe", l_observe }, { "get", l_get }, { "remove", l_remove },
    { NULL, NULL },
};

static const luaL_Reg fam_meta[] = {
    { "__gc", fam_gc }, { "__tostring", fam_tostring }, { NULL, NULL },
};

static const luaL_Reg srv_methods[] = {
    { "port", l_port },         { "stop", l_stop },       { "loop_state", l_loop_state }, { "set_ready", l_set_ready },
    { "ready", l_ready },       { "liveness", l_liveness }, { "beat", l_beat },             { "down", l_down },
    { "health", l_health },     { "close", l_stop },      { NULL, NULL },
};

static const luaL_Reg srv_meta[] = {
    { "__gc", srv_gc },
#if LUA_VERSION_NUM >= 504
    { "__close", l_stop },
#endif
    { "__tostring", srv_tostring },
    { NULL, NULL },
};

static void new_class(lua_State *L, const char *mt, const luaL_Reg *meta, const luaL_Reg *methods)
{
    luaL_newmetatable(L, mt);
    luaL_setfuncs(L, meta, 0);
    if (methods) {
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}

void lk_serve_register(lua_State *L)
{
    static const luaL_Reg buf_meta[] = { { "__gc", buf_gc }, { NULL, NULL } };
    new_class(L, REG_MT, reg_meta, reg_methods);
    new_class(L, FAM_MT, fam_meta, fam_methods);
    new_class(L, SRV_MT, srv_meta, srv_methods);
    new_class(L, BUF_MT, buf_meta, NULL);
    lua_pushcfunction(L, l_metrics);
    lua_setfield(L, -2, "metrics");
    lua_pushcfunction(L, l_serve);
    lua_setfield(L, -2, "serve");
}
