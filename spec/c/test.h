/* A tiny test harness for the C core: checks record file:line and go on, so
 * one run shows every failure; test_main.c prints the tally. */
#ifndef TEST_H
#define TEST_H

#include <stddef.h>

extern int t_checks, t_failed;

void t_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int t_check_str(const char *file, int line, const char *expr, const char *got, const char *want);
int t_check_has(const char *file, int line, const char *expr, const char *hay, const char *needle, int want);

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        t_checks++;                                                                                                    \
        if (!(c))                                                                                                      \
            t_fail(__FILE__, __LINE__, "%s", #c);                                                                      \
    } while (0)
/* CHECK with a printf-style message, for checks made in a loop. */
#define CHECK_MSG(c, ...)                                                                                              \
    do {                                                                                                               \
        t_checks++;                                                                                                    \
        if (!(c))                                                                                                      \
            t_fail(__FILE__, __LINE__, __VA_ARGS__);                                                                   \
    } while (0)
/* Equal strings; NULL equals only NULL. */
#define CHECK_STR(got, want) t_check_str(__FILE__, __LINE__, #got, (got), (want))
/* Substring present (CHECK_HAS) or absent (CHECK_LACKS); a NULL haystack fails both. */
#define CHECK_HAS(hay, needle) t_check_has(__FILE__, __LINE__, #hay, (hay), (needle), 1)
#define CHECK_LACKS(hay, needle) t_check_has(__FILE__, __LINE__, #hay, (hay), (needle), 0)

/* Scratch files. Paths are absolute, so messages and resolved paths can be
 * compared with what the test wrote. */
char *t_mkdtemp(void);                          /* malloc'd */
char *t_path(const char *dir, const char *name); /* malloc'd "dir/name" */
/* Writes text to dir/name (creating subdirectories) with the given mode;
 * returns the malloc'd path. */
char *t_write(const char *dir, const char *name, const char *text, int mode);
void t_rmtree(char *dir);                       /* removes and frees */
/* 1-based line of the first line of text containing needle, or 0. */
int t_line_of(const char *text, const char *needle);

/* setenv, or unsetenv for NULL. */
void t_setenv(const char *name, const char *value);
/* Runs fn in a child process; returns 1 when it exited with status 0. A
 * memory error found by ASan then fails one check instead of ending the run. */
int t_isolated(void (*fn)(void *), void *arg);

void test_json(void);
void test_base64(void);
void test_kubeconfig(void);
void test_config(void);
void test_exec(void);

#endif
