/* kn_list_parse: a list page's items, version and continue token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_fail.h"
#include "kn_list.h"
#include "test.h"

#define PAGE(items)                                                                                                    \
    "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"10\",\"continue\":\"c1\"}," \
    "\"items\":[" items "]}"
#define ITEM(n) "{\"metadata\":{\"name\":\"" n "\",\"namespace\":\"ns\",\"resourceVersion\":\"5\"}}"

struct seen {
    char log[256];
    int bad_items;
};

static void on_item(void *ud, struct kn_obj *o, int index, const struct kn_err *err)
{
    struct seen *s = ud;
    size_t n = strlen(s->log);
    if (!o) {
        s->bad_items++;
        snprintf(s->log + n, sizeof s->log - n, "%s#%d %s", n ? "|" : "", index, err->reason);
        return;
    }
    snprintf(s->log + n, sizeof s->log - n, "%s%s", n ? "|" : "", o->key);
    kn_obj_unref(o);
}

/* A bad item is skipped and told; the others come. */
static void test_bad_item(void)
{
    static const char page[] = PAGE(ITEM("a") ",{\"metadata\":{}}," ITEM("b"));
    struct kn_normalize norm = { "v1", "ConfigMap", 0, 0 };
    struct seen s = { "", 0 };
    struct kn_err err;
    char *rv, *cont;
    int rc = kn_list_parse(page, sizeof page - 1, &norm, on_item, &s, &rv, &cont, &err);
    CHECK(rc == 3);
    CHECK_STR(s.log, "ns/a|#1 BadObject|ns/b");
    CHECK_STR(rv, "10");
    CHECK_STR(cont, "c1");
    free(rv);
    free(cont);
}

/* Under allocation failure a page parses whole or fails with a want of
 * memory; never a page without its version (a watch from nowhere), without
 * its continue token (the last page, when more follow: every object on
 * them deleted) or without an item (that object deleted). */
static void list_oom_scenario(void *arg, unsigned long n)
{
    static const char page[] = PAGE(ITEM("a") "," ITEM("b"));
    struct kn_normalize norm = { "v1", "ConfigMap", 0, 0 };
    struct seen s = { "", 0 };
    struct kn_err err = { 0, "", "" };
    char *rv, *cont;
    int rc;
    (void)arg;
    af_arm(n);
    rc = kn_list_parse(page, sizeof page - 1, &norm, on_item, &s, &rv, &cont, &err);
    af_disarm();
    if (rc >= 0) {
        CHECK_MSG(rc == 2 && strcmp(s.log, "ns/a|ns/b") == 0, "n=%lu: items %s", n, s.log);
        CHECK_MSG(rv && strcmp(rv, "10") == 0, "n=%lu: version %s", n, rv ? rv : "lost");
        CHECK_MSG(cont && strcmp(cont, "c1") == 0, "n=%lu: continue %s", n, cont ? cont : "lost");
    } else {
        CHECK_MSG(rv == NULL && cont == NULL && s.bad_items == 0, "n=%lu: a failed page gave %s", n, s.log);
        CHECK_MSG(strcmp(err.reason, KN_ERR_NOMEM) == 0 || strstr(err.msg, "out of memory"), "n=%lu: %s: %s", n,
                  err.reason, err.msg);
    }
    free(rv);
    free(cont);
}

void test_list(void)
{
    test_bad_item();
    CHECK(af_every(list_oom_scenario, NULL) > 4);
}
