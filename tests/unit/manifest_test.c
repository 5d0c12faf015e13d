/* Unit tests for builder/manifest.c, builder/compat.c and builder/aptsource.c:
 * version comparison, parsing and defaults, the wording and position of
 * manifest errors, and the verdicts of the compatibility rules. Run from the
 * repository root (tests/run.sh does): manifests are parsed as if they lived in
 * tests/cases/, and the rules come from builder/compat.toml. TAP output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aptsource.h"
#include "compat.h"
#include "manifest.h"
#include "util.h"

static char repo[PATH_MAX];

static const char base_text[] = "[image]\n"
				"name = \"t\"\n"
				"source_date_epoch = 1577836800\n"
				"\n"
				"[base]\n"
				"distro = \"ubuntu\"\n"
				"suite = \"bionic\"\n";

static char *case_path(void)
{
	return xasprintf("%s/tests/cases/unit.toml", repo);
}

static struct ib_manifest *parse_ok(const char *text)
{
	cleanup_free char *path = case_path();
	ib_error_t err = NULL;
	struct ib_manifest *m = ib_manifest_parse(path, text, strlen(text), &err);
	if (m == NULL)
		fail_msg("unexpected error: %s", err->msg);
	return m;
}

/* TEXT must be refused; returns the message (caller frees). */
static char *parse_err(const char *text)
{
	ib_error_t err = NULL;
	struct ib_manifest *m = ib_manifest_parse("t.toml", text, strlen(text), &err);
	if (m != NULL) {
		ib_manifest_free(m);
		fail_msg("accepted: %s", text);
	}
	assert_non_null(err);
	assert_int_equal(err->exit_code, IB_EXIT_USAGE);
	char *msg = xstrdup(err->msg);
	ib_error_free(&err);
	assert_null(strchr(msg, '\n'));
	return msg;
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("'%s' does not contain '%s'", haystack, needle);
}

static void test_version_cmp(void **state)
{
	(void)state;
	assert_true(ib_version_cmp("10.0", "10.2") < 0);
	assert_true(ib_version_cmp("10.2", "11.0") < 0);
	assert_true(ib_version_cmp("9.2", "10.0") < 0);	/* numeric, not lexical */
	assert_true(ib_version_cmp("9.2", "9.2.148") < 0);
	assert_true(ib_version_cmp("9.2.148", "9.2.88") > 0);
	assert_int_equal(ib_version_cmp("10", "10.0"), 0);
	assert_int_equal(ib_version_cmp("6.1+PTX", "6.1"), 0);
	assert_true(ib_version_cmp("440.33.01", "440.33") > 0);
	assert_int_equal(ib_version_ncomp("9.2.148"), 3);
	assert_int_equal(ib_version_cmp_n("10.0.130", "10.0", 2), 0);
}

static void test_version_in(void **state)
{
	(void)state;
	assert_true(ib_version_in("10.0.130", "9.2", "10.0"));	/* bound precision */
	assert_false(ib_version_in("10.1", "9.2", "10.0"));
	assert_true(ib_version_in("3.6", "3.6.1", "3.8"));
	assert_false(ib_version_in("3.9", "3.5", "3.8"));
	assert_true(ib_version_in("7", NULL, "7"));
	assert_false(ib_version_in("8", NULL, "7"));
	assert_true(ib_version_in("12", "6", NULL));
	assert_true(ib_version_valid("7.6.5.32"));
	assert_false(ib_version_valid("10."));
	assert_false(ib_version_valid("v1.4"));
	assert_false(ib_version_valid(""));
}

static void test_parse_defaults(void **state)
{
	(void)state;
	struct ib_manifest *m = parse_ok(base_text);
	assert_string_equal(m->image.name, "t");
	assert_int_equal(m->image.source_date_epoch, 1577836800);
	assert_int_equal(m->image.compression, IB_COMPRESS_NONE);
	char cwd[PATH_MAX];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	cleanup_free char *out = xasprintf("%s/t.tar", cwd);
	assert_string_equal(m->image.output, out);
	assert_int_equal(m->base.components.n, 1);
	assert_string_equal(m->base.components.v[0], "main");
	assert_string_equal(m->base.variant, "minbase");
	assert_null(m->base.keyring);
	assert_null(m->toolchain.gcc);
	assert_string_equal(m->project_root, repo);
	assert_int_equal(m->image.pos.line, 1);
	ib_manifest_free(m);
}

static void test_parse_full(void **state)
{
	(void)state;
	cleanup_free char *text = xasprintf(
		"%s"
		"extra_suites = [\"bionic-updates\"]\n"
		"keyring = \"../../keys/ubuntu-archive-keyring.gpg\"\n"
		"[toolchain]\ngcc = \"7\"\n"
		"[stack]\ncuda = \"10.0\"\narchs = [\"3.5\", \"6.1+PTX\"]\n"
		"[env]\nCUDA_HOME = \"/usr/local/cuda\"\n"
		"[[download]]\nname = \"cudnn\"\nurl = \"mirror://debian/pool/main/x.deb\"\n"
		"sha256 = \"28355E395F0B2B93AC2C83B61360B35BA6CD0377E44E78BE197B6B61B4B492BA\"\n"
		"[[download]]\nname = \"conda\"\nurl = \"https://example.org/c.sh\"\nsha256 = \"unknown\"\n"
		"[[source]]\nname = \"torch\"\nurl = \"https://github.com/pytorch/pytorch.git\"\n"
		"rewrites = { \"https://github.com/\" = \"https://gitee.com/mirrors/\" }\n"
		"tag = \"v1.4.0\"\ncommit = \"7F73F1D591AFBA823DAA4A99A939217FB54D7688\"\nsubmodules = true\n"
		"[[stage]]\nname = \"check\"\nscript = \"../../stages/check.sh\"\ninputs = [\"torch\", \"cudnn\"]\n"
		"env = { A = \"1\", A_B = \"2\" }\nnetwork = true\nretries = 2\nclean = \"make clean\"\n",
		base_text);
	struct ib_manifest *m = parse_ok(text);
	assert_string_equal(m->toolchain.gcc, "7");
	assert_int_equal(m->stack.archs.n, 2);
	assert_null(ib_manifest_pin(m, "min_driver"));	/* the compat data's to derive */
	ib_error_t err = NULL;
	assert_int_equal(ib_compat_resolve(ib_compat_default(&err), m, &err), 0);
	assert_string_equal(ib_manifest_pin_value(m, "min_driver"), "410.48");
	assert_string_equal(ib_manifest_pin(m, "min_driver")->derived_from, "cuda");
	assert_int_equal(ib_manifest_pin(m, "min_driver")->pos.line, 0);
	assert_non_null(strstr(m->base.keyring, "/keys/ubuntu-archive-keyring.gpg"));
	assert_string_equal(ib_kv_get(&m->env, "CUDA_HOME"), "/usr/local/cuda");
	const struct ib_download *d = ib_manifest_download(m, "cudnn");
	assert_non_null(d);
	assert_string_equal(d->sha256, "28355e395f0b2b93ac2c83b61360b35ba6cd0377e44e78be197b6b61b4b492ba");
	assert_null(ib_manifest_download(m, "conda")->sha256);
	const struct ib_source *s = ib_manifest_source(m, "torch");
	assert_string_equal(s->commit, "7f73f1d591afba823daa4a99a939217fb54d7688");
	assert_true(s->submodules);
	assert_string_equal(ib_kv_get(&s->rewrites, "https://github.com/"), "https://gitee.com/mirrors/");
	assert_int_equal(m->n_stages, 1);
	const struct ib_stage *st = &m->stages[0];
	cleanup_free char *script = xasprintf("%s/stages/check.sh", repo);
	assert_string_equal(st->script, script);
	assert_int_equal(st->retries, 2);
	assert_true(st->network);
	assert_string_equal(st->clean, "make clean");
	assert_string_equal(ib_kv_get(&st->env, "A_B"), "2");
	assert_null(ib_kv_get(&st->env, "B"));
	ib_manifest_free(m);
}

static void write_text(const char *path, const char *text);

/* TEXT parses, and ib_compat_resolve with C refuses it; returns the message. */
static char *resolve_err(const struct ib_compat *c, const char *text)
{
	ib_error_t err = NULL;
	struct ib_manifest *m = ib_manifest_parse("t.toml", text, strlen(text), &err);
	if (m == NULL)
		fail_msg("unexpected error: %s", err->msg);
	assert_int_equal(ib_compat_resolve(c, m, &err), -1);
	assert_int_equal(err->exit_code, IB_EXIT_USAGE);
	char *msg = xstrdup(err->msg);
	ib_error_free(&err);
	ib_manifest_free(m);
	return msg;
}

static void test_unknown_key(void **state)
{
	(void)state;
	ib_error_t err = NULL;
	const struct ib_compat *c = ib_compat_default(&err);
	assert_non_null(c);
	cleanup_free char *text = xasprintf("%s[stack]\ncdua = \"10.0\"\n", base_text);
	cleanup_free char *msg = resolve_err(c, text);
	assert_string_equal(msg, "t.toml:9:8: unknown key 'cdua' in [stack] (hint: did you mean 'cuda'?)");
	cleanup_free char *t2 = xasprintf("%s[stack]\nnccl = \"2.4.8\"\n", base_text);
	cleanup_free char *m2 = resolve_err(c, t2);
	assert_contains(m2, "t.toml:9:8: unknown key 'nccl' in [stack] (hint: [stack] takes archs, cuda, ");
	assert_contains(m2, "a new pin is a [[pin]] row in builder/compat.toml)");
	/* Declaring it in the data is all it takes. */
	char dir[] = "/tmp/manifest_test.XXXXXX";
	assert_non_null(mkdtemp(dir));
	cleanup_free char *path = xasprintf("%s/compat.toml", dir);
	write_text(path, "[[pin]]\nkey = \"nccl\"\nwhat = \"NCCL release\"\n");
	struct ib_compat *mine = ib_compat_load(path, &err);
	assert_non_null(mine);
	struct ib_manifest *m = ib_manifest_parse("t.toml", t2, strlen(t2), &err);
	assert_non_null(m);
	assert_int_equal(ib_compat_resolve(mine, m, &err), 0);
	assert_string_equal(ib_manifest_pin_value(m, "nccl"), "2.4.8");
	ib_manifest_free(m);
	ib_compat_free(mine);
	unlink(path);
	rmdir(dir);
	/* A pin's name becomes an environment variable: only [a-z][a-z0-9_]*. */
	cleanup_free char *t3 = xasprintf("%s[stack]\n\"NCCL-x\" = \"2.4.8\"\n", base_text);
	cleanup_free char *m3 = parse_err(t3);
	assert_contains(m3, "t.toml:9:12: 'NCCL-x' cannot be a [stack] pin");
}

static void test_unknown_table(void **state)
{
	(void)state;
	cleanup_free char *text = xasprintf("%s[stak]\ncuda = \"10.0\"\n", base_text);
	cleanup_free char *msg = parse_err(text);
	assert_contains(msg, "unknown key 'stak' in the manifest's top level (hint: did you mean 'stack'?)");
}

static void test_wrong_types(void **state)
{
	(void)state;
	cleanup_free char *t1 = xasprintf("%s[stack]\ncuda = 10.0\n", base_text);
	cleanup_free char *m1 = parse_err(t1);
	assert_string_equal(m1, "t.toml:9:8: 'stack.cuda' must be a string, found float (hint: quote it: cuda = \"10.0\")");
	cleanup_free char *t2 = xasprintf("%sextra_suites = \"bionic-updates\"\n", base_text);
	cleanup_free char *m2 = parse_err(t2);
	assert_contains(m2, "'base.extra_suites' must be an array, found a string (hint: write extra_suites = [\"bionic-updates\"])");
	cleanup_free char *t3 = xasprintf("%s[[stage]]\nname = \"x\"\nscript = \"stages/check.sh\"\nnetwork = \"yes\"\n",
					  base_text);
	cleanup_free char *m3 = parse_err(t3);
	assert_contains(m3, "'stage.network' must be a boolean, found a string");
}

static void test_missing_required(void **state)
{
	(void)state;
	cleanup_free char *m1 = parse_err("[base]\ndistro = \"debian\"\nsuite = \"bookworm\"\n");
	assert_contains(m1, "t.toml:1:1: missing required table [image]");
	cleanup_free char *t2 = xasprintf("%s[[download]]\nname = \"x\"\nurl = \"https://example.org/x\"\n", base_text);
	cleanup_free char *m2 = parse_err(t2);
	assert_contains(m2, "missing required key 'sha256' in [[download]] 'x' (hint: add sha256 = \"...\")");
	cleanup_free char *t3 = xasprintf("%s[[stage]]\nscript = \"../../stages/check.sh\"\n", base_text);
	cleanup_free char *m3 = parse_err(t3);
	assert_contains(m3, "missing required key 'name' in [[stage]] #1");
}

static void test_syntax_error(void **state)
{
	(void)state;
	cleanup_free char *msg = parse_err("[image]\nname = \"t\"\nsource_date_epoch = 15x\n");
	assert_true(strncmp(msg, "t.toml:3:", 9) == 0);
}

static void test_names_and_duplicates(void **state)
{
	(void)state;
	cleanup_free char *t1 = xasprintf("%s", base_text);
	char *at = strstr(t1, "\"t\"");
	memcpy(at, "\"T\"", 3);
	cleanup_free char *m1 = parse_err(t1);
	assert_contains(m1, "image name 'T' has characters it may not have");
	cleanup_free char *t2 = xasprintf("%s[[download]]\nname = \"torch\"\nurl = \"https://e.org/x\"\nsha256 = \"unknown\"\n"
					  "[[source]]\nname = \"torch\"\nurl = \"https://e.org/x.git\"\ntag = \"v1\"\n"
					  "commit = \"7f73f1d591afba823daa4a99a939217fb54d7688\"\n",
					  base_text);
	cleanup_free char *m2 = parse_err(t2);
	assert_contains(m2, "duplicate input name 'torch' (hint: the other is at line 8;");
	cleanup_free char *t3 = xasprintf("%s[[stage]]\nname = \"../x\"\nscript = \"../../stages/check.sh\"\n", base_text);
	cleanup_free char *m3 = parse_err(t3);
	assert_contains(m3, "name '../x' has characters it may not have");
}

static void test_paths_outside(void **state)
{
	(void)state;
	cleanup_free char *text = xasprintf("%skeyring = \"/etc/passwd\"\n", base_text);
	cleanup_free char *path = case_path();
	ib_error_t err = NULL;
	struct ib_manifest *m = ib_manifest_parse(path, text, strlen(text), &err);
	assert_null(m);
	assert_contains(err->msg, "keyring '/etc/passwd' resolves to /etc/passwd, outside the project");
	assert_int_equal(err->exit_code, IB_EXIT_USAGE);
	ib_error_free(&err);
}

/* Issue 14 item 3: a manifest chooses neither the builder's key nor a place
 * outside its project; a key and an output inside the project are fine. */
static void test_sign_tilde(void **state)
{
	(void)state;
	setenv("HOME", "/home/student", 1);
	cleanup_free char *msg = parse_err("[image]\nname = \"t\"\nsource_date_epoch = 0\nsign = \"~/.config/k.sec\"\n"
					   "[base]\ndistro = \"debian\"\nsuite = \"bookworm\"\n");
	assert_contains(msg, "t.toml:4:8: image.sign '~/.config/k.sec' names a key of the person building");
	assert_contains(msg, "imgbuild build --sign KEY");
}

static void test_sign_outside(void **state)
{
	(void)state;
	cleanup_free char *text = xasprintf("[image]\nname = \"t\"\nsource_date_epoch = 0\nsign = \"/etc/passwd\"\n"
					    "[base]\ndistro = \"debian\"\nsuite = \"bookworm\"\n");
	cleanup_free char *path = case_path();
	ib_error_t err = NULL;
	assert_null(ib_manifest_parse(path, text, strlen(text), &err));
	assert_contains(err->msg, "unit.toml:4:8: image.sign '/etc/passwd' is not a key file inside the project");
	ib_error_free(&err);
}

static void test_sign_output_inside(void **state)
{
	(void)state;
	cleanup_free char *text = xasprintf("[image]\nname = \"t\"\nsource_date_epoch = 0\n"
					    "sign = \"../fixtures/imgbuild-test.sec\"\noutput = \"out/t.tar\"\n"
					    "compression = \"zstd\"\n[base]\ndistro = \"debian\"\nsuite = \"bookworm\"\n");
	struct ib_manifest *m = parse_ok(text);
	cleanup_free char *key = xasprintf("%s/tests/fixtures/imgbuild-test.sec", repo);
	cleanup_free char *out = xasprintf("%s/tests/cases/out/t.tar", repo);
	assert_string_equal(m->image.sign_key, key);
	assert_string_equal(m->image.output, out);
	assert_int_equal(m->image.compression, IB_COMPRESS_ZSTD);
	ib_manifest_free(m);
}

static void test_output_outside(void **state)
{
	(void)state;
	cleanup_free char *text = xasprintf("[image]\nname = \"t\"\nsource_date_epoch = 0\n"
					    "output = \"../../../../../../../../tmp/x.tar\"\n"
					    "[base]\ndistro = \"debian\"\nsuite = \"bookworm\"\n");
	cleanup_free char *path = case_path();
	ib_error_t err = NULL;
	assert_null(ib_manifest_parse(path, text, strlen(text), &err));
	assert_contains(err->msg, "unit.toml:4:10: image.output '../../../../../../../../tmp/x.tar' is in /tmp, outside the project");
	assert_contains(err->msg, "imgbuild build -o OUT");
	ib_error_free(&err);
}

static const struct ib_verdict *find_verdict(const struct ib_verdicts *v, const char *rule,
					     enum ib_verdict_level level)
{
	for (size_t i = 0; i < v->n; i++)
		if (strcmp(v->v[i].rule, rule) == 0 && v->v[i].level == level)
			return &v->v[i];
	return NULL;
}

static void test_compat_gcc8(void **state)
{
	(void)state;
	cleanup_free char *text = xasprintf("%s[toolchain]\ngcc = \"8\"\n[stack]\ncuda = \"10.0\"\n", base_text);
	struct ib_manifest *m = parse_ok(text);
	ib_error_t err = NULL;
	const struct ib_compat *c = ib_compat_default(&err);
	assert_non_null(c);
	struct ib_verdicts v = { 0 };
	assert_int_equal(ib_compat_check(c, m, &v, &err), 0);
	const struct ib_verdict *x = find_verdict(&v, "cuda-gcc", IB_VERDICT_FAIL);
	assert_non_null(x);
	assert_string_equal(x->message, "gcc 8 is newer than CUDA 10.0 accepts (<= 7)");
	assert_string_equal(x->fix, "set toolchain gcc = \"7\"");
	assert_contains(x->source, "compat-facts §2");
	ib_verdicts_free(&v);
	ib_manifest_free(m);
}

static void test_compat_seed_mistake(void **state)
{
	(void)state;
	cleanup_free char *text = xasprintf("%s[toolchain]\ngcc = \"7\"\n[stack]\ncuda = \"9.2\"\ncudnn = \"7.6.5\"\n"
					    "cudnn_cuda = \"9.0\"\nmagma_cuda = \"9.0\"\n",
					    base_text);
	struct ib_manifest *m = parse_ok(text);
	ib_error_t err = NULL;
	const struct ib_compat *c = ib_compat_default(&err);
	struct ib_verdicts v = { 0 };
	assert_int_equal(ib_compat_check(c, m, &v, &err), 0);
	const struct ib_verdict *cudnn = find_verdict(&v, "cudnn-cuda", IB_VERDICT_FAIL);
	const struct ib_verdict *magma = find_verdict(&v, "magma-cuda", IB_VERDICT_FAIL);
	assert_non_null(cudnn);
	assert_non_null(magma);
	assert_string_equal(magma->message, "magma-cuda90 is built for CUDA 9.0, the image has CUDA 9.2");
	assert_string_equal(magma->fix, "install magma-cuda92 and set stack magma_cuda = \"9.2\"");
	assert_null(find_verdict(&v, "cuda-gcc", IB_VERDICT_FAIL));
	assert_string_equal(ib_compat_min_driver(c, "9.2"), "396.26");
	assert_string_equal(ib_compat_min_driver(c, "9.2.148"), "396.37");
	assert_string_equal(ib_compat_min_driver(c, "10.1.243"), "418.39");
	assert_null(ib_compat_min_driver(c, "6.5"));
	ib_verdicts_free(&v);
	ib_manifest_free(m);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_apt_mirror(void **state)
{
	(void)state;
	char dir[] = "/tmp/imgbuild-apt-XXXXXX";
	assert_non_null(mkdtemp(dir));
	cleanup_free char *list = xasprintf("%s/sources.list", dir);
	cleanup_free char *d = xasprintf("%s/sources.list.d", dir);
	cleanup_free char *src = xasprintf("%s/sources.list.d/a.sources", dir);
	assert_int_equal(mkdir(d, 0755), 0);
	write_text(list, "deb http://sec.example.org/debian-security bookworm-security main\n");
	write_text(src, "# comment\nTypes: deb\nURIs: http://deb.example.org/debian/\n"
			"Suites: bookworm\n bookworm-updates\nComponents: main");
	setenv("IMGBUILD_APT_DIR", dir, 1);
	ib_error_t err = NULL;
	cleanup_free char *m = ib_host_apt_mirror("debian", &err);
	assert_non_null(m);
	assert_string_equal(m, "http://deb.example.org/debian");
	assert_null(ib_host_apt_mirror("ubuntu", &err));
	assert_non_null(err);
	ib_error_free(&err);
	assert_true(ib_apt_suite_is("debian", "bookworm-updates"));
	assert_true(ib_apt_suite_is("ubuntu", "bionic-security"));
	assert_false(ib_apt_suite_is("ubuntu", "bookworm"));
	unsetenv("IMGBUILD_APT_DIR");
	unlink(src);
	unlink(list);
	rmdir(d);
	rmdir(dir);
}

int main(void)
{
	if (getcwd(repo, sizeof(repo)) == NULL)
		return 1;
	/* The compat data of this tree, whatever the binary's location. */
	setenv("IMGBUILD_DATADIR", repo, 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_cmp),	    cmocka_unit_test(test_version_in),
		cmocka_unit_test(test_parse_defaults),	    cmocka_unit_test(test_parse_full),
		cmocka_unit_test(test_unknown_key),	    cmocka_unit_test(test_unknown_table),
		cmocka_unit_test(test_wrong_types),	    cmocka_unit_test(test_missing_required),
		cmocka_unit_test(test_syntax_error),	    cmocka_unit_test(test_names_and_duplicates),
		cmocka_unit_test(test_paths_outside),	    cmocka_unit_test(test_sign_tilde),
		cmocka_unit_test(test_sign_outside),
		cmocka_unit_test(test_sign_output_inside),
		cmocka_unit_test(test_output_outside),
		cmocka_unit_test(test_compat_gcc8),	    cmocka_unit_test(test_compat_seed_mistake),
		cmocka_unit_test(test_apt_mirror),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
