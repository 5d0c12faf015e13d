/* Unit tests for builder/layers.c. Keys: each input that can change a
 * layer's content changes its key (and those of the stages above it), and
 * what cannot change it (the image's name, a download's URL, the order env
 * entries are written in, a host's remote ccache) leaves every key as it was.
 * Folders: a layer appears complete or not at all, a finished one is never
 * replaced, leftovers of dead builds are swept. Manifests are parsed from
 * text in a project under /tmp, so the test does not depend on how the
 * manifest module stores pins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "layers.h"
#include "manifest.h"
#include "sandbox.h"
#include "store.h"
#include "util.h"

#define ABC_HEX "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define MSG448_HEX "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"

static const char canon[] = "[image]\n"
			    "name = \"keys\"\n"
			    "source_date_epoch = 1577836800\n"
			    "\n"
			    "[base]\n"
			    "distro = \"debian\"\n"
			    "suite = \"bookworm\"\n"
			    "keyring = \"keys/k.gpg\"\n"
			    "packages = [\"ab\", \"c\"]\n"
			    "\n"
			    "[stack]\n"
			    "cuda = \"10.2\"\n"
			    "\n"
			    "[env]\n"
			    "FOO = \"1\"\n"
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

struct keys {
	char base[IB_KEY_LEN + 1];
	char stage[2][IB_KEY_LEN + 1];
};

static void put(const char *rel, const char *text)
{
	cleanup_free char *path = ib_path_join(project, rel);
	ib_error_t err = NULL;
	if (ib_write_file_atomic(path, text, strlen(text), 0644, &err) < 0)
		fail_msg("%s", err->msg);
}

static int setup(void **state)
{
	strcpy(project, "/tmp/ib-layers-unit.XXXXXX");
	assert_non_null(mkdtemp(project));
	cleanup_free char *stages = ib_path_join(project, "stages");
	cleanup_free char *keys = ib_path_join(project, "keys");
	cleanup_free char *cache = ib_path_join(project, "cache");
	assert_int_equal(mkdir(stages, 0755), 0);
	assert_int_equal(mkdir(keys, 0755), 0);
	assert_int_equal(mkdir(cache, 0755), 0);
	put("stages/one.sh", "#!/bin/sh\necho one\n");
	put("stages/two.sh", "#!/bin/sh\necho two\n");
	put("keys/k.gpg", "not really a keyring, only its bytes count\n");
	setenv("IMGBUILD_CACHE", cache, 1);
	unsetenv("IMGBUILD_CCACHE_REMOTE");
	return 0;
}

static int teardown(void **state)
{
	ib_error_t err = NULL;
	if (ib_remove_tree(project, &err) < 0)
		ib_error_free(&err);
	unsetenv("IMGBUILD_CACHE");
	return 0;
}

static struct ib_manifest *parse(const char *text)
{
	cleanup_free char *path = ib_path_join(project, "m.toml");
	ib_error_t err = NULL;
	struct ib_manifest *m = ib_manifest_parse(path, text, strlen(text), &err);
	if (m == NULL)
		fail_msg("manifest refused: %s", err->msg);
	return m;
}

static void keys_of(const char *text, struct keys *k)
{
	cleanup_manifest struct ib_manifest *m = parse(text);
	assert_int_equal(m->n_stages, 2);
	ib_error_t err = NULL;
	if (ib_layers_all_keys(m, k->base, k->stage, &err) < 0)
		fail_msg("%s", err->msg);
	assert_true(ib_store_valid_digest(k->base));
	assert_true(ib_store_valid_digest(k->stage[0]));
	assert_true(ib_store_valid_digest(k->stage[1]));
}

/* CANON with its one occurrence of FROM replaced by TO (caller frees). */
static char *variant(const char *from, const char *to)
{
	const char *at = strstr(canon, from);
	if (at == NULL || strstr(at + 1, from) != NULL)
		fail_msg("'%s' is not in the manifest exactly once", from);
	return xasprintf("%.*s%s%s", (int)(at - canon), canon, to, at + strlen(from));
}

enum change { SAME, BASE_UP, ONE_UP, TWO_UP };

/* Compares the keys of the variant with the canonical ones: every layer from
 * the first that changed up must differ, every one below it must not. */
static void expect(const char *what, const char *text, enum change first)
{
	struct keys a, b;
	keys_of(canon, &a);
	keys_of(text, &b);
	const char *ka[3] = { a.base, a.stage[0], a.stage[1] };
	const char *kb[3] = { b.base, b.stage[0], b.stage[1] };
	int from = first == SAME ? 3 : first == BASE_UP ? 0 : first == ONE_UP ? 1 : 2;
	for (int i = 0; i < 3; i++) {
		bool same = strcmp(ka[i], kb[i]) == 0;
		if (i < from && !same)
			fail_msg("%s: layer %d's key changed", what, i);
		if (i >= from && same)
			fail_msg("%s: layer %d's key did not change", what, i);
	}
}

static void test_keys_stable(void **state)
{
	struct keys a, b;
	keys_of(canon, &a);
	keys_of(canon, &b);
	assert_memory_equal(&a, &b, sizeof(a));
	/* a chain: no two layers share a key */
	assert_string_not_equal(a.base, a.stage[0]);
	assert_string_not_equal(a.stage[0], a.stage[1]);

	/* what is not an input of any layer */
	cleanup_free char *name = variant("name = \"keys\"", "name = \"other\"");
	expect("image name", name, SAME);
	cleanup_free char *url = variant("https://example.invalid/blob", "https://mirror.invalid/elsewhere/blob");
	expect("download url", url, SAME);
	cleanup_free char *order = variant("env = { A = \"1\", B = \"2\" }", "env = { B = \"2\", A = \"1\" }");
	expect("env order", order, SAME);
	cleanup_free char *comment = variant("[stack]\n", "# a comment\n[stack]\n");
	expect("comment", comment, SAME);

	/* a shared ccache changes where ccache looks, not what a stage makes */
	setenv("IMGBUILD_CCACHE_REMOTE", "http://127.0.0.1:1/ccache", 1);
	keys_of(canon, &b);
	unsetenv("IMGBUILD_CCACHE_REMOTE");
	assert_memory_equal(&a, &b, sizeof(a));
}

static void test_keys_base(void **state)
{
	cleanup_free char *suite = variant("suite = \"bookworm\"", "suite = \"bullseye\"");
	expect("suite", suite, BASE_UP);
	cleanup_free char *epoch = variant("1577836800", "1577836801");
	expect("epoch", epoch, BASE_UP);
	cleanup_free char *pkgs = variant("[\"ab\", \"c\"]", "[\"ab\", \"c\", \"d\"]");
	expect("packages", pkgs, BASE_UP);
	/* the same bytes split differently are different lists */
	cleanup_free char *split = variant("[\"ab\", \"c\"]", "[\"a\", \"bc\"]");
	expect("package boundaries", split, BASE_UP);
	cleanup_free char *variant_ = variant("packages = ", "variant = \"buildd\"\npackages = ");
	expect("variant", variant_, BASE_UP);
	cleanup_free char *extra = variant("packages = ", "extra_suites = [\"bookworm-updates\"]\npackages = ");
	expect("extra suites", extra, BASE_UP);
	cleanup_free char *comps = variant("packages = ", "components = [\"main\", \"contrib\"]\npackages = ");
	expect("components", comps, BASE_UP);

	/* the keyring counts by its bytes, not its name */
	struct keys a, b;
	keys_of(canon, &a);
	put("keys/k.gpg", "another keyring\n");
	keys_of(canon, &b);
	assert_string_not_equal(a.base, b.base);
	assert_string_not_equal(a.stage[1], b.stage[1]);
	put("keys/k.gpg", "not really a keyring, only its bytes count\n");
	keys_of(canon, &b);
	assert_memory_equal(&a, &b, sizeof(a));

	/* a keyring that cannot be read is an error, not a key without it */
	cleanup_manifest struct ib_manifest *m = parse(canon);
	cleanup_free char *kr = ib_path_join(project, "keys/k.gpg");
	assert_int_equal(unlink(kr), 0);
	ib_error_t err = NULL;
	assert_true(ib_layers_base_key(m, a.base, &err) < 0);
	assert_non_null(strstr(err->msg, "keyring"));
	ib_error_free(&err);
	put("keys/k.gpg", "not really a keyring, only its bytes count\n");
}

static void test_keys_stages(void **state)
{
	cleanup_free char *env = variant("FOO = \"1\"", "FOO = \"2\"");
	expect("[env]", env, ONE_UP);
	cleanup_free char *cuda = variant("cuda = \"10.2\"", "cuda = \"11.0\"");
	expect("[stack] cuda", cuda, ONE_UP);
	cleanup_free char *sha = variant("sha256 = \"" ABC_HEX "\"", "sha256 = \"" MSG448_HEX "\"");
	expect("input's sha256", sha, ONE_UP);
	cleanup_free char *senv = variant("B = \"2\"", "B = \"3\"");
	expect("stage env", senv, ONE_UP);
	cleanup_free char *net = variant("inputs = [\"blob\"]\n", "inputs = [\"blob\"]\nnetwork = true\n");
	expect("network", net, ONE_UP);
	cleanup_free char *sname = variant("name = \"two\"", "name = \"second\"");
	expect("stage name", sname, TWO_UP);
	cleanup_free char *tenv = variant("script = \"stages/two.sh\"\n", "script = \"stages/two.sh\"\nenv = { C = \"1\" }\n");
	expect("stage two's env", tenv, TWO_UP);

	/* a script counts by its bytes */
	struct keys a, b;
	keys_of(canon, &a);
	put("stages/two.sh", "#!/bin/sh\necho two; echo changed\n");
	keys_of(canon, &b);
	assert_string_equal(a.base, b.base);
	assert_string_equal(a.stage[0], b.stage[0]);
	assert_string_not_equal(a.stage[1], b.stage[1]);
	put("stages/one.sh", "#!/bin/sh\necho one; echo changed\n");
	keys_of(canon, &b);
	assert_string_equal(a.base, b.base);
	assert_string_not_equal(a.stage[0], b.stage[0]);
}

/* An unpinned input cannot make a key: the layer would be reused for other bytes. */
static void test_keys_unpinned(void **state)
{
	cleanup_free char *text = variant("sha256 = \"" ABC_HEX "\"", "sha256 = \"unknown\"");
	cleanup_manifest struct ib_manifest *m = parse(text);
	char base[IB_KEY_LEN + 1], stages[2][IB_KEY_LEN + 1];
	ib_error_t err = NULL;
	assert_true(ib_layers_all_keys(m, base, stages, &err) < 0);
	assert_non_null(strstr(err->msg, "stage 'one': download 'blob' has no sha256"));
	assert_int_equal(err->exit_code, IB_EXIT_USAGE);
	ib_error_free(&err);
}

static bool has_entry(const struct ib_strv *env, const char *entry)
{
	for (size_t i = 0; i < env->n; i++)
		if (strcmp(env->v[i], entry) == 0)
			return true;
	return false;
}

static void test_stage_env(void **state)
{
	cleanup_free char *text = variant("FOO = \"1\"", "FOO = \"1\"\nA = \"from env\"\nTZ = \"Europe/Paris\"");
	cleanup_manifest struct ib_manifest *m = parse(text);
	struct ib_strv env = { 0 };
	ib_layers_stage_env(m, &m->stages[0], NULL, &env);
	assert_true(has_entry(&env, "IMGBUILD_STAGE=one"));
	assert_true(has_entry(&env, "SOURCE_DATE_EPOCH=1577836800"));
	assert_true(has_entry(&env, "IMGBUILD_CUDA=10.2"));
	assert_true(has_entry(&env, "FOO=1"));
	assert_true(has_entry(&env, "TZ=Europe/Paris"));	/* [env] over the defaults */
	assert_true(has_entry(&env, "A=1"));			/* the stage's over [env] */
	assert_false(has_entry(&env, "A=from env"));
	/* each name once */
	for (size_t i = 0; i < env.n; i++)
		for (size_t j = i + 1; j < env.n; j++) {
			size_t li = strcspn(env.v[i], "="), lj = strcspn(env.v[j], "=");
			if (li == lj && strncmp(env.v[i], env.v[j], li) == 0)
				fail_msg("'%s' and '%s'", env.v[i], env.v[j]);
		}
	size_t n = env.n;
	for (size_t i = 0; i < env.n; i++)
		assert_null(strstr(env.v[i], "CCACHE_REMOTE_STORAGE="));
	ib_strv_free(&env);

	/* the stage's URL is the proxy's socket (ccremote.h), given by the build */
	ib_layers_stage_env(m, &m->stages[0], "redis+unix:/imgbuild/ccache-remote/sock|read-only", &env);
	assert_true(has_entry(&env, "CCACHE_REMOTE_STORAGE=redis+unix:/imgbuild/ccache-remote/sock|read-only"));
	assert_int_equal(env.n, n + 1);
	ib_strv_free(&env);
}

/* ---- layer folders ---- */

static bool exists(const char *dir, const char *rel)
{
	cleanup_free char *p = ib_path_join(dir, rel);
	return ib_path_exists(p);
}

static void test_begin_commit(void **state)
{
	const char *key = ABC_HEX;
	ib_error_t err = NULL;
	assert_null(ib_layers_lookup(key));
	struct ib_layer_tmp t;
	if (ib_layers_begin(&t, key, true, &err) < 0)
		fail_msg("%s", err->msg);
	cleanup_free char *tmp = xstrdup(t.tmp);
	assert_true(ib_path_exists(t.upper));
	assert_true(ib_path_exists(t.work));
	put("cache/layers/" ABC_HEX ".tmp-x", "");	/* not ours: must survive */
	cleanup_free char *file = ib_path_join(t.upper, "made-by-stage");
	assert_int_equal(ib_write_file_atomic(file, "x", 1, 0644, &err), 0);
	/* not visible while being built */
	assert_null(ib_layers_lookup(key));
	if (ib_layers_commit(&t, &err) < 0)
		fail_msg("%s", err->msg);
	assert_null(t.tmp);	/* freed */
	assert_false(ib_path_exists(tmp));

	cleanup_free char *upper = ib_layers_lookup(key);
	assert_non_null(upper);
	cleanup_free char *path = ib_layers_path(key, &err);
	cleanup_free char *want = ib_path_join(path, "upper");
	assert_string_equal(upper, want);
	assert_true(exists(upper, "made-by-stage"));
	assert_false(exists(path, "ovlwork"));
	cleanup_free char *done = ib_path_join(path, "done");
	size_t len = 0;
	cleanup_free char *text = ib_read_file(done, &len, &err);
	assert_string_equal(text, ABC_HEX "\n");
	/* the layer folder is private: images hold setuid files of untrusted origin */
	cleanup_free char *dir = ib_layers_dir(&err);
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
}

/* A half-made layer (no done marker) is replaced; a complete one is kept and
 * ours dropped. */
static void test_commit_existing(void **state)
{
	const char *key = MSG448_HEX;
	ib_error_t err = NULL;
	cleanup_free char *final = ib_layers_path(key, &err);
	cleanup_free char *half = ib_path_join(final, "upper");
	assert_int_equal(ib_mkdir_p(half, 0755, &err), 0);
	put("cache/layers/" MSG448_HEX "/upper/half", "");
	assert_null(ib_layers_lookup(key));

	struct ib_layer_tmp t;
	assert_int_equal(ib_layers_begin(&t, key, true, &err), 0);
	cleanup_free char *mine = ib_path_join(t.upper, "mine");
	assert_int_equal(ib_write_file_atomic(mine, "1", 1, 0644, &err), 0);
	if (ib_layers_commit(&t, &err) < 0)
		fail_msg("%s", err->msg);
	cleanup_free char *upper = ib_layers_lookup(key);
	assert_non_null(upper);
	assert_true(exists(upper, "mine"));
	assert_false(exists(upper, "half"));

	/* now complete: a second build's result is dropped, the first stays */
	assert_int_equal(ib_layers_begin(&t, key, true, &err), 0);
	cleanup_free char *tmp = xstrdup(t.tmp);
	cleanup_free char *other = ib_path_join(t.upper, "other");
	assert_int_equal(ib_write_file_atomic(other, "2", 1, 0644, &err), 0);
	if (ib_layers_commit(&t, &err) < 0)
		fail_msg("%s", err->msg);
	assert_true(exists(upper, "mine"));
	assert_false(exists(upper, "other"));
	assert_false(ib_path_exists(tmp));
}

static void test_abort_and_sweep(void **state)
{
	ib_error_t err = NULL;
	struct ib_layer_tmp t;
	assert_int_equal(ib_layers_begin(&t, ABC_HEX, false, &err), 0);
	assert_false(ib_path_exists(t.upper));	/* the base makes its root itself */
	cleanup_free char *tmp = xstrdup(t.tmp);
	ib_layers_abort(&t);
	assert_false(ib_path_exists(tmp));
	assert_null(ib_layers_lookup(ABC_HEX));

	/* a PID that is surely gone: a child that has exited and been reaped */
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	cleanup_free char *dead = xasprintf("cache/layers/%s.tmp-%d", ABC_HEX, (int)pid);
	cleanup_free char *live = xasprintf("cache/layers/%s.tmp-%d", MSG448_HEX, (int)getppid());
	cleanup_free char *dead_dir = ib_path_join(project, dead);
	cleanup_free char *live_dir = ib_path_join(project, live);
	cleanup_free char *odd_dir = ib_path_join(project, "cache/layers/short.tmp-1");
	cleanup_free char *junk_dir = xasprintf("%s/cache/layers/%s.tmp-12x", project, ABC_HEX);
	const char *dirs[] = { dead_dir, live_dir, odd_dir, junk_dir };
	for (int i = 0; i < 4; i++) {
		cleanup_free char *inner = ib_path_join(dirs[i], "upper/etc");
		assert_int_equal(ib_mkdir_p(inner, 0755, &err), 0);
	}
	ib_layers_sweep();
	assert_false(ib_path_exists(dead_dir));
	assert_true(ib_path_exists(live_dir));
	assert_true(ib_path_exists(odd_dir));	/* not a key: not the cache's to remove */
	assert_true(ib_path_exists(junk_dir));
}

int main(void)
{
	/* compat.toml (ib_compat_default reads it) comes from the
	 * source tree: build/unit/layers_test -> ../.. */
	unit_use_source_datadir();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keys_stable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_base, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_stages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_unpinned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stage_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_begin_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_existing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_and_sweep, setup, teardown),
	};
	return cmocka_run_group_tests_name("layers", tests, NULL, NULL);
}
