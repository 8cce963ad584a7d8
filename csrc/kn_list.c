#include "kn_list.h"

#include <stdlib.h>

#include "kn_json.h"

static char *nonempty(const struct kn_json *j, int idx)
{
    char *s = kn_json_string(j, idx, NULL);
    if (s && !*s) {
        free(s);
        s = NULL;
    }
    return s;
}

int kn_list_parse(const char *body, size_t len, const struct kn_normalize *norm, kn_list_item_fn on_item,
                  void *ud, char **rv, char **cont, struct kn_err *err)
{
    struct kn_json j = {0};
    int items, meta, n = 0;
    *rv = *cont = NULL;
    if (kn_json_parse(&j, body, len) < 0) {
        kn_err_set(err, 0, "BadList", "the list is not JSON (%s)", j.error);
        kn_json_free(&j);
        return -1;
    }
    if (j.tok[0].type != KN_J_OBJECT) {
        kn_err_set(err, 0, "BadList", "the list is not a JSON object");
        kn_json_free(&j);
        return -1;
    }
    items = kn_json_member(&j, 0, "items");
    if (items >= 0 && j.tok[items].type != KN_J_ARRAY && j.tok[items].type != KN_J_NULL) {
        kn_err_set(err, 0, "BadList", "the list's items is not an array");
        kn_json_free(&j);
        return -1;
    }
    meta = kn_json_member(&j, 0, "metadata");
    *rv = nonempty(&j, kn_json_member(&j, meta, "resourceVersion"));
    *cont = nonempty(&j, kn_json_member(&j, meta, "continue"));
    if (items >= 0 && j.tok[items].type == KN_J_ARRAY) {
        int i = items + 1;
        for (int k = 0; k < j.tok[items].size; k++, n++) {
            struct kn_err item_err = { 0, "", "" };
            /* the items share the page's tokens: each is scanned once */
            struct kn_obj *o = kn_obj_from_tokens(&j, i, norm, &item_err);
            on_item(ud, o, k, o ? NULL : &item_err);
            i = j.tok[i].next;
        }
    }
    kn_json_free(&j);
    return n;
}
