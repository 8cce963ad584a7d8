#include "kn_obj.h"

#include <stdlib.h>
#include <string.h>

#include "kn_json.h"

/* The output is written by walking the tokens rather than by patching the
 * input text: a member is dropped or a comma placed by the same loop that
 * copies, so there is no comma bookkeeping to get wrong, and whitespace
 * disappears because only token spans are copied. The walk runs twice, once
 * to count and once to write, so the object is allocated at its exact size:
 * the store holds many of them, and managedFields is often a third of one. */
struct out {
    char *p; /* NULL while counting */
    size_t n;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->p)
        memcpy(o->p + o->n, s, n);
    o->n += n;
}

static void put_c(struct out *o, char c)
{
    if (o->p)
        o->p[o->n] = c;
    o->n++;
}

static void put_span(struct out *o, const struct kn_json *j, int i)
{
    put(o, j->text + j->tok[i].start, j->tok[i].end - j->tok[i].start);
}

/* A JSON string literal to insert. Names like "apps/v1" need no escapes,
 * so the common case borrows the C string instead of allocating. */
struct lit {
    const char *s;
    size_t n;
    int bare; /* s lacks its quotes */
    struct kn_buf buf;
};

static int lit_init(struct lit *l, const char *s)
{
    memset(l, 0, sizeof *l);
    if (!s)
        return 0;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\' || *c < 0x20) {
            if (kn_json_quote(&l->buf, s) < 0)
                return -1;
            l->s = l->buf.data;
            l->n = l->buf.len;
            return 0;
        }
    }
    l->s = s;
    l->n = strlen(s);
    l->bare = 1;
    return 0;
}

static void put_lit(struct out *o, const struct lit *l)
{
    if (l->bare)
        put_c(o, '"');
    put(o, l->s, l->n);
    if (l->bare)
        put_c(o, '"');
}

static void put_value(struct out *o, const struct kn_json *j, int i, int strip);

static void put_member(struct out *o, const struct kn_json *j, int key, int strip, int *first)
{
    if (!*first)
        put_c(o, ',');
    *first = 0;
    put_value(o, j, key, strip);
    put_c(o, ':');
    put_value(o, j, key + 1, strip);
}

/* The members of object obj, without braces. strip is the object whose
 * managedFields member goes (metadata), or -1. */
static void put_members(struct out *o, const struct kn_json *j, int obj, int strip, int *first)
{
    int key = obj + 1;
    for (int m = 0; m < j->tok[obj].size; m++) {
        if (!(obj == strip && kn_json_streq(j, key, "managedFields")))
            put_member(o, j, key, strip, first);
        key = j->tok[key + 1].next;
    }
}

/* Recursion is bounded by kn_json's nesting limit. */
static void put_value(struct out *o, const struct kn_json *j, int i, int strip)
{
    const struct kn_jtok *t = &j->tok[i];
    int first = 1;
    switch (t->type) {
    case KN_J_STRING:
        put_c(o, '"');
        put_span(o, j, i);
        put_c(o, '"');
        break;
    case KN_J_OBJECT:
        put_c(o, '{');
        put_members(o, j, i, strip, &first);
        put_c(o, '}');
        break;
    case KN_J_ARRAY:
        put_c(o, '[');
        for (int e = 0, k = i + 1; e < t->size; e++, k = j->tok[k].next) {
            if (e)
                put_c(o, ',');
            put_value(o, j, k, strip);
        }
        put_c(o, ']');
        break;
    default:
        put_span(o, j, i);
        break;
    }
}

struct plan {
    const struct kn_json *j;
    int root;              /* the object's token: 0, or an item inside a list */
    int meta, strip;
    int api_version, kind; /* member values, or -1 */
    struct lit ins_api_version, ins_kind;
    int metadata_only;
};

static void put_inserted(struct out *o, const char *name, const struct lit *l, int *first)
{
    if (!*first)
        put_c(o, ',');
    *first = 0;
    put_c(o, '"');
    put(o, name, strlen(name));
    put(o, "\":", 2);
    put_lit(o, l);
}

static void put_object(struct out *o, const struct plan *pl)
{
    int first = 1;
    put_c(o, '{');
    /* Restored fields come first, as the API server orders them. */
    if (pl->api_version < 0 && pl->ins_api_version.s)
        put_inserted(o, "apiVersion", &pl->ins_api_version, &first);
    else if (pl->api_version >= 0 && pl->metadata_only)
        put_member(o, pl->j, pl->api_version - 1, pl->strip, &first);
    if (pl->kind < 0 && pl->ins_kind.s)
        put_inserted(o, "kind", &pl->ins_kind, &first);
    else if (pl->kind >= 0 && pl->metadata_only)
        put_member(o, pl->j, pl->kind - 1, pl->strip, &first);
    if (pl->metadata_only)
        put_member(o, pl->j, pl->meta - 1, pl->strip, &first);
    else
        put_members(o, pl->j, pl->root, pl->strip, &first);
    put_c(o, '}');
}

/* A string field as stored: the input's bytes when it has no escapes (the
 * usual case, no allocation), else its unescaped copy. Not a string: "". */
struct field {
    const char *s;
    size_t n;
    char *owned;
};

static int field_get(const struct kn_json *j, int idx, struct field *f)
{
    f->s = "";
    f->n = 0;
    f->owned = NULL;
    if (idx < 0 || j->tok[idx].type != KN_J_STRING)
        return 0;
    f->s = j->text + j->tok[idx].start;
    f->n = j->tok[idx].end - j->tok[idx].start;
    if (!memchr(f->s, '\\', f->n))
        return 0;
    f->owned = kn_json_string(j, idx, &f->n);
    f->s = f->owned;
    return f->owned ? 0 : -1;
}

static char *put_str(char **at, const struct field *f)
{
    char *s = *at;
    memcpy(s, f->s, f->n);
    s[f->n] = '\0';
    *at += f->n + 1;
    return s;
}

static struct kn_obj *build(struct plan *pl, const struct field *ns, const struct field *name,
                            const struct field *uid, const struct field *rv, struct kn_err *err)
{
    struct out count = { NULL, 0 }, write;
    struct kn_obj *obj;
    size_t key_n, mem;
    char *at;

    put_object(&count, pl);
    key_n = ns->n ? ns->n + 1 + name->n : name->n;
    mem = sizeof *obj + count.n + 1 + key_n + 1 + ns->n + 1 + uid->n + 1 + rv->n + 1;
    obj = malloc(mem);
    if (!obj) {
        kn_err_set(err, 0, KN_ERR_NOMEM, "out of memory for an object of %zu bytes", count.n);
        return NULL;
    }
    obj->refs = 1;
    obj->mem = mem;
    obj->json = (char *)(obj + 1);
    write.p = obj->json;
    write.n = 0;
    put_object(&write, pl);
    obj->json[write.n] = '\0';
    obj->len = write.n;
    at = obj->json + write.n + 1;
    /* name is the tail of key when namespaced, so it is stored once. */
    obj->key = at;
    if (ns->n) {
        memcpy(at, ns->s, ns->n);
        at[ns->n] = '/';
        at += ns->n + 1;
    }
    obj->name = put_str(&at, name);
    obj->ns = put_str(&at, ns);
    obj->uid = put_str(&at, uid);
    obj->rv = put_str(&at, rv);
    return obj;
}

static struct kn_obj *from_tokens(const struct kn_json *j, int root, const struct kn_normalize *norm,
                                  struct kn_err *err)
{
    static const struct kn_normalize defaults = { NULL, NULL, 0, 0 };
    struct plan pl;
    struct field ns, name, uid, rv;
    struct kn_obj *obj = NULL;
    int nm, nsi;

    if (!norm)
        norm = &defaults;
    if (root < 0 || root >= j->n || j->tok[root].type != KN_J_OBJECT) {
        kn_err_set(err, 0, "BadObject", "object is not a JSON object");
        return NULL;
    }
    memset(&pl, 0, sizeof pl);
    pl.j = j;
    pl.root = root;
    pl.meta = kn_json_member(j, root, "metadata");
    if (pl.meta < 0 || j->tok[pl.meta].type != KN_J_OBJECT) {
        kn_err_set(err, 0, "BadObject", "object has %s",
                   pl.meta < 0 ? "no metadata" : "a metadata that is not an object");
        return NULL;
    }
    nm = kn_json_member(j, pl.meta, "name");
    if (nm < 0 || j->tok[nm].type != KN_J_STRING || j->tok[nm].end == j->tok[nm].start) {
        kn_err_set(err, 0, "BadObject", "object has %s",
                   nm < 0 ? "no metadata.name"
                   : j->tok[nm].type != KN_J_STRING ? "a metadata.name that is not a string"
                   : "an empty metadata.name");
        return NULL;
    }
    nsi = kn_json_member(j, pl.meta, "namespace");
    pl.strip = norm->keep_managed_fields ? -1 : pl.meta;
    pl.api_version = kn_json_member(j, root, "apiVersion");
    pl.kind = kn_json_member(j, root, "kind");
    pl.metadata_only = norm->metadata_only;

    memset(&name, 0, sizeof name);
    ns = uid = rv = name;
    if (field_get(j, nm, &name) < 0 || field_get(j, nsi, &ns) < 0 ||
        field_get(j, kn_json_member(j, pl.meta, "uid"), &uid) < 0 ||
        field_get(j, kn_json_member(j, pl.meta, "resourceVersion"), &rv) < 0) {
        kn_err_set(err, 0, KN_ERR_NOMEM, "out of memory reading an object's metadata");
        goto done;
    }
    /* An escaped NUL would make two different objects share a key. */
    if (memchr(name.s, '\0', name.n) || memchr(ns.s, '\0', ns.n)) {
        kn_err_set(err, 0, "BadObject", "object has a NUL byte in metadata.%s",
                   memchr(name.s, '\0', name.n) ? "name" : "namespace");
        goto done;
    }
    if (lit_init(&pl.ins_api_version, norm->api_version) < 0 || lit_init(&pl.ins_kind, norm->kind) < 0) {
        kn_err_set(err, 0, KN_ERR_NOMEM, "out of memory normalizing an object");
        goto done;
    }
    obj = build(&pl, &ns, &name, &uid, &rv, err);
done:
    kn_buf_free(&pl.ins_api_version.buf);
    kn_buf_free(&pl.ins_kind.buf);
    free(name.owned);
    free(ns.owned);
    free(uid.owned);
    free(rv.owned);
    return obj;
}

struct kn_obj *kn_obj_new(const char *json, size_t len, const struct kn_normalize *norm, struct kn_err *err)
{
    struct kn_json j;
    struct kn_obj *obj = NULL;
    memset(&j, 0, sizeof j);
    if (kn_json_parse(&j, json, len) < 0)
        kn_err_set(err, 0, "BadObject", "object is not valid JSON: %s", j.error);
    else
        obj = from_tokens(&j, 0, norm, err);
    kn_json_free(&j);
    return obj;
}

struct kn_obj *kn_obj_from_tokens(const struct kn_json *j, int idx, const struct kn_normalize *norm,
                                  struct kn_err *err)
{
    return from_tokens(j, idx, norm, err);
}

struct kn_obj *kn_obj_ref(struct kn_obj *o)
{
    if (o)
        __atomic_add_fetch(&o->refs, 1, __ATOMIC_ACQ_REL);
    return o;
}

void kn_obj_unref(struct kn_obj *o)
{
    if (o && __atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(o);
}
