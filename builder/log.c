#include "log.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static enum ib_log_level current_level = IB_LOG_NORMAL;
static bool use_tty;
static bool status_shown;

void ib_log_init(enum ib_log_level level)
{
	current_level = level;
	const char *no_color = getenv("NO_COLOR");
	use_tty = isatty(STDERR_FILENO) && (no_color == NULL || no_color[0] == '\0');
}

enum ib_log_level ib_log_level(void)
{
	return current_level;
}
bool ib_log_is_tty(void)
{
	return use_tty;
}

static void vlog(const char *color, const char *prefix, const char *fmt, va_list ap)
{
	ib_log_status_clear();
	if (use_tty && color)
		fprintf(stderr, "\033[%sm%s\033[0m", color, prefix);
	else
		fputs(prefix, stderr);
	/* Messages carry names from images and manifests: no control characters
	 * of theirs reach the terminal. */
	char *msg = xvasprintf(fmt, ap);
	char *shown = ib_escape(msg, true);
	fputs(shown, stderr);
	free(shown);
	free(msg);
	fputc('\n', stderr);
}

void ib_log_info(const char *fmt, ...)
{
	if (current_level < IB_LOG_NORMAL)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog("1;34", "imgbuild: ", fmt, ap);
	va_end(ap);
}

void ib_log_debug(const char *fmt, ...)
{
	if (current_level < IB_LOG_VERBOSE)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog("2", "imgbuild: debug: ", fmt, ap);
	va_end(ap);
}

void ib_log_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("1;33", "imgbuild: warning: ", fmt, ap);
	va_end(ap);
}

void ib_log_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("1;31", "imgbuild: error: ", fmt, ap);
	va_end(ap);
}

void ib_log_status(const char *fmt, ...)
{
	if (!use_tty || current_level < IB_LOG_NORMAL)
		return;
	va_list ap;
	va_start(ap, fmt);
	fputs("\r\033[K", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
	status_shown = true;
}

void ib_log_status_clear(void)
{
	if (status_shown) {
		fputs("\r\033[K", stderr);
		status_shown = false;
	}
}
