/* The one GPU preflight (driver.h, ib_driver_preflight) on facts.toml text
 * read by imgmeta.c, the way run --gpu, verify --host and plan all use it:
 * the driver's version against min_driver (compared as numbers), the UVM
 * device, and each GPU's compute capability against the image's archs,
 * whichever way TORCH_CUDA_ARCH_LIST was written. There is no GPU here: the
 * GPUs come from tests/fixtures/fake-libcuda.c (FAKE_CUDA_* variables),
 * compiled into a temporary folder; the driver is a struct made here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"
#include "imgmeta.h"
#include "sandbox.h"
#include "util.h"

static char tmpdir[64];
static char repo[4096];

static struct ib_driver_dev uvm_dev = { .path = "/dev/nvidia-uvm", .dst = "/dev/nvidia-uvm" };
static struct ib_driver drv = { .found = true, .host_root = "", .version = "580.159.04", .devs = &uvm_dev, .n_devs = 1 };

static int group_setup(void **state)
{
	strcpy(tmpdir, "/tmp/ib-preflight-unit.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	cleanup_free char *lib = ib_path_join(tmpdir, "libcuda.so.1");
	cleanup_free char *cmd = xasprintf("cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o '%s' '%s/tests/fixtures/fake-libcuda.c'",
					   lib, repo);
	if (system(cmd) != 0) {
		print_message("# skipped: no C compiler for the fake libcuda\n");
		return -1;
	}
	setenv("IMGBUILD_LIBCUDA", lib, 1);
	return 0;
}

static int group_teardown(void **state)
{
	ib_error_t err = NULL;
	if (ib_remove_tree(tmpdir, &err) < 0)
		ib_error_free(&err);
	unsetenv("IMGBUILD_LIBCUDA");
	return 0;
}

static int reset(void **state)
{
	unsetenv("FAKE_CUDA_INIT");
	unsetenv("FAKE_CUDA_COUNT");
	setenv("FAKE_CUDA_NAME", "Fake H100", 1);
	drv.found = true;
	drv.version = "580.159.04";
	drv.n_devs = 1;
	return 0;
}

static void gpu(int major, int minor)
{
	char v[16];
	snprintf(v, sizeof(v), "%d", major);
	setenv("FAKE_CUDA_MAJOR", v, 1);
	snprintf(v, sizeof(v), "%d", minor);
	setenv("FAKE_CUDA_MINOR", v, 1);
}

/* The preflight's verdict on FACTS (facts.toml text; NULL: no facts at
 * all): NULL when it passes, else its message (caller frees). */
static char *verdict(const char *facts)
{
	struct ib_facts f = { 0 };
	ib_error_t err = NULL;
	if (facts && ib_facts_parse(facts, strlen(facts), "facts.toml", &f, &err) < 0)
		fail_msg("facts: %s", err->msg);
	int rc = ib_driver_preflight(&drv, facts ? &f : NULL, &err);
	ib_facts_free(&f);
	if (rc == 0)
		return NULL;
	assert_non_null(err);
	char *msg = xstrdup(err->msg);
	ib_error_free(&err);
	return msg;
}

static void passes(const char *facts)
{
	cleanup_free char *msg = verdict(facts);
	if (msg)
		fail_msg("refused '%s': %s", facts, msg);
}

static void refused(const char *facts, const char *want)
{
	cleanup_free char *msg = verdict(facts);
	if (msg == NULL)
		fail_msg("passed: '%s'", facts);
	if (strstr(msg, want) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", facts, msg, want);
}

static void test_driver(void **state)
{
	gpu(9, 0);
	passes(NULL);
	passes("name = \"x\"\n");
	passes("min_driver = \"450.80.02\"\n");
	/* numbers, not strings: 159 > 65 although "1" < "6" */
	passes("min_driver = \"580.65.06\"\n");
	passes("[stack]\nmin_driver = \"580.159.04\"\n");
	refused("min_driver = \"580.159.05\"\n", "older than 580.159.05");
	refused("[stack]\nmin_driver = \"590.1\"\n", "update the host driver to 590.1 or newer");

	drv.n_devs = 0;
	refused(NULL, "nvidia-uvm is missing");
	drv.n_devs = 1;
	drv.found = false;
	refused(NULL, "no NVIDIA driver");

	/* without archs nothing asks libcuda: a broken one does not matter */
	drv.found = true;
	setenv("FAKE_CUDA_INIT", "999", 1);
	passes("min_driver = \"450.80.02\"\n");
	refused("archs = [\"9.0\"]\n", "cuInit failed with 999");
}

static void test_archs(void **state)
{
	gpu(9, 0);
	passes("archs = [\"8.0\", \"9.0\"]\n");
	refused("archs = [\"7.0\", \"8.0\"]\n", "this GPU is sm_90");
	refused("archs = [\"7.0\", \"8.0\"]\n", "rebuild with 9.0 in [stack] archs");
	/* PTX is JIT-compiled for newer GPUs, never older ones */
	passes("archs = [\"7.0+PTX\"]\n");
	passes("archs = [\"7.0\", \"8.0\"]\nptx_jit = true\n");
	gpu(6, 1);
	refused("archs = [\"7.0+PTX\"]\n", "sm_61");
	refused("archs = [\"7.0\"]\nptx_jit = true\n", "sm_61");
	/* SASS runs on a later minor of the same major */
	gpu(8, 6);
	passes("archs = [\"8.0\"]\n");
	refused("archs = [\"9.0\"]\n", "sm_86");
	/* "a" targets run on exactly that one */
	gpu(9, 0);
	passes("archs = [\"9.0a\"]\n");
	gpu(10, 0);
	refused("archs = [\"9.0a\"]\n", "sm_100");
	/* an image that says it has no archs runs nowhere */
	refused("archs = []\n", "(no architectures)");
	/* every GPU must be covered */
	gpu(8, 0);
	setenv("FAKE_CUDA_COUNT", "4", 1);
	passes("archs = [\"8.0\"]\n");
	refused("archs = [\"7.5\"]\n", "GPU 0");
}

/* TORCH_CUDA_ARCH_LIST is written with ';', ' ' or ','; as a string or an
 * array, at the top level or under [stack]: the same verdict everywhere
 * (verify --host once split on ' ' only, so one image passed run --gpu and
 * failed verify --host). */
static void test_arch_spellings(void **state)
{
	const char *spellings[] = {
		"archs = \"7.0;8.0\"\n",	    "archs = \"7.0 8.0\"\n",	   "archs = \"7.0,8.0\"\n",
		"archs = \"7.0; 8.0\"\n",	    "archs = [\"7.0\", \"8.0\"]\n", "archs = [\"7.0;8.0\"]\n",
		"[stack]\narchs = \"7.0 8.0\"\n",
	};
	for (size_t i = 0; i < sizeof(spellings) / sizeof(*spellings); i++) {
		gpu(8, 0);
		passes(spellings[i]);
		gpu(8, 6);
		passes(spellings[i]);
		gpu(9, 0);
		refused(spellings[i], "sm_90");
	}
	refused("archs = \"8.0/9.0\"\n", "is not X.Y, X.Y+PTX or X.Ya");
}

int main(void)
{
	/* the source tree: build/unit/preflight_test -> ../.. */
	if (!unit_source_tree(repo, sizeof(repo)))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_driver, reset),
		cmocka_unit_test_setup(test_archs, reset),
		cmocka_unit_test_setup(test_arch_spellings, reset),
	};
	return cmocka_run_group_tests_name("preflight", tests, group_setup, group_teardown);
}
