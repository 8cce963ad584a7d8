/* A list page as the API server sends it: {"kind": "ConfigMapList",
 * "metadata": {"resourceVersion": ..., "continue": ...}, "items": [...]}.
 * Each item becomes a normalized object (apiVersion and kind restored). */
#ifndef KN_LIST_H
#define KN_LIST_H

#include <stddef.h>

#include "kn_err.h"
#include "kn_obj.h"

/* Called for every item: obj is a new reference the callee owns, or NULL
 * with item_err set when the item is not a usable object (it is skipped). */
typedef void (*kn_list_item_fn)(void *ud, struct kn_obj *obj, int index, const struct kn_err *item_err);

/* Parses one page. *rv and *cont get malloc'd copies of the page's
 * resourceVersion and continue token (NULL when absent or empty). Returns
 * the number of items, or -1 with err set (and *rv, *cont NULL) when the page
 * is not a list or memory ran out (reason KN_ERR_NOMEM): an item that could
 * not be read for want of memory fails the page instead of being skipped,
 * after on_item has seen the items before it. */
int kn_list_parse(const char *body, size_t len, const struct kn_normalize *norm, kn_list_item_fn on_item,
                  void *ud, char **rv, char **cont, struct kn_err *err);

#endif
