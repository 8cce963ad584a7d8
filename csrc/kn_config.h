/* Cluster configuration: what a client needs to reach one API server as one
 * user, resolved from kubeconfig files or from the in-cluster service account.
 * All credentials are held in memory; file-backed ones remember their path so
 * they can be re-read when the file rotates. */
#ifndef KN_CONFIG_H
#define KN_CONFIG_H

#include <stddef.h>

#include "kn_err.h"

struct kn_blob {
    unsigned char *data;
    size_t len;
};

struct kn_exec {
    char *api_version;   /* client.authentication.k8s.io/v1 or v1beta1 */
    char *command;       /* resolved against the kubeconfig's directory when relative with a '/' */
    char **args;         /* NULL-terminated */
    char **env;          /* NULL-terminated "NAME=value" entries, added to the environment */
    int provide_cluster_info;
    char *install_hint;
};

struct kn_config {
    char *origin;        /* the kubeconfig file(s) or "in-cluster", for messages */
    char *context;       /* context name; NULL in-cluster */
    char *cluster_name, *user_name;
    char *namespace;     /* never NULL: "default" when the context sets none */

    char *server;        /* https://host:port[/prefix], without a trailing '/' */
    char *tls_server_name;
    char *proxy_url;
    int insecure;        /* insecure-skip-tls-verify: true given explicitly */
    struct kn_blob ca;   /* PEM; empty: the system's trust store */

    char *token;         /* static bearer token */
    char *token_file;    /* re-read when it changes (tokenFile, in-cluster) */
    struct kn_blob cert, key; /* client certificate and key, PEM */

    char *as_user, *as_uid;
    char **as_groups;    /* NULL-terminated, or NULL */
    struct kn_exec *exec;
};

struct kn_config_opts {
    const char *kubeconfig; /* a file, or a ':'-separated list merged like $KUBECONFIG */
    const char *context;    /* NULL: current-context */
    int in_cluster;         /* only the service account */
};

/* Resolves a configuration: opts->in_cluster; else opts->kubeconfig; else
 * $KUBECONFIG; else ~/.kube/config; else in-cluster when
 * KUBERNETES_SERVICE_HOST is set. Returns NULL with err set. */
struct kn_config *kn_config_load(const struct kn_config_opts *opts, struct kn_err *err);
void kn_config_free(struct kn_config *c);

/* Parts of loading, used by kn_config_load and by tests. */
struct kn_config *kn_config_from_kubeconfig(const char *files, int from_env, const char *context,
                                            struct kn_err *err);
struct kn_config *kn_config_in_cluster(struct kn_err *err);

/* Helpers shared by the loaders. */
char *kn_strdup(const char *s);
void kn_strv_free(char **v);
/* Reads a file into a blob; on failure sets err naming the field and file. */
int kn_blob_read(struct kn_blob *b, const char *path, const char *what, struct kn_err *err);

#endif
