/* Runs every suite and prints "checks: N passed, M failed"; exits 1 on any
 * failure. Run from spec/c (make test-c does). */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>

/* libyaml has no frame pointers: unwind slowly, so a leak's stack reaches
 * the core's caller instead of stopping inside libyaml. */
const char *__asan_default_options(void)
{
    return "fast_unwind_on_malloc=0";
}
#endif

int t_checks, t_failed;

void test_store(void); /* spec/c/test_store.c */
void test_obj(void);   /* spec/c/test_obj.c */
void test_watch(void); /* spec/c/test_watch.c */
void test_queue(void); /* spec/c/test_queue.c */
void test_creds(void); /* spec/c/test_creds.c */
void test_reflector(void); /* spec/c/test_reflector.c */
void test_workqueue(void); /* spec/c/test_workqueue.c */
void test_list(void);      /* spec/c/test_list.c */
void test_metrics(void);   /* spec/c/test_metrics.c */
void test_serve(void);     /* spec/c/test_serve.c */

void t_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    t_failed++;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int t_check_str(const char *file, int line, const char *expr, const char *got, const char *want)
{
    t_checks++;
    if ((!got && !want) || (got && want && strcmp(got, want) == 0))
        return 1;
    t_fail(file, line, "%s is %s%s%s, want %s%s%s", expr, got ? "\"" : "", got ? got : "NULL", got ? "\"" : "",
           want ? "\"" : "", want ? want : "NULL", want ? "\"" : "");
    return 0;
}

int t_check_has(const char *file, int line, const char *expr, const char *hay, const char *needle, int want)
{
    t_checks++;
    if (hay && (strstr(hay, needle) != NULL) == want)
        return 1;
    t_fail(file, line, "%s %s \"%s\": %s%s%s", expr, want ? "lacks" : "contains", needle, hay ? "\"" : "",
           hay ? hay : "NULL", hay ? "\"" : "");
    return 0;
}

char *t_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *dir;
    if (asprintf(&dir, "%s/kn-ctest-XXXXXX", base && *base ? base : "/tmp") < 0)
        abort();
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    /* Messages and resolved paths are compared literally: no symlinks in dir. */
    {
        char *real = realpath(dir, NULL);
        if (!real)
            abort();
        free(dir);
        dir = real;
    }
    return dir;
}

char *t_path(const char *dir, const char *name)
{
    char *p;
    if (asprintf(&p, "%s/%s", dir, name) < 0)
        abort();
    return p;
}

char *t_write(const char *dir, const char *name, const char *text, int mode)
{
    char *path = t_path(dir, name);
    FILE *f;
    for (char *s = path + strlen(dir) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST) {
            perror(path);
            abort();
        }
        *s = '/';
    }
    f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0 || chmod(path, (mode_t)mode) < 0) {
        perror(path);
        abort();
    }
    return path;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void t_rmtree(char *dir)
{
    if (dir && nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        perror(dir);
    free(dir);
}

int t_line_of(const char *text, const char *needle)
{
    const char *at = strstr(text, needle);
    int line = 1;
    if (!at)
        return 0;
    for (const char *s = text; s < at; s++)
        line += *s == '\n';
    return line;
}

void t_setenv(const char *name, const char *value)
{
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

int t_isolated(void (*fn)(void *), void *arg)
{
    FILE *log = tmpfile(); /* the child's stderr: a sanitizer report is long */
    char line[512];
    int status, ok = 0;
    pid_t pid;
    fflush(NULL);
    pid = log ? fork() : -1;
    if (pid < 0) {
        perror("t_isolated");
        if (log)
            fclose(log);
        return 0;
    }
    if (pid == 0) {
        dup2(fileno(log), 2);
        fn(arg);
        _exit(0); /* no atexit handlers: LeakSanitizer runs in the parent only */
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
        /* Enough of the report to see what and where. */
        fprintf(stderr, "  child %s %d; its report:\n", WIFEXITED(status) ? "exited with status" : "was killed by signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        rewind(log);
        while (fgets(line, sizeof line, log))
            if (strstr(line, "ERROR:") || strstr(line, "SUMMARY:") || strstr(line, "    #0 ") ||
                strstr(line, "    #1 ") || strstr(line, "runtime error"))
                fprintf(stderr, "  | %s", line);
    }
    fclose(log);
    return ok;
}

int main(void)
{
    static const struct {
        const char *name;
        void (*run)(void);
    } suites[] = {
        { "json", test_json },       { "base64", test_base64 }, { "kubeconfig", test_kubeconfig },
        { "config", test_config },   { "exec", test_exec },       { "store", test_store },
        { "obj", test_obj },         { "watch", test_watch },     { "queue", test_queue },
        { "creds", test_creds },     { "list", test_list },       { "reflector", test_reflector },
        { "workqueue", test_workqueue },
        { "metrics", test_metrics },
        { "serve", test_serve },
    };
    /* The loaders read these; start every run from the same place. */
    static const char *const clear[] = { "KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT",
                                         "KINFORMER_SERVICE_ACCOUNT_DIR", "KUBERNETES_EXEC_INFO" };
    setvbuf(stdout, NULL, _IOLBF, 0); /* in order with stderr's FAIL lines */
    for (size_t i = 0; i < sizeof clear / sizeof *clear; i++)
        unsetenv(clear[i]);
    for (size_t i = 0; i < sizeof suites / sizeof *suites; i++) {
        int before = t_failed, checks = t_checks;
        suites[i].run();
        printf("%-12s %4d checks, %d failed\n", suites[i].name, t_checks - checks, t_failed - before);
    }
#ifdef __SANITIZE_ADDRESS__
    /* A leak counts as a failed check, and is reported once: not again at exit. */
    t_checks++;
    if (__lsan_do_recoverable_leak_check()) {
        t_fail(__FILE__, __LINE__, "memory leaked (LeakSanitizer's report is above)");
        printf("checks: %d passed, %d failed\n", t_checks - t_failed, t_failed);
        fflush(NULL);
        _exit(1);
    }
#endif
    printf("checks: %d passed, %d failed\n", t_checks - t_failed, t_failed);
    return t_failed ? 1 : 0;
}
