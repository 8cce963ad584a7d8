/* A Prometheus metrics registry: families of counters, gauges and histograms,
 * each with a name, help text and a fixed list of label names; a series is
 * made the first time a tuple of label values is used. Rendered in the text
 * exposition format 0.0.4, as client_golang writes it, so that dashboards
 * made for controller-runtime and client-go read ours.
 *
 * Thread-safe: one mutex per registry guards everything, so the Lua thread
 * records while the HTTP server's thread renders. No global state: a process
 * may hold several registries. Every call that fails returns -1 (or NULL)
 * and leaves the registry as it was, out of memory included.
 *
 * Lifetime: kn_metrics_new gives the caller one reference; kn_metrics_ref
 * and kn_metrics_unref count holders (the server takes one while it serves),
 * and the last unref frees the registry and its families. A family pointer
 * is valid while the registry is. */
#ifndef KN_METRICS_H
#define KN_METRICS_H

#include <stddef.h>

#include "kn_buf.h"
#include "kn_err.h"

struct kn_metrics;
struct kn_mfam;

enum kn_mtype { KN_COUNTER, KN_GAUGE, KN_HISTOGRAM };

/* controller-runtime's reconcile_time_seconds buckets, then +Inf. */
#define KN_METRICS_DEFAULT_BUCKETS 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
#define KN_METRICS_MAX_LABELS 16
#define KN_METRICS_MAX_BUCKETS 64

/* NULL when out of memory. */
struct kn_metrics *kn_metrics_new(void);
void kn_metrics_ref(struct kn_metrics *reg);
void kn_metrics_unref(struct kn_metrics *reg); /* NULL is fine */

/* Registers a family and returns it. The name matches [a-zA-Z_:][a-zA-Z0-9_:]*;
 * label names match [a-zA-Z_][a-zA-Z0-9_]* (Prometheus allows no ':' there),
 * do not start with "__", are distinct, at most KN_METRICS_MAX_LABELS, and a
 * histogram's may not be "le". Help may be NULL (empty). Registering a name
 * again with the same type, help, labels (and buckets) returns the family
 * already there, so two parts of a program can share one; a different
 * definition is an error naming both. A family without labels has its one
 * series (0) from the start; a labelled family shows nothing until used, as
 * in client_golang. NULL with err set (reason "Invalid", or "NoMemory"). */
struct kn_mfam *kn_metrics_counter(struct kn_metrics *reg, const char *name, const char *help,
                                   const char *const *labels, size_t nlabels, struct kn_err *err);
struct kn_mfam *kn_metrics_gauge(struct kn_metrics *reg, const char *name, const char *help,
                                 const char *const *labels, size_t nlabels, struct kn_err *err);
/* buckets: upper bounds, strictly increasing, not NaN, at most
 * KN_METRICS_MAX_BUCKETS; a last +Inf may be given or not (it is always
 * there). NULL or nbuckets 0: KN_METRICS_DEFAULT_BUCKETS. */
struct kn_mfam *kn_metrics_histogram(struct kn_metrics *reg, const char *name, const char *help,
                                     const char *const *labels, size_t nlabels, const double *buckets,
                                     size_t nbuckets, struct kn_err *err);

enum kn_mtype kn_mfam_type(const struct kn_mfam *f);
size_t kn_mfam_nlabels(const struct kn_mfam *f);
const char *kn_mfam_name(const struct kn_mfam *f);

/* The operations take the series' label values (nvalues must equal the
 * family's label count; each valid UTF-8) and return 0, or -1 with err set:
 * "Invalid" for misuse (wrong count or type, a counter going down or NaN,
 * bad UTF-8), "NoMemory" when the series could not be made. */
/* Counter (v >= 0) or gauge. */
int kn_metrics_add(struct kn_mfam *f, const char *const *values, size_t nvalues, double v, struct kn_err *err);
/* Gauge only. */
int kn_metrics_set(struct kn_mfam *f, const char *const *values, size_t nvalues, double v, struct kn_err *err);
/* Histogram only: counts v in the first bucket whose bound is >= v. */
int kn_metrics_observe(struct kn_mfam *f, const char *const *values, size_t nvalues, double v, struct kn_err *err);

/* Reads a series: *value gets a counter's or gauge's value, or a histogram's
 * count of observations (then *sum, if not NULL, their sum). 1 if the series
 * exists, 0 if not (values 0), -1 on a wrong value count. */
int kn_metrics_get(struct kn_mfam *f, const char *const *values, size_t nvalues, double *value, double *sum);
/* Forgets a series (client_golang's DeleteLabelValues): 1 if it was there.
 * A family without labels keeps its series; it is reset to 0 instead. */
int kn_metrics_remove(struct kn_mfam *f, const char *const *values, size_t nvalues);

/* Appends the exposition of every family (sorted by name; series sorted by
 * their label values) to out. 0, or -1 when out of memory: out is then cut
 * back to the length it had. */
int kn_metrics_render(struct kn_metrics *reg, struct kn_buf *out);

/* The content type of what kn_metrics_render writes. */
#define KN_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A double as the exposition writes it: "+Inf", "-Inf", "NaN", integers
 * below 2^53 without a fraction, others in the shortest form that reads back
 * exactly. buf needs 32 bytes. */
const char *kn_metrics_fmt(double v, char buf[32]);

#endif
