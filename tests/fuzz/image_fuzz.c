/* libFuzzer target over verify's reader path: the bytes are an image (tar,
 * plain or zstd) parsed by libarchive through archive.c, every entry checked
 * (ib_entry_check), hashed, and compared against its ./.imgbuild/listing and
 * facts.toml. No file system is touched: ib_verify_memory reads from memory.
 * Any input must end in a verdict with nothing leaked; seed with the hostile
 * corpus (tests/make-hostile-images.py) and images from imgbuild pack. */
#include <stddef.h>
#include <stdint.h>

#include "commands.h"
#include "error.h"
#include "pack.h"
#include "verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fuzz rule links every builder/*.c but main.c, where this lives; the
 * cmd_*.c files need it to link. Weak, so a real one wins. */
__attribute__((weak)) bool ib_cmd_wants_help(int argc, char **argv, const struct ib_cmd_help *help)
{
	(void)argc, (void)argv, (void)help;
	return false;
}

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
