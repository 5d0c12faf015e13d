/* libFuzzer target over verify's reader path: the bytes are an image (tar,
 * plain or zstd) parsed by libarchive through archive.c, every entry checked
 * (ib_entry_check), hashed, and compared against its ./.imgbuild/listing and
 * facts.toml. No file system is touched: ib_verify_memory reads from memory.
 * Any input must end in a verdict with nothing leaked; seed with the hostile
 * corpus (tests/make-hostile-images.py) and images from imgbuild pack. */
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "pack.h"
#include "verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ib_error_t err = NULL;
	struct ib_verify_report rep;
	(void)ib_verify_memory(data, size, &rep, &err);
	ib_verify_report_free(&rep);
	ib_error_free(&err);

	/* The listing line parser on its own, with the input as one line. */
	struct ib_listing_entry le;
	if (size < 4096 && ib_listing_parse_line((const char *)data, size, &le, &err) == 0)
		ib_listing_entry_free(&le);
	ib_error_free(&err);
	return 0;
}
