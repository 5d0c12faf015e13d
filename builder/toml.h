#pragma once
/* A complete TOML 1.0 parser (no C TOML library is packaged in Debian).
 * Every value remembers where it was written so that schema errors can name
 * file:line:col. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum ib_toml_type {
	IB_TOML_TABLE,
	IB_TOML_ARRAY,
	IB_TOML_STRING,
	IB_TOML_INTEGER,
	IB_TOML_FLOAT,
	IB_TOML_BOOL,
	IB_TOML_DATETIME, /* offset date-time */
	IB_TOML_DATETIME_LOCAL,
	IB_TOML_DATE_LOCAL,
	IB_TOML_TIME_LOCAL,
};

struct ib_toml_value {
	enum ib_toml_type type;
	int line, col; /* 1-based position of the value (of the key for tables) */
	union {
		char *str; /* STRING; date/time types keep their RFC 3339 text, normalised ('T', no lowercase z) */
		int64_t integer;
		double real;
		bool boolean;
	} u;
	/* TABLE: keys in document order; ARRAY: items only (keys NULL);
	 * STRING and date/time types: byte length of u.str, which may hold NUL
	 * bytes (written as \u0000). */
	size_t len;
	char **keys;
	struct ib_toml_value **items;
};

/* Parses TEXT (LEN bytes, not necessarily NUL-terminated). FILENAME is used only
 * in messages, which read "FILENAME:LINE:COL: expected ..., found ...". */
struct ib_toml_value *ib_toml_parse(const char *text, size_t len, const char *filename, ib_error_t *err);
void ib_toml_free(struct ib_toml_value *value);
static inline void ib_toml_freep(struct ib_toml_value **v)
{
	ib_toml_free(*v);
}
#define cleanup_toml __attribute__((cleanup(ib_toml_freep)))

/* Lookup in a table; NULL when absent or when TABLE is not a table. */
const struct ib_toml_value *ib_toml_get(const struct ib_toml_value *table, const char *key);
const char *ib_toml_type_name(enum ib_toml_type type);
/* Byte length of TABLE's key I: keys may hold NUL bytes (written as \u0000),
 * which strlen would miss. 0 when out of range. */
size_t ib_toml_key_len(const struct ib_toml_value *table, size_t i);
