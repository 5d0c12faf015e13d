/* The export's Env (oci.c): the profile.d lines env.sh writes (export
 * NAME='quoted', with '\'' inside) become Env entries over run's PATH and
 * HOME, later files and lines winning; shell code is skipped and counted,
 * never half-translated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "oci.h"
#include "util.h"

static void test_env_from_profile(void **state)
{
	(void)state;
	const char *texts[] = {
		"# Written by imgbuild's env stage from the manifest's [env]. Do not edit.\n"
		"export CUDA_HOME='/usr/local/cuda'\n"
		"export PATH='/usr/local/cuda/bin:/usr/bin:/bin'\n"
		"export MSG='it'\\''s a \"test\" $NOT'\n"
		"  PLAIN=a\\ b  # comment\n",
		"if [ -n \"$BASH\" ]; then PS1='x'; fi\n"
		"export LATER=\"$PATH:/x\"\n"
		"export CUDA_HOME='/opt/cuda'\n"
		"unterminated='abc\n",
	};
	struct ib_strv env = { 0 };
	size_t skipped = 0;
	ib_oci_env_from_profile(texts, 2, &env, &skipped);
	assert_int_equal(env.n, 5);
	assert_string_equal(env.v[0], "PATH=/usr/local/cuda/bin:/usr/bin:/bin");
	assert_string_equal(env.v[1], "HOME=/root");
	assert_string_equal(env.v[2], "CUDA_HOME=/opt/cuda");
	assert_string_equal(env.v[3], "MSG=it's a \"test\" $NOT");
	assert_string_equal(env.v[4], "PLAIN=a b");
	assert_int_equal(skipped, 3);
	ib_strv_free(&env);
}

static void test_env_without_profile(void **state)
{
	(void)state;
	struct ib_strv env = { 0 };
	size_t skipped = 1;
	ib_oci_env_from_profile(NULL, 0, &env, &skipped);
	assert_int_equal(env.n, 2);
	assert_string_equal(env.v[0], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	assert_int_equal(skipped, 0);
	ib_strv_free(&env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_env_from_profile),
		cmocka_unit_test(test_env_without_profile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
