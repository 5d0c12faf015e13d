/* Unit tests for builder/overlay.c (--override FILE): tables merge key by
 * key, arrays and scalars are replaced, [[download]] / [[stage]] entries are
 * matched by name with only the given keys replaced and new names appended,
 * strings survive the rewrite byte for byte, and a bad override file is
 * named in the error. Files live in a project under /tmp. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "manifest.h"
#include "overlay.h"
#include "sandbox.h"
#include "util.h"

#define ABC_HEX "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define MSG448_HEX "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"

static const char base_text[] = "[image]\n"
				"name = \"base\"\n"
				"source_date_epoch = 1577836800\n"
				"\n"
				"[base]\n"
				"distro = \"debian\"\n"
				"suite = \"bookworm\"\n"
				"packages = [\"a\", \"b\"]\n"
				"\n"
				"[env]\n"
				"KEEP = \"kept\"\n"
				"CHANGE = \"old\"\n"
				"\n"
				"[[download]]\n"
				"name = \"blob\"\n"
				"url = \"https://example.invalid/blob\"\n"
				"sha256 = \"" ABC_HEX "\"\n"
				"\n"
				"[[stage]]\n"
				"name = \"one\"\n"
				"script = \"stages/one.sh\"\n"
				"inputs = [\"blob\"]\n"
				"env = { A = \"1\", B = \"2\" }\n"
				"\n"
				"[[stage]]\n"
				"name = \"two\"\n"
				"script = \"stages/two.sh\"\n";

static char project[64];

static char *put(const char *rel, const char *text)
{
	char *path = ib_path_join(project, rel);
	ib_error_t err = NULL;
	if (ib_write_file_atomic(path, text, strlen(text), 0644, &err) < 0)
		fail_msg("%s", err->msg);
	return path;
}

static int setup(void **state)
{
	strcpy(project, "/tmp/ib-overlay-unit.XXXXXX");
	assert_non_null(mkdtemp(project));
	cleanup_free char *stages = ib_path_join(project, "stages");
	assert_int_equal(mkdir(stages, 0755), 0);
	free(put("stages/one.sh", "#!/bin/sh\n"));
	free(put("stages/two.sh", "#!/bin/sh\n"));
	free(put("stages/three.sh", "#!/bin/sh\n"));
	free(put("m.toml", base_text));
	return 0;
}

static int teardown(void **state)
{
	ib_error_t err = NULL;
	if (ib_remove_tree(project, &err) < 0)
		ib_error_free(&err);
	return 0;
}

static const char *env_get(const struct ib_kv_list *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].key, key) == 0)
			return l->v[i].value;
	return NULL;
}

static struct ib_manifest *load(const char *override_text)
{
	cleanup_free char *base = ib_path_join(project, "m.toml");
	cleanup_free char *over = override_text ? put("over.toml", override_text) : NULL;
	ib_error_t err = NULL;
	struct ib_manifest *m = ib_overlay_load(base, over, &err);
	if (m == NULL)
		fail_msg("refused: %s", err->msg);
	return m;
}

static void test_no_override(void **state)
{
	cleanup_manifest struct ib_manifest *m = load(NULL);
	assert_string_equal(m->image.name, "base");
	/* the manifest's own bytes are what the image records */
	assert_int_equal(m->text_len, strlen(base_text));
	assert_memory_equal(m->text, base_text, m->text_len);
}

static void test_merge(void **state)
{
	cleanup_manifest struct ib_manifest *m = load("[image]\n"
						      "name = \"over\"\n"
						      "[base]\n"
						      "packages = [\"c\"]\n"
						      "[env]\n"
						      "CHANGE = \"new\"\n"
						      "ADDED = \"yes\"\n"
						      "[[download]]\n"
						      "name = \"blob\"\n"
						      "url = \"file:///srv/fixtures/blob\"\n"
						      "[[download]]\n"
						      "name = \"extra\"\n"
						      "url = \"https://example.invalid/extra\"\n"
						      "sha256 = \"" MSG448_HEX "\"\n"
						      "[[stage]]\n"
						      "name = \"one\"\n"
						      "env = { C = \"3\" }\n"
						      "[[stage]]\n"
						      "name = \"three\"\n"
						      "script = \"stages/three.sh\"\n"
						      "inputs = [\"extra\"]\n");
	/* scalars replaced, the rest of the table kept */
	assert_string_equal(m->image.name, "over");
	assert_int_equal(m->image.source_date_epoch, 1577836800);
	assert_string_equal(m->base.suite, "bookworm");
	/* an array is replaced, not appended to */
	assert_int_equal(m->base.packages.n, 1);
	assert_string_equal(m->base.packages.v[0], "c");
	/* tables merge key by key */
	assert_string_equal(env_get(&m->env, "KEEP"), "kept");
	assert_string_equal(env_get(&m->env, "CHANGE"), "new");
	assert_string_equal(env_get(&m->env, "ADDED"), "yes");
	/* entries matched by name: the given key replaced, the others kept */
	const struct ib_download *blob = ib_manifest_download(m, "blob");
	assert_non_null(blob);
	assert_string_equal(blob->url, "file:///srv/fixtures/blob");
	assert_string_equal(blob->sha256, ABC_HEX);
	const struct ib_download *extra = ib_manifest_download(m, "extra");
	assert_non_null(extra);
	assert_string_equal(extra->sha256, MSG448_HEX);
	/* stages keep their order, a new one comes last */
	assert_int_equal(m->n_stages, 3);
	assert_string_equal(m->stages[0].name, "one");
	assert_string_equal(m->stages[1].name, "two");
	assert_string_equal(m->stages[2].name, "three");
	/* a stage's env is one value of its entry: replaced whole */
	assert_int_equal(m->stages[0].env.n, 1);
	assert_string_equal(env_get(&m->stages[0].env, "C"), "3");
	assert_null(env_get(&m->stages[0].env, "A"));
	assert_int_equal(m->stages[0].inputs.n, 1);
	/* the image records the merged text, marked as such */
	assert_non_null(strstr(m->text, "# merged with an --override file"));
	assert_non_null(strstr(m->text, "file:///srv/fixtures/blob"));
}

/* Quotes, backslashes, control bytes and non-ASCII survive the rewrite. */
static void test_strings(void **state)
{
	cleanup_manifest struct ib_manifest *m = load("[env]\n"
						      "Q = \"say \\\"hi\\\" \\\\ back\"\n"
						      "NL = \"line1\\nline2\\ttab\\u007f\"\n"
						      "U = \"caf\xc3\xa9 \\u00e9\"\n"
						      "LIT = 'C:\\path'\n");
	assert_string_equal(env_get(&m->env, "Q"), "say \"hi\" \\ back");
	assert_string_equal(env_get(&m->env, "NL"), "line1\nline2\ttab\x7f");
	assert_string_equal(env_get(&m->env, "U"), "caf\xc3\xa9 \xc3\xa9");
	assert_string_equal(env_get(&m->env, "LIT"), "C:\\path");
	/* the merged text is one key per line: no raw newline got in */
	assert_null(strstr(m->text, "line1\nline2"));
}

static void load_fails(const char *override_text, const char *want1, const char *want2)
{
	cleanup_free char *base = ib_path_join(project, "m.toml");
	cleanup_free char *over = put("bad.toml", override_text);
	ib_error_t err = NULL;
	struct ib_manifest *m = ib_overlay_load(base, over, &err);
	if (m) {
		ib_manifest_free(m);
		fail_msg("accepted: %s", override_text);
	}
	if (strstr(err->msg, want1) == NULL || (want2 && strstr(err->msg, want2) == NULL))
		fail_msg("message '%s' lacks '%s' or '%s'", err->msg, want1, want2 ? want2 : "");
	ib_error_free(&err);
}

static void test_errors(void **state)
{
	cleanup_free char *over = ib_path_join(project, "bad.toml");
	/* not TOML: the override file and its line are named */
	load_fails("[env]\nX = \"unterminated\n", over, ":2");
	/* TOML, but the merged manifest is wrong: said to come from the override */
	cleanup_free char *ctx = xasprintf("manifest merged with --override '%s'", over);
	load_fails("[image]\nnmae = \"typo\"\n", ctx, "nmae");
	load_fails("[[stage]]\nname = \"four\"\nscript = \"stages/missing.sh\"\n", ctx, "missing.sh");

	/* a missing override file */
	cleanup_free char *base = ib_path_join(project, "m.toml");
	cleanup_free char *nowhere = ib_path_join(project, "nowhere.toml");
	ib_error_t err = NULL;
	assert_null(ib_overlay_load(base, nowhere, &err));
	assert_non_null(strstr(err->msg, nowhere));
	ib_error_free(&err);
}

int main(void)
{
	/* ib_overlay_load checks the [stack] pins against builder/compat.toml:
	 * the source tree's (build/unit/overlay_test -> ../..). */
	unit_use_source_datadir();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_override, setup, teardown),
		cmocka_unit_test_setup_teardown(test_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_strings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	};
	return cmocka_run_group_tests_name("overlay", tests, NULL, NULL);
}
