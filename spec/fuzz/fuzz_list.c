/* libFuzzer target for list pages: arbitrary bytes through kn_list_parse
 * under two normalizations. Besides the sanitizers it checks what the
 * reflector relies on: the callback sees indexes 0..n-1 in order, each with
 * an object or an error (never both, never neither), the count returned is
 * the count seen, a failed page gives no callback and no rv/continue, and an
 * item built from the page's tokens is byte for byte the object kn_obj_new
 * builds from the item's own text.
 *
 * make fuzz (or build/fuzz/fuzz_list spec/fuzz/corpus/list -dict=spec/fuzz/list.dict) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kn_json.h"
#include "kn_list.h"

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c))                                                                                                      \
            __builtin_trap();                                                                                          \
    } while (0)

static const struct kn_normalize norms[2] = {
    { "v1", "ConfigMap", 0, 0 },
    { "example.com/v1\"beta", "Odd\\Kind\n", 1, 1 },
};

struct page {
    const struct kn_normalize *norm;
    const char *text;     /* the page, for the items' own text */
    struct kn_json j;     /* the page tokenized here, to find each item's span */
    int items;            /* token of the items array, or -1 */
    int next_tok;         /* token of the next item */
    int seen;
};

static void check_obj(const struct kn_obj *o, const struct kn_normalize *norm)
{
    struct kn_json j = {0};
    CHECK(o->refs == 1);
    CHECK(strlen(o->json) == o->len);
    CHECK(kn_json_parse(&j, o->json, o->len) == 0);
    CHECK(j.tok[0].type == KN_J_OBJECT);
    /* apiVersion and kind are always there, restored when the item lacked them */
    CHECK(kn_json_member(&j, 0, "apiVersion") >= 0 && kn_json_member(&j, 0, "kind") >= 0);
    if (!norm->keep_managed_fields)
        CHECK(kn_json_path(&j, 0, "metadata.managedFields") < 0);
    kn_json_free(&j);
    CHECK(o->name[0] != '\0');
    CHECK(strlen(o->key) >= strlen(o->name));
    CHECK(o->mem >= o->len);
}

static void on_item(void *ud, struct kn_obj *obj, int index, const struct kn_err *item_err)
{
    struct page *p = ud;
    struct kn_err err = {0};
    struct kn_obj *alone;
    const struct kn_jtok *t;
    CHECK(index == p->seen);
    p->seen++;
    CHECK((obj == NULL) != (item_err == NULL));
    if (item_err)
        CHECK(item_err->msg[0] != '\0');
    /* The same item from its own text must give the same object. */
    CHECK(p->items >= 0 && index < p->j.tok[p->items].size);
    t = &p->j.tok[p->next_tok];
    if (t->type == KN_J_STRING) /* a string's span leaves its quotes out */
        alone = kn_obj_new(p->text + t->start - 1, t->end - t->start + 2, p->norm, &err);
    else
        alone = kn_obj_new(p->text + t->start, t->end - t->start, p->norm, &err);
    p->next_tok = t->next;
    CHECK((alone == NULL) == (obj == NULL));
    if (obj) {
        check_obj(obj, p->norm);
        CHECK(alone->len == obj->len && memcmp(alone->json, obj->json, obj->len) == 0);
        CHECK(strcmp(alone->key, obj->key) == 0 && strcmp(alone->ns, obj->ns) == 0 &&
              strcmp(alone->uid, obj->uid) == 0 && strcmp(alone->rv, obj->rv) == 0);
    }
    kn_obj_unref(alone);
    kn_obj_unref(obj); /* the callee owns the reference */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A heap copy of exactly the input, so a read past the page is caught. */
    char *body = malloc(size ? size : 1);
    memcpy(body, data, size);
    for (int n = 0; n < 2; n++) {
        struct page p = { &norms[n], body, { 0 }, -1, 0, 0 };
        struct kn_err err = {0};
        char *rv = (char *)1, *cont = (char *)1;
        int got;
        if (kn_json_parse(&p.j, body, size) == 0 && p.j.tok[0].type == KN_J_OBJECT) {
            p.items = kn_json_member(&p.j, 0, "items");
            p.next_tok = p.items + 1;
        }
        got = kn_list_parse(body, size, &norms[n], on_item, &p, &rv, &cont, &err);
        if (got < 0) {
            CHECK(got == -1 && p.seen == 0 && err.msg[0] != '\0');
            CHECK(rv == NULL && cont == NULL);
        } else {
            CHECK(got == p.seen);
            CHECK(rv == NULL || rv[0] != '\0');
            CHECK(cont == NULL || cont[0] != '\0');
        }
        free(rv);
        free(cont);
        kn_json_free(&p.j);
    }
    free(body);
    return 0;
}
