/* Stage keys for a whole manifest: a thin entry point over builder/layers.c,
 * which owns the definition of a key. */
#include "stagekey.h"
#include "layers.h"

_Static_assert(IB_KEY_LEN + 1 == 65, "stage keys are sha256 hex digests");

int ib_manifest_stage_keys(const struct ib_manifest *m, char (*keys)[65], ib_error_t *err)
{
	char base[IB_KEY_LEN + 1];
	return ib_layers_all_keys(m, base, keys, err);
}
