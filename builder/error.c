#include "error.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int error_vset(ib_error_t *err, int status, int exit_code, const char *fmt, va_list ap)
{
	if (err == NULL)
		return -1;
	ib_error_free(err);
	struct ib_error *e = xmalloc(sizeof(*e));
	e->status = status;
	e->exit_code = exit_code;
	e->msg = xvasprintf(fmt, ap);
	*err = e;
	return -1;
}

int ib_error_set(ib_error_t *err, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_vset(err, status, IB_EXIT_FAIL, fmt, ap);
	va_end(ap);
	return -1;
}

int ib_error_usage(ib_error_t *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_vset(err, 0, IB_EXIT_USAGE, fmt, ap);
	va_end(ap);
	return -1;
}

int ib_error_errno(ib_error_t *err, int errnum, const char *fmt, ...)
{
	va_list ap;
	cleanup_free char *msg = NULL;
	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	return ib_error_set(err, errnum, "%s: %s", msg, strerror(errnum));
}

int ib_error_exit_code(ib_error_t *err, int exit_code)
{
	if (err != NULL && *err != NULL)
		(*err)->exit_code = exit_code;
	return -1;
}

int ib_error_wrap(ib_error_t *err, const char *fmt, ...)
{
	if (err == NULL || *err == NULL)
		return -1;
	va_list ap;
	cleanup_free char *ctx = NULL;
	va_start(ap, fmt);
	ctx = xvasprintf(fmt, ap);
	va_end(ap);
	char *joined = xasprintf("%s: %s", ctx, (*err)->msg);
	free((*err)->msg);
	(*err)->msg = joined;
	return -1;
}

void ib_error_free(ib_error_t *err)
{
	if (err == NULL || *err == NULL)
		return;
	free((*err)->msg);
	free(*err);
	*err = NULL;
}
