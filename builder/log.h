#pragma once
/* Output to the user. Colour and live progress only on a terminal and never
 * when NO_COLOR is set; -q silences info, -v enables debug. */
#include <stdbool.h>

enum ib_log_level { IB_LOG_QUIET = 0, IB_LOG_NORMAL = 1, IB_LOG_VERBOSE = 2 };

void ib_log_init(enum ib_log_level level);
enum ib_log_level ib_log_level(void);
/* True when stderr is a terminal and NO_COLOR is unset: live status lines allowed. */
bool ib_log_is_tty(void);
void ib_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ib_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ib_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ib_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A status line that rewrites itself on a terminal; a no-op elsewhere. */
void ib_log_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ib_log_status_clear(void);
