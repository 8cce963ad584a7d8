/* See kn_metrics.h. Families sit in an array sorted by name, and each
 * family's series in an array sorted by label values: lookups are binary
 * searches and rendering walks both in order, so the output is stable.
 * Each family and each series is one allocation (its strings inside), and
 * arrays grow before anything is linked, so a failed allocation changes
 * nothing. */
#include "kn_metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct series {
    double value;             /* counter, gauge; a histogram's sum */
    unsigned long long count; /* histogram: observations */
    unsigned long long *in;   /* histogram: per finite bucket, not cumulative */
    char *values[];           /* the family's nlabels label values */
};

struct kn_mfam {
    struct kn_metrics *reg;
    enum kn_mtype type;
    char *name, *help;
    char **labels;
    size_t nlabels;
    double *bounds; /* finite upper bounds, increasing; +Inf is implied */
    size_t nb;
    struct series **series;
    size_t n, cap;
};

struct kn_metrics {
    pthread_mutex_t mu;
    atomic_int refs;
    struct kn_mfam **fams;
    size_t n, cap;
};

static const double default_bounds[] = { KN_METRICS_DEFAULT_BUCKETS };
static const char *const type_names[] = { "counter", "gauge", "histogram" };

struct kn_metrics *kn_metrics_new(void)
{
    struct kn_metrics *reg = calloc(1, sizeof *reg);
    if (!reg)
        return NULL;
    pthread_mutex_init(&reg->mu, NULL);
    atomic_init(&reg->refs, 1);
    return reg;
}

void kn_metrics_ref(struct kn_metrics *reg)
{
    atomic_fetch_add(&reg->refs, 1);
}

static void free_family(struct kn_mfam *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->series[i]);
    free(f->series);
    free(f);
}

void kn_metrics_unref(struct kn_metrics *reg)
{
    if (!reg || atomic_fetch_sub(&reg->refs, 1) != 1)
        return;
    for (size_t i = 0; i < reg->n; i++)
        free_family(reg->fams[i]);
    free(reg->fams);
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

/* ---- validation ---- */

static int valid_name(const char *s, int colon)
{
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++) {
        int c = (unsigned char)*p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
                 (p > s && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static int valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p, n;
        unsigned long cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        /* overlong forms, surrogates, beyond U+10FFFF */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return 0;
        p += n + 1;
    }
    return 1;
}

static int check_labels(const char *name, enum kn_mtype type, const char *const *labels, size_t nlabels,
                        struct kn_err *err)
{
    if (nlabels > KN_METRICS_MAX_LABELS)
        return kn_err_set(err, 0, "Invalid", "metric %s: %zu label names, at most %d", name, nlabels,
                          KN_METRICS_MAX_LABELS);
    for (size_t i = 0; i < nlabels; i++) {
        const char *l = labels[i];
        if (!valid_name(l, 0))
            return kn_err_set(err, 0, "Invalid", "metric %s: label name \"%s\" is not [a-zA-Z_][a-zA-Z0-9_]*",
                              name, l ? l : "(null)");
        if (strncmp(l, "__", 2) == 0)
            return kn_err_set(err, 0, "Invalid", "metric %s: label name \"%s\" starts with __ (reserved)", name, l);
        if (type == KN_HISTOGRAM && strcmp(l, "le") == 0)
            return kn_err_set(err, 0, "Invalid", "metric %s: a histogram cannot have a label named le", name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[j], l) == 0)
                return kn_err_set(err, 0, "Invalid", "metric %s: label name \"%s\" given twice", name, l);
    }
    return 0;
}

/* The finite bounds of a bucket list, checked; *nb gets their count. */
static int check_bounds(const char *name, const double *b, size_t n, const double **out, size_t *nb,
                        struct kn_err *err)
{
    if (!b || n == 0) {
        *out = default_bounds;
        *nb = sizeof default_bounds / sizeof *default_bounds;
        return 0;
    }
    if (n > KN_METRICS_MAX_BUCKETS)
        return kn_err_set(err, 0, "Invalid", "metric %s: %zu buckets, at most %d", name, n, KN_METRICS_MAX_BUCKETS);
    if (isinf(b[n - 1]) && b[n - 1] > 0)
        n--;
    for (size_t i = 0; i < n; i++) {
        if (isnan(b[i]) || isinf(b[i]))
            return kn_err_set(err, 0, "Invalid", "metric %s: bucket %zu is not a finite number", name, i + 1);
        if (i > 0 && !(b[i] > b[i - 1]))
            return kn_err_set(err, 0, "Invalid", "metric %s: buckets must increase (bucket %zu is %g after %g)",
                              name, i + 1, b[i], b[i - 1]);
    }
    *out = b;
    *nb = n;
    return 0;
}

/* ---- families ---- */

/* Binary search over n sorted items; cmp_at(key, i) compares item i with
 * the key. The item's index, or where the key would go (*found 0). */
static size_t search(size_t n, int (*cmp_at)(const void *key, size_t i), const void *key, int *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_at(key, mid);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

struct family_key {
    const struct kn_metrics *reg;
    const char *name;
};

static int family_at(const void *key, size_t i)
{
    const struct family_key *k = key;
    return strcmp(k->reg->fams[i]->name, k->name);
}

static size_t find_family(const struct kn_metrics *reg, const char *name, int *found)
{
    struct family_key k = { reg, name };
    return search(reg->n, family_at, &k, found);
}

static int same_definition(const struct kn_mfam *f, enum kn_mtype type, const char *help, const char *const *labels,
                           size_t nlabels, const double *bounds, size_t nb)
{
    if (f->type != type || strcmp(f->help, help) != 0 || f->nlabels != nlabels)
        return 0;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(f->labels[i], labels[i]) != 0)
            return 0;
    if (type == KN_HISTOGRAM) {
        if (f->nb != nb)
            return 0;
        for (size_t i = 0; i < nb; i++)
            if (f->bounds[i] != bounds[i])
                return 0;
    }
    return 1;
}

#define ALIGN_UP(n, a) (((n) + (a) - 1) / (a) * (a))

static struct series *new_series(const struct kn_mfam *f, const char *const *values)
{
    size_t len[KN_METRICS_MAX_LABELS];
    size_t off = sizeof(struct series) + f->nlabels * sizeof(char *), in_off, str_off;
    struct series *s;
    char *p;
    in_off = ALIGN_UP(off, _Alignof(unsigned long long));
    str_off = in_off + (f->type == KN_HISTOGRAM ? f->nb * sizeof(unsigned long long) : 0);
    off = str_off;
    for (size_t i = 0; i < f->nlabels; i++) {
        len[i] = strlen(values[i]);
        off += len[i] + 1;
    }
    s = calloc(1, off);
    if (!s)
        return NULL;
    s->in = f->type == KN_HISTOGRAM ? (unsigned long long *)((char *)s + in_off) : NULL;
    p = (char *)s + str_off;
    for (size_t i = 0; i < f->nlabels; i++) {
        memcpy(p, values[i], len[i] + 1);
        s->values[i] = p;
        p += len[i] + 1;
    }
    return s;
}

static struct kn_mfam *new_family(enum kn_mtype type, const char *name, const char *help, const char *const *labels,
                                  size_t nlabels, const double *bounds, size_t nb)
{
    size_t nlen = strlen(name) + 1, hlen = strlen(help) + 1, off;
    size_t lab_off, b_off, str_off;
    struct kn_mfam *f;
    char *p;
    lab_off = ALIGN_UP(sizeof *f, _Alignof(char *));
    b_off = ALIGN_UP(lab_off + nlabels * sizeof(char *), _Alignof(double));
    str_off = b_off + nb * sizeof(double);
    off = str_off + nlen + hlen;
    for (size_t i = 0; i < nlabels; i++)
        off += strlen(labels[i]) + 1;
    f = calloc(1, off);
    if (!f)
        return NULL;
    f->type = type;
    f->nlabels = nlabels;
    f->nb = nb;
    f->labels = (char **)((char *)f + lab_off);
    f->bounds = (double *)((char *)f + b_off);
    if (nb)
        memcpy(f->bounds, bounds, nb * sizeof(double));
    p = (char *)f + str_off;
    f->name = memcpy(p, name, nlen);
    p += nlen;
    f->help = memcpy(p, help, hlen);
    p += hlen;
    for (size_t i = 0; i < nlabels; i++) {
        size_t l = strlen(labels[i]) + 1;
        f->labels[i] = memcpy(p, labels[i], l);
        p += l;
    }
    return f;
}

/* The array a (n used of *cap elements of size elem) with room for one
 * more: a itself, or a larger copy; NULL when out of memory (a unchanged). */
static void *grow(void *a, size_t n, size_t *cap, size_t elem)
{
    size_t c;
    if (n < *cap)
        return a;
    c = *cap ? *cap * 2 : 8;
    a = realloc(a, c * elem);
    if (a)
        *cap = c;
    return a;
}

static struct kn_mfam *define(struct kn_metrics *reg, enum kn_mtype type, const char *name, const char *help,
                              const char *const *labels, size_t nlabels, const double *buckets, size_t nbuckets,
                              struct kn_err *err)
{
    const double *bounds = NULL;
    size_t nb = 0, at;
    struct kn_mfam *f, **fams;
    struct series *s = NULL;
    int found;
    if (!valid_name(name, 1))
        return kn_err_set(err, 0, "Invalid", "metric name \"%s\" is not [a-zA-Z_:][a-zA-Z0-9_:]*",
                          name ? name : "(null)"),
               NULL;
    if (!help)
        help = "";
    if (!valid_utf8(help))
        return kn_err_set(err, 0, "Invalid", "metric %s: help text is not UTF-8", name), NULL;
    if (nlabels && !labels)
        return kn_err_set(err, 0, "Invalid", "metric %s: %zu label names and no list", name, nlabels), NULL;
    if (check_labels(name, type, labels, nlabels, err) < 0)
        return NULL;
    if (type == KN_HISTOGRAM && check_bounds(name, buckets, nbuckets, &bounds, &nb, err) < 0)
        return NULL;

    pthread_mutex_lock(&reg->mu);
    at = find_family(reg, name, &found);
    if (found) {
        f = reg->fams[at];
        pthread_mutex_unlock(&reg->mu);
        if (same_definition(f, type, help, labels, nlabels, bounds, nb))
            return f;
        return kn_err_set(err, 0, "Invalid",
                          "metric %s is already registered as a %s with other help, labels or buckets; "
                          "this %s would differ",
                          name, type_names[f->type], type_names[type]),
               NULL;
    }
    f = new_family(type, name, help, labels, nlabels, bounds, nb);
    if (f && nlabels == 0) { /* its one series shows from the start */
        s = new_series(f, NULL);
        f->series = s ? grow(NULL, 0, &f->cap, sizeof *f->series) : NULL;
        if (f->series) {
            f->series[0] = s;
            f->n = 1;
        } else {
            free(s);
            free_family(f);
            f = NULL;
        }
    }
    fams = f ? grow(reg->fams, reg->n, &reg->cap, sizeof *reg->fams) : NULL;
    if (!fams) {
        if (f)
            free_family(f);
        pthread_mutex_unlock(&reg->mu);
        return kn_err_set(err, 0, "NoMemory", "metric %s: out of memory", name), NULL;
    }
    reg->fams = fams;
    f->reg = reg;
    memmove(reg->fams + at + 1, reg->fams + at, (reg->n - at) * sizeof *reg->fams);
    reg->fams[at] = f;
    reg->n++;
    pthread_mutex_unlock(&reg->mu);
    return f;
}

struct kn_mfam *kn_metrics_counter(struct kn_metrics *reg, const char *name, const char *help,
                                   const char *const *labels, size_t nlabels, struct kn_err *err)
{
    return define(reg, KN_COUNTER, name, help, labels, nlabels, NULL, 0, err);
}

struct kn_mfam *kn_metrics_gauge(struct kn_metrics *reg, const char *name, const char *help,
                                 const char *const *labels, size_t nlabels, struct kn_err *err)
{
    return define(reg, KN_GAUGE, name, help, labels, nlabels, NULL, 0, err);
}

struct kn_mfam *kn_metrics_histogram(struct kn_metrics *reg, const char *name, const char *help,
                                     const char *const *labels, size_t nlabels, const double *buckets,
                                     size_t nbuckets, struct kn_err *err)
{
    return define(reg, KN_HISTOGRAM, name, help, labels, nlabels, buckets, nbuckets, err);
}

enum kn_mtype kn_mfam_type(const struct kn_mfam *f)
{
    return f->type;
}

size_t kn_mfam_nlabels(const struct kn_mfam *f)
{
    return f->nlabels;
}

const char *kn_mfam_name(const struct kn_mfam *f)
{
    return f->name;
}

/* ---- series ---- */

struct series_key {
    const struct kn_mfam *f;
    const char *const *values;
};

static int series_at(const void *key, size_t i)
{
    const struct series_key *k = key;
    const struct series *s = k->f->series[i];
    for (size_t l = 0; l < k->f->nlabels; l++) {
        int c = strcmp(s->values[l], k->values[l]);
        if (c)
            return c;
    }
    return 0;
}

static size_t find_series(const struct kn_mfam *f, const char *const *values, int *found)
{
    struct series_key k = { f, values };
    return search(f->n, series_at, &k, found);
}

static int check_values(const struct kn_mfam *f, const char *const *values, size_t nvalues, struct kn_err *err)
{
    if (nvalues != f->nlabels)
        return kn_err_set(err, 0, "Invalid", "metric %s: %zu label values for %zu label names", f->name, nvalues,
                          f->nlabels);
    for (size_t i = 0; i < nvalues; i++)
        if (!values[i] || !valid_utf8(values[i]))
            return kn_err_set(err, 0, "Invalid", "metric %s: the value of label %s is %s", f->name, f->labels[i],
                              values[i] ? "not UTF-8" : "missing");
    return 0;
}

/* The series for values, made if need be; NULL when out of memory. Called
 * locked. */
static struct series *series_for(struct kn_mfam *f, const char *const *values)
{
    int found;
    size_t at = find_series(f, values, &found);
    struct series *s, **arr;
    if (found)
        return f->series[at];
    arr = grow(f->series, f->n, &f->cap, sizeof *f->series);
    if (!arr)
        return NULL;
    f->series = arr;
    s = new_series(f, values);
    if (!s)
        return NULL;
    memmove(f->series + at + 1, f->series + at, (f->n - at) * sizeof *f->series);
    f->series[at] = s;
    f->n++;
    return s;
}

enum op { OP_ADD, OP_SET, OP_OBSERVE };

static int update(struct kn_mfam *f, const char *const *values, size_t nvalues, double v, enum op op,
                  struct kn_err *err)
{
    static const char *const op_names[] = { "add", "set", "observe" };
    struct series *s;
    int type_ok = op == OP_ADD ? f->type != KN_HISTOGRAM : op == OP_SET ? f->type == KN_GAUGE : f->type == KN_HISTOGRAM;
    if (!type_ok)
        return kn_err_set(err, 0, "Invalid", "metric %s is a %s: it has no %s", f->name, type_names[f->type],
                          op_names[op]);
    if (f->type == KN_COUNTER && !(v >= 0))
        return kn_err_set(err, 0, "Invalid", "metric %s is a counter: it cannot add %g", f->name, v);
    if (check_values(f, values, nvalues, err) < 0)
        return -1;
    pthread_mutex_lock(&f->reg->mu);
    s = series_for(f, values);
    if (!s) {
        pthread_mutex_unlock(&f->reg->mu);
        return kn_err_set(err, 0, "NoMemory", "metric %s: out of memory for a new series", f->name);
    }
    if (op == OP_SET) {
        s->value = v;
    } else if (op == OP_ADD) {
        s->value += v;
    } else {
        /* the first bound >= v; NaN falls in +Inf only, as in client_golang */
        size_t lo = 0, hi = f->nb;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (f->bounds[mid] >= v)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (lo < f->nb && f->bounds[lo] >= v)
            s->in[lo]++;
        s->count++;
        s->value += v;
    }
    pthread_mutex_unlock(&f->reg->mu);
    return 0;
}

int kn_metrics_add(struct kn_mfam *f, const char *const *values, size_t nvalues, double v, struct kn_err *err)
{
    return update(f, values, nvalues, v, OP_ADD, err);
}

int kn_metrics_set(struct kn_mfam *f, const char *const *values, size_t nvalues, double v, struct kn_err *err)
{
    return update(f, values, nvalues, v, OP_SET, err);
}

int kn_metrics_observe(struct kn_mfam *f, const char *const *values, size_t nvalues, double v, struct kn_err *err)
{
    return update(f, values, nvalues, v, OP_OBSERVE, err);
}

int kn_metrics_get(struct kn_mfam *f, const char *const *values, size_t nvalues, double *value, double *sum)
{
    int found;
    size_t at;
    *value = 0;
    if (sum)
        *sum = 0;
    if (nvalues != f->nlabels)
        return -1;
    for (size_t i = 0; i < nvalues; i++)
        if (!values[i])
            return -1;
    pthread_mutex_lock(&f->reg->mu);
    at = find_series(f, values, &found);
    if (found) {
        const struct series *s = f->series[at];
        *value = f->type == KN_HISTOGRAM ? (double)s->count : s->value;
        if (sum && f->type == KN_HISTOGRAM)
            *sum = s->value;
    }
    pthread_mutex_unlock(&f->reg->mu);
    return found;
}

int kn_metrics_remove(struct kn_mfam *f, const char *const *values, size_t nvalues)
{
    int found;
    size_t at;
    if (nvalues != f->nlabels)
        return 0;
    for (size_t i = 0; i < nvalues; i++)
        if (!values[i])
            return 0;
    pthread_mutex_lock(&f->reg->mu);
    at = find_series(f, values, &found);
    if (found && f->nlabels == 0) {
        struct series *s = f->series[at];
        s->value = 0;
        s->count = 0;
        if (s->in)
            memset(s->in, 0, f->nb * sizeof *s->in);
    } else if (found) {
        free(f->series[at]);
        memmove(f->series + at, f->series + at + 1, (f->n - at - 1) * sizeof *f->series);
        f->n--;
    }
    pthread_mutex_unlock(&f->reg->mu);
    return found;
}

/* ---- rendering ---- */

const char *kn_metrics_fmt(double v, char buf[32])
{
    if (isnan(v))
        return strcpy(buf, "NaN");
    if (isinf(v))
        return strcpy(buf, v > 0 ? "+Inf" : "-Inf");
    if (v == 0)
        return strcpy(buf, "0");
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        snprintf(buf, 32, "%.0f", v);
        return buf;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, 32, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    for (char *c = buf; *c; c++) /* a locale's decimal comma */
        if (*c == ',')
            *c = '.';
    return buf;
}

struct out {
    struct kn_buf *b;
    int failed;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (!o->failed && kn_buf_append(o->b, s, n) < 0)
        o->failed = 1;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Escapes backslash and newline, and double quote too in label values. */
static void put_escaped(struct out *o, const char *s, int quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : quote && *s == '"' ? "\\\"" : NULL;
        if (!rep)
            continue;
        put(o, run, (size_t)(s - run));
        puts_(o, rep);
        run = s + 1;
    }
    put(o, run, (size_t)(s - run));
}

/* name{labels[,le="bound"]} value\n */
static void put_sample(struct out *o, const struct kn_mfam *f, const char *suffix, const struct series *s,
                       const char *le, const char *value)
{
    puts_(o, f->name);
    puts_(o, suffix);
    if (f->nlabels || le) {
        put(o, "{", 1);
        for (size_t i = 0; i < f->nlabels; i++) {
            if (i)
                put(o, ",", 1);
            puts_(o, f->labels[i]);
            put(o, "=\"", 2);
            put_escaped(o, s->values[i], 1);
            put(o, "\"", 1);
        }
        if (le) {
            puts_(o, f->nlabels ? ",le=\"" : "le=\"");
            puts_(o, le);
            put(o, "\"", 1);
        }
        put(o, "}", 1);
    }
    put(o, " ", 1);
    puts_(o, value);
    put(o, "\n", 1);
}

static void put_family(struct out *o, const struct kn_mfam *f)
{
    char num[32], le[32];
    if (!f->n)
        return;
    if (*f->help) {
        puts_(o, "# HELP ");
        puts_(o, f->name);
        put(o, " ", 1);
        put_escaped(o, f->help, 0);
        put(o, "\n", 1);
    }
    puts_(o, "# TYPE ");
    puts_(o, f->name);
    put(o, " ", 1);
    puts_(o, type_names[f->type]);
    put(o, "\n", 1);
    for (size_t i = 0; i < f->n; i++) {
        const struct series *s = f->series[i];
        unsigned long long cum = 0;
        if (f->type != KN_HISTOGRAM) {
            put_sample(o, f, "", s, NULL, kn_metrics_fmt(s->value, num));
            continue;
        }
        for (size_t b = 0; b < f->nb; b++) {
            cum += s->in[b];
            snprintf(num, sizeof num, "%llu", cum);
            put_sample(o, f, "_bucket", s, kn_metrics_fmt(f->bounds[b], le), num);
        }
        snprintf(num, sizeof num, "%llu", s->count);
        put_sample(o, f, "_bucket", s, "+Inf", num);
        put_sample(o, f, "_sum", s, NULL, kn_metrics_fmt(s->value, le));
        put_sample(o, f, "_count", s, NULL, num);
    }
}

int kn_metrics_render(struct kn_metrics *reg, struct kn_buf *out)
{
    struct out o = { out, 0 };
    size_t len0 = out->len;
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < reg->n && !o.failed; i++)
        put_family(&o, reg->fams[i]);
    pthread_mutex_unlock(&reg->mu);
    if (o.failed) {
        out->len = len0;
        if (out->data)
            out->data[len0] = '\0';
        return -1;
    }
    return 0;
}
