/* The store of an informer: objects by key ("namespace/name" or "name"),
 * with a namespace index and a running count of the bytes held. Thread-safe:
 * the I/O thread writes while the Lua thread reads. */
#ifndef KN_STORE_H
#define KN_STORE_H

#include <stddef.h>

#include "kn_obj.h"

struct kn_store;

struct kn_store *kn_store_new(void);
void kn_store_free(struct kn_store *s);

/* Inserts or replaces by obj->key; the store takes its own reference. Returns
 * the object it replaced (the caller now owns that reference) or NULL. When
 * memory runs out it returns NULL with errno ENOMEM and changes nothing (the
 * caller keeps its reference): a caller that must know sets errno to 0 first. */
struct kn_obj *kn_store_put(struct kn_store *s, struct kn_obj *obj);
/* Removes by key; returns the removed object (caller owns the reference) or NULL. */
struct kn_obj *kn_store_delete(struct kn_store *s, const char *key);
/* A new reference to the object under key, or NULL. */
struct kn_obj *kn_store_get(struct kn_store *s, const char *key);

/* All objects, or those of one namespace (ns != NULL), as an array of new
 * references the caller releases with kn_store_release. Sorted by key. NULL
 * (errno ENOMEM, *n 0) only when memory runs out, never for "none". */
struct kn_obj **kn_store_list(struct kn_store *s, const char *ns, size_t *n);
void kn_store_release(struct kn_obj **objs, size_t n);

size_t kn_store_count(struct kn_store *s);
/* Sum of obj->mem plus the store's own tables (bytes requested, not the
 * allocator's overhead); 0 for an empty store, whose tables are freed. */
size_t kn_store_bytes(struct kn_store *s);
/* Drops every object and gives the memory back. */
void kn_store_clear(struct kn_store *s);

#endif
