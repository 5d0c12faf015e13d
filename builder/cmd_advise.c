/* imgbuild advise GPU|auto [--manifest OUT.toml] | advise --table
 * Students do not know their GPU's compute capability, and nvidia-smi on old
 * drivers cannot tell them. advise names every chip a marketing name or PCI id
 * can mean, and the newest stack compat.toml allows for each, with sources; it
 * can write a manifest from the nearest seed manifest that plan accepts. All
 * knowledge is data (builder/compat.toml, builder/chips.toml) read by compat.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "advise.h"
#include "commands.h"
#include "compat.h"
#include "util.h"

static void line(const char *what, const struct ib_advice_item *it)
{
	printf("  %-13s %s\n", what, it->value);
	printf("  %-13s   source: %s\n", "", it->source ? it->source : "builder/compat.toml");
}

static void print_target(const struct ib_compat *c, const struct ib_advise_target *t)
{
	printf("%s%s%s%s: chip %s", t->m.name, t->m.pci ? " (" : "", t->m.pci ? t->m.pci : "", t->m.pci ? ")" : "", t->m.chip);
	if (t->found)
		printf(", found as %s", t->found);
	printf("\n  %-13s   source: %s\n", "", t->m.source ? t->m.source : "-");
	if (t->m.cc == NULL) {
		printf("  compute capability unknown: no [[chip]] row in builder/chips.toml for %s\n\n", t->m.chip);
		return;
	}
	struct ib_advice a;
	ib_compat_advise(c, t->m.cc, &a);
	struct ib_advice_item cc = { "", t->m.cc_source };
	snprintf(cc.value, sizeof(cc.value), "%s", t->m.cc);
	line("compute cap.", &cc);
	line("driver branch", &a.branch);
	line("CUDA range", &a.cuda_range);
	if (!a.have_stack) {
		printf("  newest stack  none: %s\n\n", a.why_none);
		return;
	}
	printf("  newest stack compat.toml allows:\n");
	line("driver", &a.driver);
	line("CUDA", &a.cuda);
	line("cuDNN", &a.cudnn);
	line("gcc", &a.gcc);
	line("torch", &a.torch);
	line("torchvision", &a.torchvision);
	line("python", &a.python);
	line("magma", &a.magma);
	char torch[32];
	snprintf(torch, sizeof(torch), "%.*s", (int)strcspn(a.torch.value, " "), a.torch.value);
	struct ib_advice_item note = { "", NULL };
	const char *fix = ib_compat_ext_arch_fix(c, t->m.cc, torch, &note.source);
	if (fix) {
		snprintf(note.value, sizeof(note.value), "torch %s's extension builder rejects %s: %s", torch, t->m.cc, fix);
		line("note", &note);
	}
	printf("\n");
}

/* "10.2 (built for ...)" -> "10.2" */
static const char *first_word(const char *s, char *buf, size_t len)
{
	snprintf(buf, len, "%.*s", (int)strcspn(s, " "), s);
	return buf;
}

static void print_table(const struct ib_compat *c)
{
	struct ib_chip_match *d = NULL;
	size_t n = ib_compat_devices(c, &d);
	printf("| GPU | PCI id | chip | compute capability | last driver branch | CUDA (nvcc) | newest stack: CUDA, cuDNN, gcc, "
	       "torch, torchvision, python |\n");
	printf("|---|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < n; i++) {
		if (d[i].cc == NULL) {
			printf("| %s | %s | %s | ? | ? | ? | ? |\n", d[i].name, d[i].pci, d[i].chip);
			continue;
		}
		struct ib_advice a;
		ib_compat_advise(c, d[i].cc, &a);
		char b1[64], b2[64], b3[64], b4[64], b5[64], b6[64], range[64];
		snprintf(range, sizeof(range), "%.*s", (int)strcspn(a.cuda_range.value, " "), a.cuda_range.value);
		printf("| %s | %s | %s | %s | %s%s | %s | ", d[i].name, d[i].pci, d[i].chip, d[i].cc,
		       a.last_branch ? "R" : "current", a.last_branch ? a.last_branch : "", range);
		if (a.have_stack)
			printf("%s, %s, %s, %s, %s, %s |\n", first_word(a.cuda.value, b1, sizeof(b1)),
			       first_word(a.cudnn.value, b2, sizeof(b2)), first_word(a.gcc.value, b3, sizeof(b3)),
			       first_word(a.torch.value, b4, sizeof(b4)), first_word(a.torchvision.value, b5, sizeof(b5)),
			       first_word(a.python.value, b6, sizeof(b6)));
		else
			printf("none in compat.toml |\n");
	}
	free(d);
	printf("\nSources: PCI id -> chip from pci.ids @c1c12547d626ebf05fd0223144ad87fab5e95d06 and chip ->\n"
	       "compute capability from the Wikipedia CUDA table (compat-facts §4c), in `builder/chips.toml`;\n"
	       "last driver branch `[[arch_driver]]` (§1d); CUDA range `[[cuda_arch]]` (§4a); the stack from\n"
	       "`[[cuda_driver]]` (§1a), `[[cudnn]]` (§5a), `[[cuda_gcc]]` (§2) and `[[torch]]` (§3) — the newest\n"
	       "CUDA the card's last driver branch runs that has a cuDNN and a torch row. `imgbuild advise GPU`\n"
	       "prints each value with its own source.\n");
}

enum { OPT_MANIFEST = IB_OPT_LONG, OPT_TABLE };

static const struct ib_opt options[] = {
	{ OPT_MANIFEST, "manifest", "OUT",
	  "also write OUT from the nearest seed manifest that plan accepts\n"
	  "(OUT must be inside a project: a folder with stages/ above it)" },
	{ OPT_TABLE, "table", NULL, "print the table of every known GPU (docs/compat.md's)" },
	{ 0 },
};

struct args {
	const char *gpu, *out;
	bool table;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	switch (key) {
	case OPT_MANIFEST: a->out = arg; break;
	case OPT_TABLE: a->table = true; break;
	case IB_OPT_OPERAND: a->gpu = arg; break;
	}
	return 0;
}

static int cmd_advise(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { 0 };
	int r = ib_cmd_parse(cmd, argc, argv, parse, &a, NULL, err);
	if (r != 0)
		return r < 0 ? -1 : IB_EXIT_OK;
	const char *gpu = a.gpu, *out = a.out;
	bool table = a.table;
	if (table == (gpu != NULL) || (table && out))
		return ib_cmd_usage_error(cmd, err);
	const struct ib_compat *c = ib_compat_default(err);
	if (c == NULL)
		return -1;
	if (table) {
		print_table(c);
		return IB_EXIT_OK;
	}
	struct ib_advise_target *t = NULL;
	size_t n = 0;
	if (ib_advise_targets(c, gpu, &t, &n, err) < 0)
		return -1;
	if (n == 0) {
		ib_advise_targets_free(t, n);
		if (strcmp(gpu, "auto") == 0)
			return IB_EXIT_FAIL;
		return ib_error_set(err, ENOENT,
				    "advise: no GPU in builder/chips.toml matches '%s' (try its PCI id from `lspci -nn`, "
				    "e.g. 10de:1392, or `imgbuild advise auto`)",
				    gpu);
	}
	if (n > 1)
		printf("'%s' can mean %zu chips; each is listed:\n\n", gpu, n);
	for (size_t i = 0; i < n; i++)
		print_target(c, &t[i]);
	int rc = IB_EXIT_OK;
	if (out && ib_advise_write_manifest(c, t, n, out, err) < 0)
		rc = -1;
	ib_advise_targets_free(t, n);
	return rc;
}

const struct ib_cmd ib_cmd_advise = {
	.name = "advise",
	.args_doc = "GPU|auto",
	.summary = "say which CUDA/torch stack a GPU can use (name, PCI id or auto)",
	.doc = "say which stack an NVIDIA GPU can use. GPU is a marketing name (\"GeForce GTX 860M\"),\n"
	       "a PCI id (10de:1392) or auto (this host's GPUs, from /sys/bus/pci/devices,\n"
	       "/proc/driver/nvidia/gpus and pci.ids). Prints every chip the name can mean, its compute\n"
	       "capability, last driver branch, CUDA range and the newest stack builder/compat.toml\n"
	       "allows, each with its source. imgbuild advise --table prints every known GPU.\n"
	       "exit status: 0 advice printed, 1 no GPU matches, 2 bad usage",
	.options = options,
	.min_operands = 0,
	.max_operands = 1,
	.main = cmd_advise,
};
