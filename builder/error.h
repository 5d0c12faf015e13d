#pragma once
/* Errors travel up as values: a fallible function returns < 0 and fills *err;
 * callers add context with ib_error_wrap; only main() prints and frees.
 * (After crun's libcrun_error_t.) */
#include <stdarg.h>

struct ib_error {
	int status;    /* errno value, 0 when not a system error */
	int exit_code; /* exit status main() should use: 1 failure, 2 bad usage/manifest */
	char *msg;
};
typedef struct ib_error *ib_error_t;

enum { IB_EXIT_OK = 0, IB_EXIT_FAIL = 1, IB_EXIT_USAGE = 2 };

/* All return -1 so that `return ib_error_set(err, ...)` reads naturally. */
int ib_error_set(ib_error_t *err, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Like ib_error_set, but the error means bad input (exit code 2). */
int ib_error_usage(ib_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* errno-style: appends ": strerror(errno)". */
int ib_error_errno(ib_error_t *err, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The one way to change the exit status main() will use for *err (bad input
 * 2, 128 + a signal, a command's 126/127). Does nothing when there is no error;
 * returns -1 like the setters. */
int ib_error_exit_code(ib_error_t *err, int exit_code);
/* Prefixes context: "CONTEXT: old message". Keeps status and exit code. */
int ib_error_wrap(ib_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ib_error_free(ib_error_t *err);
