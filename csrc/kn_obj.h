/* A cached Kubernetes object: its JSON text (normalized: apiVersion and kind
 * always present, metadata.managedFields dropped unless asked for) and the
 * few fields the store and the reflector need. Immutable once made and
 * reference-counted, so the store, the event queue and a Lua decode can
 * share one copy across threads. */
#ifndef KN_OBJ_H
#define KN_OBJ_H

#include <stddef.h>

#include "kn_err.h"

struct kn_obj {
    int refs;                /* atomic; use kn_obj_ref/kn_obj_unref */
    size_t len;              /* bytes of json, without the NUL */
    size_t mem;              /* bytes this object holds, for kinformer.stats() */
    const char *key;         /* "namespace/name", or "name" when cluster-scoped */
    const char *ns;          /* "" when cluster-scoped */
    const char *name;
    const char *uid;         /* "" when absent */
    const char *rv;          /* metadata.resourceVersion, "" when absent */
    char *json;              /* NUL-terminated */
    /* the strings above live in the same allocation, after this struct */
};

/* How a resource's objects are normalized on the way in. */
struct kn_normalize {
    const char *api_version; /* restored when absent (list items), e.g. "apps/v1" */
    const char *kind;        /* restored when absent, e.g. "Deployment" */
    int keep_managed_fields; /* 0: metadata.managedFields is removed */
    int metadata_only;       /* 1: keep only apiVersion, kind and metadata */
};

/* Builds an object from the JSON text of one Kubernetes object (a list item
 * or a watch event's object). NULL with err set when the text is not a JSON
 * object or has no metadata.name. */
struct kn_obj *kn_obj_new(const char *json, size_t len, const struct kn_normalize *norm, struct kn_err *err);
/* The same from an object already tokenized (a watch event's object, a
 * list's item), so the text is scanned once. */
struct kn_json;
struct kn_obj *kn_obj_from_tokens(const struct kn_json *j, int idx, const struct kn_normalize *norm,
                                  struct kn_err *err);
struct kn_obj *kn_obj_ref(struct kn_obj *o);
void kn_obj_unref(struct kn_obj *o); /* NULL is fine */

#endif
