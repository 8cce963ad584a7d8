/* kn_obj: normalizing an object's JSON and reading its keys. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kn_obj.h"
#include "obj_fixtures.h"
#include "test.h"

void test_obj(void);

/* Objects read like JSON with ' for " (the fixtures have no apostrophes). */
static char *dq(const char *sq, size_t *len)
{
    size_t n = strlen(sq);
    char *s = malloc(n + 1);
    for (size_t i = 0; i <= n; i++)
        s[i] = sq[i] == '\'' ? '"' : sq[i];
    if (len)
        *len = n;
    return s;
}

/* kn_obj_new on a heap copy with no NUL after it, so ASan sees any read past the end. */
static struct kn_obj *obj_new(const char *sq, const struct kn_normalize *norm, struct kn_err *err)
{
    size_t n;
    char *text = dq(sq, &n), *exact = malloc(n ? n : 1);
    struct kn_obj *o;
    memcpy(exact, text, n);
    free(text);
    o = kn_obj_new(exact, n, norm, err);
    free(exact);
    return o;
}

#define CHECK_JSON(got, want_sq)                                                                                       \
    do {                                                                                                               \
        char *want_ = dq(want_sq, NULL);                                                                               \
        t_check_str(__FILE__, __LINE__, #got, (got), want_);                                                           \
        free(want_);                                                                                                   \
    } while (0)

/* Normalizing the output again changes nothing, and len/mem agree with the text. */
static void check_stable(const struct kn_obj *o, const struct kn_normalize *norm)
{
    struct kn_err err = {0};
    struct kn_obj *again;
    if (!o)
        return;
    CHECK(o->len == strlen(o->json));
    CHECK(o->mem == sizeof *o + o->len + 1 + strlen(o->key) + 1 + strlen(o->ns) + 1 + strlen(o->uid) + 1 +
                        strlen(o->rv) + 1);
    again = kn_obj_new(o->json, o->len, norm, &err);
    CHECK(again != NULL);
    if (again) {
        CHECK_STR(again->json, o->json);
        CHECK_STR(again->key, o->key);
        kn_obj_unref(again);
    }
}

static void test_configmap(void)
{
    struct kn_normalize norm = { "v1", "ConfigMap", 0, 0 };
    struct kn_err err = {0};
    struct kn_obj *o = obj_new(CM_WITH_MF, &norm, &err);
    CHECK(o != NULL);
    if (!o)
        return;
    CHECK_JSON(o->json, CM_WITHOUT_MF);
    CHECK_STR(o->key, "shop/app-config");
    CHECK_STR(o->ns, "shop");
    CHECK_STR(o->name, "app-config");
    CHECK_STR(o->uid, "0b5a7c4e-2f1d-4d8b-9c3e-6a7f8e9d0c1b");
    CHECK_STR(o->rv, "48213");
    CHECK(o->refs == 1);
    CHECK(o->mem > o->len && o->mem < o->len + 200);
    check_stable(o, &norm);
    kn_obj_unref(o);

    /* Kept on request: the input was compact, so it comes back byte for byte. */
    norm.keep_managed_fields = 1;
    o = obj_new(CM_WITH_MF, &norm, &err);
    CHECK(o != NULL);
    if (o) {
        CHECK_JSON(o->json, CM_WITH_MF);
        check_stable(o, &norm);
    }
    kn_obj_unref(o);

    /* A normalization with nothing set drops managedFields and inserts nothing. */
    o = obj_new(CM_WITH_MF, NULL, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_JSON(o->json, CM_WITHOUT_MF);
    kn_obj_unref(o);
}

static void test_list_items(void)
{
    struct kn_normalize norm = { "v1", "ConfigMap", 0, 0 };
    struct kn_err err = {0};
    struct kn_obj *o;

    /* The API server leaves apiVersion and kind out of list items. */
    o = obj_new("{'metadata':{'name':'a','namespace':'ns1','resourceVersion':'7'},'data':{'k':'v'}}", &norm, &err);
    CHECK(o != NULL);
    if (o) {
        CHECK_JSON(o->json, "{'apiVersion':'v1','kind':'ConfigMap','metadata':{'name':'a','namespace':'ns1',"
                            "'resourceVersion':'7'},'data':{'k':'v'}}");
        check_stable(o, &norm);
    }
    kn_obj_unref(o);

    /* Present ones are kept where they are, even when they differ. */
    norm.api_version = "apps/v1";
    norm.kind = "Deployment";
    o = obj_new("{'metadata':{'name':'a'},'kind':'ConfigMap','apiVersion':'v1'}", &norm, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_JSON(o->json, "{'metadata':{'name':'a'},'kind':'ConfigMap','apiVersion':'v1'}");
    kn_obj_unref(o);

    /* Only the missing one is inserted. */
    o = obj_new("{'kind':'Deployment','metadata':{'name':'a'}}", &norm, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_JSON(o->json, "{'apiVersion':'apps/v1','kind':'Deployment','metadata':{'name':'a'}}");
    kn_obj_unref(o);
    o = obj_new("{'apiVersion':'apps/v1','metadata':{'name':'a'}}", &norm, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_JSON(o->json, "{'kind':'Deployment','apiVersion':'apps/v1','metadata':{'name':'a'}}");
    kn_obj_unref(o);

    /* NULL means "do not insert". */
    norm.api_version = NULL;
    o = obj_new("{'metadata':{'name':'a'}}", &norm, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_JSON(o->json, "{'kind':'Deployment','metadata':{'name':'a'}}");
    kn_obj_unref(o);
    norm.kind = NULL;
    o = obj_new("{'metadata':{'name':'a'}}", &norm, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_JSON(o->json, "{'metadata':{'name':'a'}}");
    kn_obj_unref(o);

    /* Inserted values are JSON-escaped. */
    norm.api_version = "example.com/v1\"beta";
    norm.kind = "Odd\\Kind\n";
    o = kn_obj_new("{\"metadata\":{\"name\":\"a\"}}", 25, &norm, &err);
    CHECK(o != NULL);
    if (o) {
        CHECK_STR(o->json, "{\"apiVersion\":\"example.com/v1\\\"beta\",\"kind\":\"Odd\\\\Kind\\u000a\","
                           "\"metadata\":{\"name\":\"a\"}}");
        check_stable(o, &norm);
    }
    kn_obj_unref(o);

    /* The empty object is still an object. */
    norm.api_version = "v1";
    norm.kind = "Secret";
    o = obj_new("{'metadata':{'name':'a'},'data':{},'list':[],'n':[[],{}]}", &norm, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_JSON(o->json, "{'apiVersion':'v1','kind':'Secret','metadata':{'name':'a'},'data':{},'list':[],"
                            "'n':[[],{}]}");
    kn_obj_unref(o);
}

static void test_managed_fields(void)
{
    static const struct {
        const char *in, *out, *kept; /* kept: NULL when it is in */
    } cases[] = {
        /* Alone in metadata it leaves no name: not an object for the store. */
        { "{'metadata':{'managedFields':[{'manager':'m'}]},'x':1}", NULL, NULL },
        /* first, middle, last, repeated, among whitespace */
        { "{'metadata':{'managedFields':[],'name':'a','uid':'u'}}", "{'metadata':{'name':'a','uid':'u'}}", NULL },
        { "{'metadata':{'name':'a','managedFields':[{'f':{}}],'uid':'u'}}", "{'metadata':{'name':'a','uid':'u'}}",
          NULL },
        { "{'metadata':{'name':'a','uid':'u','managedFields':null}}", "{'metadata':{'name':'a','uid':'u'}}", NULL },
        { "{'metadata':{'name':'a','managedFields':1,'managedFields':2}}", "{'metadata':{'name':'a'}}", NULL },
        { "{ 'metadata' : { 'name' : 'a' , 'managedFields' : [ { } ] } }", "{'metadata':{'name':'a'}}",
          "{'metadata':{'name':'a','managedFields':[{}]}}" },
        { "{ 'metadata' : {\n 'managedFields' : [ ] ,\t'name' : 'a' } }", "{'metadata':{'name':'a'}}",
          "{'metadata':{'managedFields':[],'name':'a'}}" },
        /* Only metadata's: elsewhere it is data. */
        { "{'managedFields':1,'metadata':{'name':'a'},'spec':{'template':{'metadata':{'managedFields':[]}}}}",
          "{'managedFields':1,'metadata':{'name':'a'},'spec':{'template':{'metadata':{'managedFields':[]}}}}", NULL },
        { "{'metadata':{'name':'a','labels':{'managedFields':'x'}}}",
          "{'metadata':{'name':'a','labels':{'managedFields':'x'}}}", NULL },
        /* An escaped spelling is another member name. */
        { "{'metadata':{'name':'a','managed\\u0046ields':[]}}",
          "{'metadata':{'name':'a','managed\\u0046ields':[]}}", NULL },
    };
    struct kn_normalize drop = { NULL, NULL, 0, 0 }, keep = { NULL, NULL, 1, 0 };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct kn_err err = {0};
        struct kn_obj *o = obj_new(cases[i].in, &drop, &err);
        if (!cases[i].out) {
            CHECK_MSG(!o, "case %zu has no name", i);
            kn_obj_unref(o);
            continue;
        }
        CHECK_MSG(o != NULL, "case %zu: %s", i, err.msg);
        if (o)
            CHECK_JSON(o->json, cases[i].out);
        check_stable(o, &drop);
        kn_obj_unref(o);

        o = obj_new(cases[i].in, &keep, &err);
        CHECK_MSG(o != NULL, "case %zu kept: %s", i, err.msg);
        if (o)
            CHECK_JSON(o->json, cases[i].kept ? cases[i].kept : cases[i].in);
        kn_obj_unref(o);
    }
}

static void test_metadata_only(void)
{
    struct kn_normalize norm = { "v1", "Pod", 0, 1 };
    struct kn_err err = {0};
    struct kn_obj *o = obj_new(POD, &norm, &err);
    CHECK(o != NULL);
    if (o) {
        CHECK_JSON(o->json, "{'apiVersion':'v1','kind':'Pod','metadata':" POD_META_WITHOUT_MF "}");
        CHECK_STR(o->key, "shop/web-7d9f8-abcde");
        CHECK_STR(o->uid, "9d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a");
        CHECK_STR(o->rv, "90210");
        check_stable(o, &norm);
    }
    kn_obj_unref(o);

    norm.keep_managed_fields = 1;
    o = obj_new(POD, &norm, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_JSON(o->json, "{'apiVersion':'v1','kind':'Pod','metadata':" POD_META_WITH_MF "}");
    kn_obj_unref(o);

    /* A list item: both are restored, and the order is always apiVersion, kind, metadata. */
    norm.keep_managed_fields = 0;
    o = obj_new("{'status':{'phase':'Running'},'metadata':{'name':'p','managedFields':[]},'spec':{}}", &norm, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_JSON(o->json, "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p'}}");
    kn_obj_unref(o);
    o = obj_new("{'spec':{},'metadata':{'name':'p'},'kind':'Pod'}", &norm, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_JSON(o->json, "{'apiVersion':'v1','kind':'Pod','metadata':{'name':'p'}}");
    kn_obj_unref(o);
    norm.api_version = norm.kind = NULL;
    o = obj_new("{'spec':{},'metadata':{'name':'p'}}", &norm, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_JSON(o->json, "{'metadata':{'name':'p'}}");
    kn_obj_unref(o);
}

static void test_compact_and_escapes(void)
{
    struct kn_normalize norm = { "v1", "ConfigMap", 0, 0 };
    struct kn_err err = {0};
    struct kn_obj *o;

    /* kubectl-style pretty printing, with whitespace inside strings that must stay. */
    o = obj_new("{\n  'apiVersion': 'v1',\n  'kind': 'ConfigMap',\n  'metadata': {\n    'name': 'pretty',\r\n"
                "    'labels': { 'a b': ' c\\td ' },\n    'managedFields': [\n      { 'manager': 'kubectl' }\n"
                "    ]\n  },\n  'data': {\n    'n': [ 1 , -2.5e+3 , true , false , null ],\n"
                "    'text': 'line 1\\nline 2  '\n  }\n}\n",
                &norm, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_JSON(o->json, "{'apiVersion':'v1','kind':'ConfigMap','metadata':{'name':'pretty','labels':"
                            "{'a b':' c\\td '}},'data':{'n':[1,-2.5e+3,true,false,null],"
                            "'text':'line 1\\nline 2  '}}");
    check_stable(o, &norm);
    kn_obj_unref(o);

    /* Escapes and number texts are copied as written, not re-encoded. */
    o = obj_new("{'metadata':{'name':'e'},'s':'q\\'b\\\\s\\/t\\u00e9\\u00E9\\ud83d\\ude00','n':1.50E+01,"
                "'big':123456789012345678901234567890,'raw':'caf\xc3\xa9 \xf0\x9f\x98\x80 \xe6\x97\xa5'}",
                &norm, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_JSON(o->json, "{'apiVersion':'v1','kind':'ConfigMap','metadata':{'name':'e'},"
                            "'s':'q\\'b\\\\s\\/t\\u00e9\\u00E9\\ud83d\\ude00','n':1.50E+01,"
                            "'big':123456789012345678901234567890,'raw':'caf\xc3\xa9 \xf0\x9f\x98\x80 \xe6\x97\xa5'}");
    kn_obj_unref(o);

    /* Key fields are unescaped. */
    o = obj_new("{'metadata':{'name':'caf\\u00e9-\xe6\x97\xa5','namespace':'n\\/s','uid':'\\u0075id',"
                "'resourceVersion':'4\\u0032'}}",
                &norm, &err);
    CHECK(o != NULL);
    if (o) {
        CHECK_STR(o->name, "caf\xc3\xa9-\xe6\x97\xa5");
        CHECK_STR(o->ns, "n/s");
        CHECK_STR(o->key, "n/s/caf\xc3\xa9-\xe6\x97\xa5");
        CHECK_STR(o->uid, "uid");
        CHECK_STR(o->rv, "42");
        CHECK_HAS(o->json, "\"name\":\"caf\\u00e9-\xe6\x97\xa5\"");
        check_stable(o, &norm);
    }
    kn_obj_unref(o);
}

static void test_keys(void)
{
    struct kn_normalize norm = { "v1", "Namespace", 0, 0 };
    struct kn_err err = {0};
    struct kn_obj *o = obj_new(NAMESPACE, &norm, &err);
    CHECK(o != NULL);
    if (o) {
        /* Cluster-scoped: the key is the name. */
        CHECK_STR(o->key, "team-a");
        CHECK_STR(o->name, "team-a");
        CHECK_STR(o->ns, "");
        CHECK_STR(o->uid, "3c2b1a09-8f7e-4d6c-b5a4-93827160f5e4");
        CHECK_STR(o->rv, "301");
        CHECK_LACKS(o->json, "managedFields");
        CHECK_HAS(o->json, "\"spec\":{\"finalizers\":[\"kubernetes\"]}");
        check_stable(o, &norm);
    }
    kn_obj_unref(o);

    /* Absent uid and resourceVersion read as "", and so does an empty or non-string namespace. */
    o = obj_new("{'metadata':{'name':'x','namespace':''}}", &norm, &err);
    CHECK(o != NULL);
    if (o) {
        CHECK_STR(o->key, "x");
        CHECK_STR(o->ns, "");
        CHECK_STR(o->uid, "");
        CHECK_STR(o->rv, "");
        check_stable(o, &norm);
    }
    kn_obj_unref(o);
    o = obj_new("{'metadata':{'name':'x','namespace':null,'uid':7,'resourceVersion':{}}}", &norm, &err);
    CHECK(o != NULL);
    if (o) {
        CHECK_STR(o->key, "x");
        CHECK_STR(o->uid, "");
        CHECK_STR(o->rv, "");
    }
    kn_obj_unref(o);

    /* The first of duplicate members is the one read. */
    o = obj_new("{'metadata':{'name':'first','name':'second'}}", &norm, &err);
    CHECK(o != NULL);
    if (o)
        CHECK_STR(o->name, "first");
    kn_obj_unref(o);
}

static void test_errors(void)
{
    static const struct {
        const char *json;
        const char *msg;
    } bad[] = {
        { "", "not valid JSON" },
        { "garbage", "not valid JSON" },
        { "{'metadata':{'name':'a'}", "not valid JSON" },
        { "{'metadata':{'name':'a'}} {}", "not valid JSON" },
        { "{'metadata':{'name':'secret-looking'},'data':{'x':'SECRETVALUE'},}", "not valid JSON" },
        { "[]", "not a JSON object" },
        { "'metadata'", "not a JSON object" },
        { "42", "not a JSON object" },
        { "{}", "no metadata" },
        { "{'spec':{'metadata':{'name':'nested'}}}", "no metadata" },
        { "{'metadata':[]}", "metadata that is not an object" },
        { "{'metadata':null}", "metadata that is not an object" },
        { "{'metadata':{}}", "no metadata.name" },
        { "{'metadata':{'generateName':'web-'}}", "no metadata.name" },
        { "{'metadata':{'name':5}}", "metadata.name that is not a string" },
        { "{'metadata':{'name':null}}", "metadata.name that is not a string" },
        { "{'metadata':{'name':['a']}}", "metadata.name that is not a string" },
        { "{'metadata':{'name':''}}", "empty metadata.name" },
        { "{'metadata':{'name':'a\\u0000b'}}", "NUL byte in metadata.name" },
        { "{'metadata':{'name':'a','namespace':'n\\u0000'}}", "NUL byte in metadata.namespace" },
    };
    struct kn_normalize norm = { "v1", "ConfigMap", 0, 0 };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct kn_err err = {0};
        struct kn_obj *o = obj_new(bad[i].json, &norm, &err);
        CHECK_MSG(o == NULL, "bad object #%zu was accepted", i);
        kn_obj_unref(o);
        CHECK_STR(err.reason, "BadObject");
        CHECK_MSG(strstr(err.msg, bad[i].msg) != NULL, "bad object #%zu: message \"%s\" lacks \"%s\"", i, err.msg,
                  bad[i].msg);
        CHECK_LACKS(err.msg, "SECRETVALUE");
        CHECK_LACKS(err.msg, "nested");
    }
    /* err may be NULL. */
    CHECK(kn_obj_new("[]", 2, &norm, NULL) == NULL);
}

struct hammer {
    struct kn_obj *o;
    int rounds;
};

static void *hammer_run(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < h->rounds; i++)
        kn_obj_unref(kn_obj_ref(h->o));
    return NULL;
}

static void test_refs(void)
{
    struct kn_err err = {0};
    struct kn_obj *o = obj_new(CM_WITH_MF, NULL, &err), *r;
    pthread_t th[4];
    struct hammer h;
    CHECK(o != NULL);
    if (!o)
        return;
    CHECK(o->refs == 1);
    r = kn_obj_ref(o);
    CHECK(r == o && o->refs == 2);
    kn_obj_unref(r);
    CHECK(o->refs == 1);
    CHECK(kn_obj_ref(NULL) == NULL);
    kn_obj_unref(NULL);

    /* Many threads at once: the count comes back to one, and the last unref frees (LeakSanitizer checks). */
    h.o = o;
    h.rounds = 20000;
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&th[i], NULL, hammer_run, &h) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK(o->refs == 1);
    kn_obj_ref(o);
    kn_obj_unref(o);
    kn_obj_unref(o);
}

void test_obj(void)
{
    test_configmap();
    test_list_items();
    test_managed_fields();
    test_metadata_only();
    test_compact_and_escapes();
    test_keys();
    test_errors();
    test_refs();
}
