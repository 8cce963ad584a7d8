#include "kn_list.h"

#include <stdlib.h>
#include <string.h>

#include "kn_json.h"

/* The string at idx in *out, NULL when absent or empty; -1 when it could not
 * be copied: a version or continue token lost to a want of memory must not
 * read as absent (a watch from nowhere, or the last page when more follow). */
static int nonempty(const struct kn_json *j, int idx, char **out)
{
    *out = NULL;
    if (idx < 0 || j->tok[idx].type != KN_J_STRING || j->tok[idx].end == j->tok[idx].start)
        return 0;
    *out = kn_json_string(j, idx, NULL);
    if (!*out)
        return -1;
    if (!**out) { /* decodes to nothing a C string holds ("\u0000..."): as absent, not as "" */
        free(*out);
        *out = NULL;
    }
    return 0;
}

int kn_list_parse(const char *body, size_t len, const struct kn_normalize *norm, kn_list_item_fn on_item,
                  void *ud, char **rv, char **cont, struct kn_err *err)
{
    struct kn_json j = {0};
    int items, meta, n = 0;
    *rv = *cont = NULL;
    if (kn_json_parse(&j, body, len) < 0) {
        kn_err_set(err, 0, "BadList", "the list is not JSON (%s)", j.error);
        goto fail;
    }
    if (j.tok[0].type != KN_J_OBJECT) {
        kn_err_set(err, 0, "BadList", "the list is not a JSON object");
        goto fail;
    }
    items = kn_json_member(&j, 0, "items");
    if (items >= 0 && j.tok[items].type != KN_J_ARRAY && j.tok[items].type != KN_J_NULL) {
        kn_err_set(err, 0, "BadList", "the list's items is not an array");
        goto fail;
    }
    meta = kn_json_member(&j, 0, "metadata");
    if (nonempty(&j, kn_json_member(&j, meta, "resourceVersion"), rv) < 0 ||
        nonempty(&j, kn_json_member(&j, meta, "continue"), cont) < 0) {
        kn_err_set(err, 0, KN_ERR_NOMEM, "out of memory reading the list's metadata");
        goto fail;
    }
    if (items >= 0 && j.tok[items].type == KN_J_ARRAY) {
        int i = items + 1;
        for (int k = 0; k < j.tok[items].size; k++, n++) {
            struct kn_err item_err = { 0, "", "" };
            /* the items share the page's tokens: each is scanned once */
            struct kn_obj *o = kn_obj_from_tokens(&j, i, norm, &item_err);
            if (!o && strcmp(item_err.reason, KN_ERR_NOMEM) == 0) {
                /* not a bad item to skip: a page without it would say the object is gone */
                kn_err_set(err, 0, KN_ERR_NOMEM, "item %d: %s", k, item_err.msg);
                goto fail;
            }
            on_item(ud, o, k, o ? NULL : &item_err);
            i = j.tok[i].next;
        }
    }
    kn_json_free(&j);
    return n;
fail:
    free(*rv);
    free(*cont);
    *rv = *cont = NULL;
    kn_json_free(&j);
    return -1;
}
