/* libFuzzer target for the TOML parser. The input is handed over exactly as
 * libFuzzer allocated it, without a terminating NUL, so ASan catches any read
 * past LEN; a rejected input must leave nothing allocated but the error. */
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ib_error_t err = NULL;
	struct ib_toml_value *doc = ib_toml_parse((const char *)data, size, "fuzz", &err);
	if (doc != NULL) {
		/* Exercise the lookup path over the parsed root too. */
		for (size_t i = 0; i < doc->len; i++)
			(void)ib_toml_get(doc, doc->keys[i]);
		ib_toml_free(doc);
	}
	ib_error_free(&err);
	return 0;
}
