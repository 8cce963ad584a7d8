/* See fake_world.h. Bodies are built in fixed buffers: the world itself
 * never allocates, so an allocation-failure sweep counts only the core's. */
#include "fake_world.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define BODY 4096

void world_init(struct world *w, struct fake *f, long base)
{
    memset(w, 0, sizeof *w);
    w->f = f;
    w->base = w->now = base;
}

void world_object(struct world *w, const char *name, long rv)
{
    struct world_event *e = &w->init[w->ninit++];
    snprintf(e->type, sizeof e->type, "ADDED");
    snprintf(e->name, sizeof e->name, "%s", name);
    e->rv = rv;
}

void world_event(struct world *w, const char *type, const char *name)
{
    struct world_event *e = &w->ev[w->nev++];
    snprintf(e->type, sizeof e->type, "%s", type);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->rv = ++w->now;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct world_event *)a)->name, ((const struct world_event *)b)->name);
}

int world_state(const struct world *w, long rv, struct world_event *out)
{
    int n = 0;
    for (int i = 0; i < w->ninit; i++)
        out[n++] = w->init[i];
    for (int i = 0; i < w->nev && w->ev[i].rv <= rv; i++) {
        const struct world_event *e = &w->ev[i];
        int k = 0;
        while (k < n && strcmp(out[k].name, e->name) != 0)
            k++;
        if (strcmp(e->type, "DELETED") == 0) {
            if (k < n)
                out[k] = out[--n];
        } else {
            out[k] = *e;
            n += k == n;
        }
    }
    qsort(out, (size_t)n, sizeof *out, by_name);
    return n;
}

/* The value of ?name= or &name= in path into out; 0 when absent. */
static int param(const char *path, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = strchr(path, '?'); p; p = strchr(p + 1, '&')) {
        if (strncmp(p + 1, name, n) == 0 && p[1 + n] == '=') {
            const char *v = p + 2 + n, *e = strchr(v, '&');
            size_t len = e ? (size_t)(e - v) : strlen(v);
            snprintf(out, cap, "%.*s", (int)(len < cap ? len : cap - 1), v);
            return 1;
        }
    }
    out[0] = '\0';
    return 0;
}

static void cm(char *out, size_t cap, const char *name, long rv)
{
    snprintf(out, cap, "{'kind':'ConfigMap','apiVersion':'v1','metadata':{'name':'%s','namespace':'ns',"
             "'resourceVersion':'%ld'}}", name, rv);
}

static const char gone[] = "{'type':'ERROR','object':{'kind':'Status','apiVersion':'v1','status':'Failure',"
                           "'message':'too old resource version','reason':'Expired','code':410}}";
static const char gone_body[] = "{'kind':'Status','apiVersion':'v1','status':'Failure',"
                                "'message':'The provided continue parameter is too old','reason':'Expired','code':410}";

static void list_page(struct world *w, struct fake_req *o)
{
    struct world_event objs[WORLD_MAX_OBJS + WORLD_MAX_EVENTS];
    char body[BODY], obj[256], v[64], cont[64] = "";
    long snap = w->now, limit;
    int off = 0, n, len;
    limit = param(o->path, "limit", v, sizeof v) ? atol(v) : 0;
    if (param(o->path, "continue", v, sizeof v)) {
        /* our token: c<snapshot>_<offset> */
        if (sscanf(v, "c%ld_%d", &snap, &off) != 2 || snap < w->compacted) {
            fake_reply(w->f, 410, gone_body, -1);
            return;
        }
    } else if (param(o->path, "resourceVersion", v, sizeof v) && v[0] && strcmp(v, "0") != 0 &&
               atol(v) < w->compacted) {
        fake_reply(w->f, 410, gone_body, -1);
        return;
    }
    n = world_state(w, snap, objs);
    if (limit > 0 && off + limit < n)
        snprintf(cont, sizeof cont, ",'continue':'c%ld_%ld'", snap, off + limit);
    len = snprintf(body, sizeof body, "{'kind':'ConfigMapList','apiVersion':'v1','metadata':{'resourceVersion':'%ld'%s},"
                   "'items':[", snap, cont);
    for (int i = off; i < n && (limit <= 0 || i < off + limit); i++) {
        cm(obj, sizeof obj, objs[i].name, objs[i].rv);
        len += snprintf(body + len, sizeof body - (size_t)len, "%s%s", i > off ? "," : "", obj);
    }
    snprintf(body + len, sizeof body - (size_t)len, "]}");
    fake_reply(w->f, 200, body, -1);
}

static void send_event(struct world *w, const char *type, const char *name, long rv)
{
    char line[512], obj[256];
    cm(obj, sizeof obj, name, rv);
    snprintf(line, sizeof line, "{'type':'%s','object':%s}", type, obj);
    fake_send(w->f, line);
}

/* A new watch: where it starts, and for a streaming list the initial state
 * up to the bookmark that ends it. */
static void watch_begins(struct world *w, struct fake_req *o)
{
    char v[64], line[512];
    int has = param(o->path, "resourceVersion", v, sizeof v);
    w->cur = o;
    if (param(o->path, "sendInitialEvents", line, sizeof line)) {
        struct world_event objs[WORLD_MAX_OBJS + WORLD_MAX_EVENTS];
        int n;
        if (v[0] && atol(v) < w->compacted) {
            w->sent = -1; /* 410 on the next step */
            return;
        }
        n = world_state(w, w->now, objs);
        for (int i = 0; i < n && fake_open(w->f) == o; i++)
            send_event(w, "ADDED", objs[i].name, objs[i].rv);
        snprintf(line, sizeof line, "{'type':'BOOKMARK','object':{'kind':'ConfigMap','apiVersion':'v1','metadata':"
                 "{'resourceVersion':'%ld','annotations':{'k8s.io/initial-events-end':'true'}}}}", w->now);
        if (fake_open(w->f) == o)
            fake_send(w->f, line);
        w->sent = w->now;
        return;
    }
    if (!has || !v[0]) {
        /* "from now, the state first as ADDED": no scenario of ours asks for it */
        t_fail(__FILE__, __LINE__, "a watch without a resourceVersion: %s", o->path);
        w->bad++;
        fake_reply(w->f, 500, NULL, -1);
        return;
    }
    w->sent = atol(v);
}

int world_step(struct world *w)
{
    struct fake_req *o = fake_open(w->f);
    if (!o) {
        w->cur = NULL;
        return fake_fire(w->f) < 0 ? -1 : 0;
    }
    if (!o->watch) {
        list_page(w, o);
        return 0;
    }
    if (o != w->cur) {
        watch_begins(w, o);
        return 0;
    }
    if (w->sent < w->compacted) {
        fake_send(w->f, gone);
        return 0;
    }
    for (int i = 0; i < w->nev; i++) {
        if (w->ev[i].rv > w->sent) {
            w->sent = w->ev[i].rv;
            send_event(w, w->ev[i].type, w->ev[i].name, w->ev[i].rv);
            return 0;
        }
    }
    return 1;
}
