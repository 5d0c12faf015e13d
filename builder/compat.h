#pragma once
/* Compatibility rules between the parts of the stack (CUDA, gcc, driver, GPU
 * architectures, cuDNN, magma, torch, torchvision, Python). The rules are data,
 * builder/compat.toml, so that a person can read and extend them without
 * recompiling; this module loads them and turns them into verdicts on a manifest. */
#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "manifest.h"
#include "version.h"

enum ib_verdict_level { IB_VERDICT_OK, IB_VERDICT_WARN, IB_VERDICT_FAIL };

struct ib_verdict {
	char *rule; /* "cuda-gcc", "torch-vision", ... */
	enum ib_verdict_level level;
	char *message; /* one line, lowercase */
	char *source;  /* where the rule comes from */
	char *fix;     /* what to change; NULL when ok */
};

struct ib_verdicts {
	struct ib_verdict *v;
	size_t n;
};

struct ib_compat; /* opaque: the loaded rule tables */

/* Loads rules from PATH (a compat.toml). Errors name PATH:LINE:COL. */
struct ib_compat *ib_compat_load(const char *path, ib_error_t *err);
/* The rules at ib_data_dir()/builder/compat.toml, loaded once per process and
 * kept until exit (not owned by the caller: do not free). */
const struct ib_compat *ib_compat_default(ib_error_t *err);
void ib_compat_free(struct ib_compat *c);

/* Completes M from the rules: every [stack] pin must be one a [[pin]] row
 * declares (else an error naming the manifest's line), and pins the data can
 * derive are filled in (min_driver). Everything that builds or plans from a
 * manifest calls it after ib_manifest_load (ib_overlay_load does). */
int ib_compat_resolve(const struct ib_compat *c, struct ib_manifest *m, ib_error_t *err);
/* Evaluates every rule on M and appends one or more verdicts per rule to OUT. */
int ib_compat_check(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out, ib_error_t *err);
void ib_verdicts_free(struct ib_verdicts *v);
const char *ib_verdict_level_name(enum ib_verdict_level level); /* "ok", "warn", "FAIL" */

/* Oldest Linux driver for CUDA release CUDA, or NULL when the data has no row for it.
 * The string belongs to C. */
const char *ib_compat_min_driver(const struct ib_compat *c, const char *cuda);

/* Adds the rows of another data file (builder/chips.toml) to C. */
int ib_compat_load_more(struct ib_compat *c, const char *path, ib_error_t *err);

/* The last driver branch ("470") that drives GPUs of compute capability ARCH, or NULL
 * when current drivers still do; *family ("Kepler") and *source when not NULL. */
const char *ib_compat_last_branch(const struct ib_compat *c, const char *arch, const char **family, const char **source);
/* A one-line warning (caller frees) when DRIVER comes from a branch after the last
 * one for ARCH, naming the cause; NULL when it drives ARCH. */
char *ib_compat_driver_warning(const struct ib_compat *c, const char *driver, const char *arch);
/* `plan --driver VERSION`: appends the host-driver verdicts for a host running DRIVER. */
void ib_compat_check_host(const struct ib_compat *c, const struct ib_manifest *m, const char *driver, struct ib_verdicts *out);

/* ---- GPUs (builder/chips.toml) and advice ---- */

/* What a marketing name or PCI id can mean. Strings are not owned (they live in C). */
struct ib_chip_match {
	const char *pci;       /* "10de:1392", NULL for a chip found only through pci.ids */
	const char *name;      /* "GeForce GTX 860M" */
	const char *chip;      /* "GM107M" */
	const char *cc;	       /* "5.0", or NULL when no [[chip]] row knows the chip */
	const char *source;    /* the [[device]] row's, or NULL */
	const char *cc_source; /* the [[chip]] row's, or NULL */
};
/* Every [[device]] row whose PCI id ("10de:1392" or "1392") or name matches QUERY;
 * names compare without case, spaces, "NVIDIA" and "GeForce" ("gtx 860m" finds
 * both GTX 860M chips). *out is freed with free(); returns the count. */
size_t ib_compat_find_chips(const struct ib_compat *c, const char *query, struct ib_chip_match **out);
/* Compute capability of a chip as pci.ids names it ("GK208B", "GP108M"), or NULL. */
const char *ib_compat_chip_cc(const struct ib_compat *c, const char *chip, const char **source);
/* Every [[device]] row, in file order (for the table). */
size_t ib_compat_devices(const struct ib_compat *c, struct ib_chip_match **out);

struct ib_advice_item {
	char value[320];
	const char *source; /* not owned */
};
/* The newest stack compat.toml allows for compute capability CC. */
struct ib_advice {
	const char *family, *last_branch; /* NULL when current drivers still drive it */
	struct ib_advice_item branch, cuda_range;
	bool have_stack;
	char why_none[256];
	struct ib_advice_item driver, cuda, cudnn, gcc, torch, torchvision, python, magma;
};
void ib_compat_advise(const struct ib_compat *c, const char *cc, struct ib_advice *a);
/* advise --manifest: the version a seed manifest ranks by (highest first), or
 * NULL when M cannot seed an image for a GPU (it builds no GPU stack). */
const char *ib_compat_seed_rank(const struct ib_manifest *m);
/* The fix for torch TORCH's extension builder rejecting ARCH, or NULL when it accepts it. */
const char *ib_compat_ext_arch_fix(const struct ib_compat *c, const char *arch, const char *torch, const char **source);
/* A GPU of compute capability CC runs code built for ARCHS ("3.5", "6.1+PTX"): SASS
 * within its major version at or below its minor, PTX at or below it. */
bool ib_compat_arch_covered(const char *cc, const struct ib_strv *archs);
