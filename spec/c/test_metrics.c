/* kn_metrics: the exact exposition text (families by name, series by label
 * values, escaping, histograms), validation, numbers, reading and removing
 * series, recording from several threads while rendering, and out of memory
 * at every allocation: a failed call changes nothing, so the registry
 * renders exactly as a reference that only got the calls that succeeded. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_fail.h"
#include "kn_metrics.h"
#include "test.h"

static char *render(struct kn_metrics *reg)
{
    struct kn_buf b = {0};
    if (kn_metrics_render(reg, &b) < 0) {
        kn_buf_free(&b);
        return NULL;
    }
    return kn_buf_steal(&b, NULL);
}

#define V(...) ((const char *const[]){ __VA_ARGS__ })
#define NV(...) (sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(const char *))

static void test_render(void)
{
    struct kn_err err = {0};
    struct kn_metrics *reg = kn_metrics_new();
    struct kn_mfam *total, *errors, *depth, *time, *up, *empty;
    char *text;
    const char *want;

    /* registered out of order: rendered by name */
    time = kn_metrics_histogram(reg, "controller_runtime_reconcile_time_seconds",
                                "Length of time per reconciliation per controller", V("controller"), 1, NULL, 0, &err);
    total = kn_metrics_counter(reg, "controller_runtime_reconcile_total",
                               "Total number of reconciliations per controller", V("controller", "result"), 2, &err);
    errors = kn_metrics_counter(reg, "controller_runtime_reconcile_errors_total",
                                "Total number of reconciliation errors per controller", V("controller"), 1, &err);
    depth = kn_metrics_gauge(reg, "workqueue_depth", "Current depth of workqueue", V("name"), 1, &err);
    up = kn_metrics_gauge(reg, "kinformer_up", "Help with \\ a backslash\nand a newline; \"quotes\" stay", NULL, 0,
                          &err);
    empty = kn_metrics_counter(reg, "aaa_unused_total", "shown once used", V("x"), 1, &err);
    CHECK(time && total && errors && depth && up && empty);

    /* series added out of order: rendered by label values */
    CHECK(kn_metrics_add(total, V("website", "success"), 2, 3, &err) == 0);
    CHECK(kn_metrics_add(total, V("replicator", "success"), 2, 1, &err) == 0);
    CHECK(kn_metrics_add(total, V("website", "error"), 2, 1, &err) == 0);
    CHECK(kn_metrics_add(total, V("website", "requeue_after"), 2, 2, &err) == 0);
    CHECK(kn_metrics_add(total, V("website", "success"), 2, 0.5, &err) == 0);
    CHECK(kn_metrics_add(errors, V("website"), 1, 1, &err) == 0);
    CHECK(kn_metrics_set(depth, V("a \"quoted\" \\ back\nslash"), 1, 7, &err) == 0);
    CHECK(kn_metrics_set(depth, V("website"), 1, 2, &err) == 0);
    CHECK(kn_metrics_add(depth, V("website"), 1, -3, &err) == 0);
    CHECK(kn_metrics_observe(time, V("website"), 1, 0.003, &err) == 0);
    CHECK(kn_metrics_observe(time, V("website"), 1, 0.005, &err) == 0); /* on a bound: in that bucket */
    CHECK(kn_metrics_observe(time, V("website"), 1, 0.7, &err) == 0);
    CHECK(kn_metrics_observe(time, V("website"), 1, 60, &err) == 0);    /* beyond the last: +Inf only */
    CHECK(kn_metrics_observe(time, V("replicator"), 1, 0.25, &err) == 0);

    text = render(reg);
    want = "# HELP controller_runtime_reconcile_errors_total Total number of reconciliation errors per controller\n"
           "# TYPE controller_runtime_reconcile_errors_total counter\n"
           "controller_runtime_reconcile_errors_total{controller=\"website\"} 1\n"
           "# HELP controller_runtime_reconcile_time_seconds Length of time per reconciliation per controller\n"
           "# TYPE controller_runtime_reconcile_time_seconds histogram\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"replicator\",le=\"0.005\"} 0\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"replicator\",le=\"0.01\"} 0\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"replicator\",le=\"0.025\"} 0\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"replicator\",le=\"0.05\"} 0\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"replicator\",le=\"0.1\"} 0\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"replicator\",le=\"0.25\"} 1\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"replicator\",le=\"0.5\"} 1\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"replicator\",le=\"1\"} 1\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"replicator\",le=\"2.5\"} 1\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"replicator\",le=\"5\"} 1\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"replicator\",le=\"10\"} 1\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"replicator\",le=\"+Inf\"} 1\n"
           "controller_runtime_reconcile_time_seconds_sum{controller=\"replicator\"} 0.25\n"
           "controller_runtime_reconcile_time_seconds_count{controller=\"replicator\"} 1\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"website\",le=\"0.005\"} 2\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"website\",le=\"0.01\"} 2\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"website\",le=\"0.025\"} 2\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"website\",le=\"0.05\"} 2\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"website\",le=\"0.1\"} 2\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"website\",le=\"0.25\"} 2\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"website\",le=\"0.5\"} 2\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"website\",le=\"1\"} 3\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"website\",le=\"2.5\"} 3\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"website\",le=\"5\"} 3\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"website\",le=\"10\"} 3\n"
           "controller_runtime_reconcile_time_seconds_bucket{controller=\"website\",le=\"+Inf\"} 4\n"
           "controller_runtime_reconcile_time_seconds_sum{controller=\"website\"} 60.708\n"
           "controller_runtime_reconcile_time_seconds_count{controller=\"website\"} 4\n"
           "# HELP controller_runtime_reconcile_total Total number of reconciliations per controller\n"
           "# TYPE controller_runtime_reconcile_total counter\n"
           "controller_runtime_reconcile_total{controller=\"replicator\",result=\"success\"} 1\n"
           "controller_runtime_reconcile_total{controller=\"website\",result=\"error\"} 1\n"
           "controller_runtime_reconcile_total{controller=\"website\",result=\"requeue_after\"} 2\n"
           "controller_runtime_reconcile_total{controller=\"website\",result=\"success\"} 3.5\n"
           "# HELP kinformer_up Help with \\\\ a backslash\\nand a newline; \"quotes\" stay\n"
           "# TYPE kinformer_up gauge\n"
           "kinformer_up 0\n"
           "# HELP workqueue_depth Current depth of workqueue\n"
           "# TYPE workqueue_depth gauge\n"
           "workqueue_depth{name=\"a \\\"quoted\\\" \\\\ back\\nslash\"} 7\n"
           "workqueue_depth{name=\"website\"} -1\n";
    CHECK_STR(text, want);
    free(text);

    /* custom buckets, a trailing +Inf given or not, no help, several labels */
    {
        struct kn_metrics *r2 = kn_metrics_new();
        const double b1[] = { 0.5, 1, INFINITY };
        struct kn_mfam *h = kn_metrics_histogram(r2, "h", NULL, V("a", "b"), 2, b1, 3, &err);
        CHECK(h && kn_metrics_histogram(r2, "h", "", V("a", "b"), 2, b1, 2, &err) == h);
        CHECK(kn_metrics_observe(h, V("x", ""), 2, 1, &err) == 0);
        CHECK(kn_metrics_observe(h, V("x", ""), 2, NAN, &err) == 0); /* counted, in +Inf only */
        CHECK(kn_metrics_observe(h, V("x", ""), 2, -5, &err) == 0);
        text = render(r2);
        CHECK_STR(text, "# TYPE h histogram\n"
                        "h_bucket{a=\"x\",b=\"\",le=\"0.5\"} 1\n"
                        "h_bucket{a=\"x\",b=\"\",le=\"1\"} 2\n"
                        "h_bucket{a=\"x\",b=\"\",le=\"+Inf\"} 3\n"
                        "h_sum{a=\"x\",b=\"\"} NaN\n"
                        "h_count{a=\"x\",b=\"\"} 3\n");
        free(text);
        kn_metrics_unref(r2);
    }

    /* an empty registry renders nothing; rendering appends */
    {
        struct kn_metrics *r3 = kn_metrics_new();
        struct kn_buf b = {0};
        kn_buf_puts(&b, "before\n");
        CHECK(kn_metrics_render(r3, &b) == 0 && strcmp(b.data, "before\n") == 0);
        kn_metrics_gauge(r3, "g", NULL, NULL, 0, &err);
        CHECK(kn_metrics_render(r3, &b) == 0);
        CHECK_STR(b.data, "before\n# TYPE g gauge\ng 0\n");
        kn_buf_free(&b);
        kn_metrics_unref(r3);
    }
    kn_metrics_unref(reg);
}

static void test_fmt(void)
{
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        { 0, "0" },           { -0.0, "0" },         { 1, "1" },
        { -42, "-42" },       { 0.1, "0.1" },        { 0.3, "0.3" },
        { 2.5, "2.5" },       { 1e-9, "1e-09" },     { 123456789012, "123456789012" },
        { 9007199254740991.0, "9007199254740991" },  { 1e21, "1e+21" },
        { 1.0 / 3, "0.3333333333333333" },           { 0.1 + 0.2, "0.30000000000000004" },
        { -1.5e-300, "-1.5e-300" },
    };
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECK_STR(kn_metrics_fmt(cases[i].v, buf), cases[i].want);
    CHECK_STR(kn_metrics_fmt(NAN, buf), "NaN");
    CHECK_STR(kn_metrics_fmt(INFINITY, buf), "+Inf");
    CHECK_STR(kn_metrics_fmt(-INFINITY, buf), "-Inf");
    CHECK_STR(kn_metrics_fmt(-1.7976931348623157e308, buf), "-1.7976931348623157e+308");
    /* every shortest form reads back exactly */
    {
        unsigned long long s = 88172645463325252ull;
        int exact = 1;
        for (int i = 0; i < 20000; i++) {
            double v;
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            memcpy(&v, &s, sizeof v);
            if (isnan(v))
                continue;
            exact &= strtod(kn_metrics_fmt(v, buf), NULL) == v;
        }
        CHECK(exact);
    }
}

static void test_validation(void)
{
    struct kn_err err = {0};
    struct kn_metrics *reg = kn_metrics_new();
    struct kn_mfam *c, *g, *h;
    const double bad1[] = { 1, 1 }, bad2[] = { 2, 1 }, bad3[] = { NAN }, bad4[] = { 1, INFINITY, 2 };
    double many[KN_METRICS_MAX_BUCKETS + 1];
    const char *labels17[17];
    char names[17][16];

    CHECK(kn_metrics_counter(reg, "ok:name_total", NULL, V("a_b", "_c"), 2, &err) != NULL);
    CHECK(!kn_metrics_counter(reg, "9lives", NULL, NULL, 0, &err));
    CHECK_STR(err.reason, "Invalid");
    CHECK_HAS(err.msg, "metric name \"9lives\" is not [a-zA-Z_:][a-zA-Z0-9_:]*");
    CHECK(!kn_metrics_counter(reg, "", NULL, NULL, 0, &err));
    CHECK(!kn_metrics_counter(reg, NULL, NULL, NULL, 0, &err));
    CHECK(!kn_metrics_counter(reg, "a-b", NULL, NULL, 0, &err));
    CHECK(!kn_metrics_gauge(reg, "x", NULL, V("a:b"), 1, &err));
    CHECK_HAS(err.msg, "metric x: label name \"a:b\" is not [a-zA-Z_][a-zA-Z0-9_]*");
    CHECK(!kn_metrics_gauge(reg, "x", NULL, V("1a"), 1, &err));
    CHECK(!kn_metrics_gauge(reg, "x", NULL, V("__name"), 1, &err));
    CHECK_HAS(err.msg, "reserved");
    CHECK(!kn_metrics_gauge(reg, "x", NULL, V("a", "b", "a"), 3, &err));
    CHECK_HAS(err.msg, "label name \"a\" given twice");
    CHECK(!kn_metrics_gauge(reg, "x", NULL, NULL, 2, &err));
    CHECK(!kn_metrics_gauge(reg, "x", "bad \xff help", NULL, 0, &err));
    CHECK_HAS(err.msg, "not UTF-8");
    for (int i = 0; i < 17; i++) {
        snprintf(names[i], sizeof names[i], "l%d", i);
        labels17[i] = names[i];
    }
    CHECK(!kn_metrics_gauge(reg, "x", NULL, labels17, 17, &err));
    CHECK_HAS(err.msg, "at most 16");
    CHECK(kn_metrics_gauge(reg, "x16", NULL, labels17, 16, &err) != NULL);
    CHECK(!kn_metrics_histogram(reg, "h", NULL, V("le"), 1, NULL, 0, &err));
    CHECK_HAS(err.msg, "label named le");
    CHECK(kn_metrics_gauge(reg, "le_ok", NULL, V("le"), 1, &err) != NULL); /* only histograms reserve it */
    CHECK(!kn_metrics_histogram(reg, "h", NULL, NULL, 0, bad1, 2, &err));
    CHECK_HAS(err.msg, "buckets must increase (bucket 2 is 1 after 1)");
    CHECK(!kn_metrics_histogram(reg, "h", NULL, NULL, 0, bad2, 2, &err));
    CHECK(!kn_metrics_histogram(reg, "h", NULL, NULL, 0, bad3, 1, &err));
    CHECK(!kn_metrics_histogram(reg, "h", NULL, NULL, 0, bad4, 3, &err));
    for (int i = 0; i <= KN_METRICS_MAX_BUCKETS; i++)
        many[i] = i;
    CHECK(!kn_metrics_histogram(reg, "h", NULL, NULL, 0, many, KN_METRICS_MAX_BUCKETS + 1, &err));
    CHECK(kn_metrics_histogram(reg, "h", NULL, NULL, 0, many, KN_METRICS_MAX_BUCKETS, &err) != NULL);

    /* the same definition again is the same family; another is an error */
    c = kn_metrics_counter(reg, "c_total", "help", V("a"), 1, &err);
    CHECK(c && kn_metrics_counter(reg, "c_total", "help", V("a"), 1, &err) == c);
    CHECK(!kn_metrics_gauge(reg, "c_total", "help", V("a"), 1, &err));
    CHECK_HAS(err.msg, "metric c_total is already registered as a counter");
    CHECK(!kn_metrics_counter(reg, "c_total", "other help", V("a"), 1, &err));
    CHECK(!kn_metrics_counter(reg, "c_total", "help", V("b"), 1, &err));
    CHECK(!kn_metrics_counter(reg, "c_total", "help", NULL, 0, &err));
    h = kn_metrics_histogram(reg, "d_seconds", NULL, NULL, 0, NULL, 0, &err);
    CHECK(h && kn_metrics_histogram(reg, "d_seconds", NULL, NULL, 0, (double[]){ KN_METRICS_DEFAULT_BUCKETS }, 11,
                                    &err) == h);
    CHECK(!kn_metrics_histogram(reg, "d_seconds", NULL, NULL, 0, (double[]){ 1, 2 }, 2, &err));

    /* operations */
    g = kn_metrics_gauge(reg, "g", NULL, V("a"), 1, &err);
    CHECK(kn_metrics_add(c, V("x"), 1, -1, &err) == -1);
    CHECK_HAS(err.msg, "metric c_total is a counter: it cannot add -1");
    CHECK(kn_metrics_add(c, V("x"), 1, NAN, &err) == -1);
    CHECK(kn_metrics_set(c, V("x"), 1, 1, &err) == -1);
    CHECK_HAS(err.msg, "metric c_total is a counter: it has no set");
    CHECK(kn_metrics_observe(c, V("x"), 1, 1, &err) == -1);
    CHECK(kn_metrics_observe(g, V("x"), 1, 1, &err) == -1);
    CHECK(kn_metrics_add(h, NULL, 0, 1, &err) == -1);
    CHECK_HAS(err.msg, "metric d_seconds is a histogram: it has no add");
    CHECK(kn_metrics_add(c, V("x", "y"), 2, 1, &err) == -1);
    CHECK_HAS(err.msg, "metric c_total: 2 label values for 1 label names");
    CHECK(kn_metrics_add(c, NULL, 0, 1, &err) == -1);
    CHECK(kn_metrics_add(c, V(NULL), 1, 1, &err) == -1);
    CHECK(kn_metrics_add(c, V("\xc3\x28"), 1, 1, &err) == -1);
    CHECK_HAS(err.msg, "the value of label a is not UTF-8");
    CHECK(kn_metrics_add(c, V("\xed\xa0\x80"), 1, 1, &err) == -1); /* a surrogate */
    CHECK(kn_metrics_add(c, V("\xe0\x80\xaf"), 1, 1, &err) == -1); /* overlong */
    CHECK(kn_metrics_add(c, V("caf\xc3\xa9 \xf0\x9f\x9a\x80"), 1, 1, &err) == 0);
    CHECK(kn_metrics_set(g, V("x"), 1, NAN, &err) == 0 && kn_metrics_add(g, V("y"), 1, -INFINITY, &err) == 0);
    CHECK(kn_metrics_add(c, V("x"), 1, INFINITY, &err) == 0);
    CHECK(kn_mfam_type(c) == KN_COUNTER && kn_mfam_type(g) == KN_GAUGE && kn_mfam_type(h) == KN_HISTOGRAM);
    CHECK(kn_mfam_nlabels(c) == 1 && strcmp(kn_mfam_name(c), "c_total") == 0);
    {
        char *text = render(reg);
        CHECK_HAS(text, "c_total{a=\"caf\xc3\xa9 \xf0\x9f\x9a\x80\"} 1\nc_total{a=\"x\"} +Inf\n");
        CHECK_HAS(text, "g{a=\"x\"} NaN\ng{a=\"y\"} -Inf\n");
        free(text);
    }
    kn_metrics_unref(reg);
}

static void test_get_remove(void)
{
    struct kn_err err = {0};
    struct kn_metrics *reg = kn_metrics_new();
    struct kn_mfam *c = kn_metrics_counter(reg, "c_total", NULL, V("a"), 1, &err);
    struct kn_mfam *h = kn_metrics_histogram(reg, "h", NULL, NULL, 0, (double[]){ 1 }, 1, &err);
    double v = -1, sum = -1;
    char *text;
    CHECK(kn_metrics_get(c, V("x"), 1, &v, NULL) == 0 && v == 0);
    kn_metrics_add(c, V("x"), 1, 2, &err);
    kn_metrics_add(c, V("y"), 1, 3, &err);
    CHECK(kn_metrics_get(c, V("x"), 1, &v, &sum) == 1 && v == 2 && sum == 0);
    CHECK(kn_metrics_get(c, NULL, 0, &v, NULL) == -1);
    kn_metrics_observe(h, NULL, 0, 0.5, &err);
    kn_metrics_observe(h, NULL, 0, 4, &err);
    CHECK(kn_metrics_get(h, NULL, 0, &v, &sum) == 1 && v == 2 && sum == 4.5);
    CHECK(kn_metrics_remove(c, V("x"), 1) == 1 && kn_metrics_remove(c, V("x"), 1) == 0);
    CHECK(kn_metrics_remove(c, V("x", "y"), 2) == 0);
    CHECK(kn_metrics_remove(h, NULL, 0) == 1); /* without labels: back to zero, still shown */
    text = render(reg);
    CHECK_STR(text, "# TYPE c_total counter\nc_total{a=\"y\"} 3\n"
                    "# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
    free(text);
    kn_metrics_remove(c, V("y"), 1);
    text = render(reg); /* a labelled family with no series left is not shown */
    CHECK_STR(text, "# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
    free(text);

    /* the server's reference keeps the registry after its creator lets go */
    kn_metrics_ref(reg);
    kn_metrics_unref(reg);
    CHECK(kn_metrics_add(c, V("z"), 1, 1, &err) == 0);
    kn_metrics_unref(reg);
    kn_metrics_unref(NULL);
}

/* ---- threads ---- */

struct worker {
    struct kn_mfam *c, *h;
    int id;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    char key[16];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "k%d", i % 50);
        kn_metrics_add(w->c, V(key), 1, 1, NULL);
        kn_metrics_observe(w->h, V(key), 1, (i % 7) * 0.01, NULL);
    }
    return NULL;
}

static void test_threads(void)
{
    struct kn_err err = {0};
    struct kn_metrics *reg = kn_metrics_new();
    struct worker w[4];
    pthread_t t[4];
    double total = 0, count = 0, v;
    char key[16];
    int renders = 0;
    for (int i = 0; i < 4; i++) {
        w[i].c = kn_metrics_counter(reg, "c_total", NULL, V("k"), 1, &err);
        w[i].h = kn_metrics_histogram(reg, "h_seconds", NULL, V("k"), 1, NULL, 0, &err);
        w[i].id = i;
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < 50; i++) { /* renders meanwhile */
        char *text = render(reg);
        renders += text != NULL;
        free(text);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int k = 0; k < 50; k++) {
        snprintf(key, sizeof key, "k%d", k);
        kn_metrics_get(w[0].c, V(key), 1, &v, NULL);
        total += v;
        kn_metrics_get(w[0].h, V(key), 1, &v, NULL);
        count += v;
    }
    CHECK(renders == 50 && total == 80000 && count == 80000);
    kn_metrics_unref(reg);
}

/* ---- out of memory ---- */

/* The scenario's calls, in order; each records whether it succeeded so that
 * the reference can be given the same ones. */
enum { OPS = 120 };
struct oom_run {
    int ok[OPS];
};

static void run_ops(struct kn_metrics *reg, struct oom_run *run, int replay, unsigned long n)
{
    struct kn_err err = {0};
    struct kn_mfam *c = NULL, *g = NULL, *h = NULL, *late = NULL;
    int op = 0, rc;
    char code[16], ctl[16];
#define STEP(call, is_ok)                                                                                              \
    do {                                                                                                               \
        int before = af_failed();                                                                                      \
        if (!replay || run->ok[op]) {                                                                                  \
            call;                                                                                                      \
            if (!replay) {                                                                                             \
                run->ok[op] = (is_ok);                                                                                 \
                CHECK_MSG(run->ok[op] || (af_failed() && !before && strcmp(err.reason, "NoMemory") == 0),             \
                          "n=%lu op %d failed without meeting the failed allocation: %s", n, op, err.msg);             \
            }                                                                                                          \
        }                                                                                                              \
        op++;                                                                                                          \
    } while (0)
    STEP(c = kn_metrics_counter(reg, "rest_client_requests_total", "requests", V("code", "method"), 2, &err), c != NULL);
    STEP(g = kn_metrics_gauge(reg, "leader_election_master_status", "leader", NULL, 0, &err), g != NULL);
    STEP(h = kn_metrics_histogram(reg, "workqueue_work_duration_seconds", "work", V("name"), 1, NULL, 0, &err),
         h != NULL);
    for (int i = 0; i < 36; i++) {
        snprintf(code, sizeof code, "%d", 200 + i % 12);
        snprintf(ctl, sizeof ctl, "c%d", i % 10);
        STEP(rc = c ? kn_metrics_add(c, V(code, i % 2 ? "GET" : "PUT"), 2, 1, &err) : 0, rc == 0);
        STEP(rc = h ? kn_metrics_observe(h, V(ctl), 1, i * 0.01, &err) : 0, rc == 0);
        if (i % 6 == 0)
            STEP(rc = g ? kn_metrics_set(g, NULL, 0, i, &err) : 0, rc == 0);
    }
    STEP(late = kn_metrics_counter(reg, "a_late_total", NULL, NULL, 0, &err), late != NULL);
    STEP(rc = late ? kn_metrics_add(late, NULL, 0, 5, &err) : 0, rc == 0);
    CHECK(op <= OPS);
#undef STEP
}

static void oom_scenario(void *arg, unsigned long n)
{
    struct oom_run run = {{0}};
    struct kn_metrics *reg, *ref;
    struct kn_buf out = {0};
    char *want;
    int rc;
    (void)arg;
    kn_buf_puts(&out, "X");
    af_arm(n);
    reg = kn_metrics_new();
    if (!reg) {
        af_disarm();
        CHECK_MSG(af_failed(), "n=%lu: kn_metrics_new returned NULL with memory left", n);
        kn_buf_free(&out);
        return;
    }
    run_ops(reg, &run, 0, n);
    rc = kn_metrics_render(reg, &out); /* its own allocations fail in turn too */
    af_disarm();
    ref = kn_metrics_new();
    run_ops(ref, &run, 1, n);
    want = render(ref);
    if (rc == 0) {
        CHECK_MSG(strncmp(out.data, "X", 1) == 0 && strcmp(out.data + 1, want) == 0,
                  "n=%lu: the registry differs from the reference of its successful calls", n);
    } else {
        CHECK_MSG(out.len == 1 && strcmp(out.data, "X") == 0, "n=%lu: a failed render left %zu bytes", n, out.len);
        char *again = render(reg);
        CHECK_MSG(again && strcmp(again, want) == 0, "n=%lu: after a failed render the registry differs", n);
        free(again);
    }
    free(want);
    kn_buf_free(&out);
    kn_metrics_unref(ref);
    kn_metrics_unref(reg);
}

static void test_oom(void)
{
    unsigned long total = af_every(oom_scenario, NULL);
    CHECK_MSG(total > 30, "the scenario made %lu allocations", total);
}

void test_metrics(void)
{
    test_render();
    test_fmt();
    test_validation();
    test_get_remove();
    test_threads();
    test_oom();
}
