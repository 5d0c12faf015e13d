/* toml-test decoder: TOML on stdin, tagged JSON on stdout (see
 * tests/toml/toml-test/README.md). On a parse error the message goes to stderr
 * and the exit status is 1, which is all the suite asks of invalid cases. */
#include "toml.h"
#include "util.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_json_string(const char *s, size_t len)
{
	putchar('"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '"':
			fputs("\\\"", stdout);
			break;
		case '\\':
			fputs("\\\\", stdout);
			break;
		case '\n':
			fputs("\\n", stdout);
			break;
		case '\t':
			fputs("\\t", stdout);
			break;
		case '\r':
			fputs("\\r", stdout);
			break;
		case '\b':
			fputs("\\b", stdout);
			break;
		case '\f':
			fputs("\\f", stdout);
			break;
		default:
			if (c < 0x20 || c == 0x7F)
				printf("\\u%04x", c);
			else
				putchar(c);
		}
	}
	putchar('"');
}

/* The shortest decimal that reads back as the same double. */
static void format_float(double d, char *out, size_t size)
{
	if (isnan(d)) {
		snprintf(out, size, "nan");
		return;
	}
	if (isinf(d)) {
		snprintf(out, size, d < 0 ? "-inf" : "inf");
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, size, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			return;
	}
}

static void print_scalar(const char *type, const char *value, size_t len)
{
	printf("{\"type\":\"%s\",\"value\":", type);
	print_json_string(value, len);
	putchar('}');
}

static void print_value(const struct ib_toml_value *v)
{
	char tmp[64];
	switch (v->type) {
	case IB_TOML_TABLE:
		putchar('{');
		for (size_t i = 0; i < v->len; i++) {
			if (i > 0)
				putchar(',');
			print_json_string(v->keys[i], ib_toml_key_len(v, i));
			putchar(':');
			print_value(v->items[i]);
		}
		putchar('}');
		break;
	case IB_TOML_ARRAY:
		putchar('[');
		for (size_t i = 0; i < v->len; i++) {
			if (i > 0)
				putchar(',');
			print_value(v->items[i]);
		}
		putchar(']');
		break;
	case IB_TOML_STRING:
		print_scalar("string", v->u.str, v->len);
		break;
	case IB_TOML_INTEGER:
		snprintf(tmp, sizeof(tmp), "%" PRId64, v->u.integer);
		print_scalar("integer", tmp, strlen(tmp));
		break;
	case IB_TOML_FLOAT:
		format_float(v->u.real, tmp, sizeof(tmp));
		print_scalar("float", tmp, strlen(tmp));
		break;
	case IB_TOML_BOOL:
		print_scalar("bool", v->u.boolean ? "true" : "false", v->u.boolean ? 4 : 5);
		break;
	case IB_TOML_DATETIME:
		print_scalar("datetime", v->u.str, v->len);
		break;
	case IB_TOML_DATETIME_LOCAL:
		print_scalar("datetime-local", v->u.str, v->len);
		break;
	case IB_TOML_DATE_LOCAL:
		print_scalar("date-local", v->u.str, v->len);
		break;
	case IB_TOML_TIME_LOCAL:
		print_scalar("time-local", v->u.str, v->len);
		break;
	}
}

int main(void)
{
	size_t cap = 1 << 16, len = 0;
	cleanup_free char *buf = xmalloc(cap);
	size_t r;
	while ((r = fread(buf + len, 1, cap - len, stdin)) > 0) {
		len += r;
		if (len == cap) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
	}
	if (ferror(stdin)) {
		perror("read stdin");
		return 1;
	}
	ib_error_t err = NULL;
	struct ib_toml_value *doc = ib_toml_parse(buf, len, "<stdin>", &err);
	if (doc == NULL) {
		fprintf(stderr, "%s\n", err->msg);
		ib_error_free(&err);
		return 1;
	}
	print_value(doc);
	putchar('\n');
	ib_toml_free(doc);
	return 0;
}
