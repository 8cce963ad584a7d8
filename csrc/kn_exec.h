/* Exec credential plugins (client.authentication.k8s.io/v1 and v1beta1): run
 * the configured command and read an ExecCredential from its stdout. */
#ifndef KN_EXEC_H
#define KN_EXEC_H

#include <time.h>

#include "kn_config.h"

struct kn_exec_cred {
    char *token;                /* bearer token, or NULL */
    struct kn_blob cert, key;   /* client certificate and key (PEM), or empty */
    time_t expiry;              /* 0: valid until the server answers 401 */
};

/* Runs the plugin of cfg->exec and fills out. The plugin's stderr goes to
 * ours, as with kubectl; stdin is closed because we are never interactive. */
int kn_exec_run(const struct kn_config *cfg, int timeout_ms, struct kn_exec_cred *out, struct kn_err *err);
void kn_exec_cred_clear(struct kn_exec_cred *c);

/* Parses an ExecCredential document (exposed for tests and fuzzing). */
int kn_exec_parse(const char *json, size_t len, const char *api_version, struct kn_exec_cred *out,
                  struct kn_err *err);
/* RFC 3339 time ("2026-01-02T03:04:05Z", with optional fraction and offset)
 * to a time_t; -1 when malformed. */
time_t kn_parse_rfc3339(const char *s);

#endif
