/* signify key and signature formats (sign.c), base64, and the listing line
 * format (pack.c). Ed25519 is deterministic, so the committed test key must
 * give exactly the signature signify-openbsd -S -e made with it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pack.h"
#include "sign.h"
#include "unpack.h"
#include "util.h"

#define ZEROS "0000000000000000000000000000000000000000000000000000000000000000"
/* signify-openbsd -S -e -s tests/fixtures/imgbuild-test.sec over "SHA256 (fixture.tar) = ZEROS\n". */
#define SIGNIFY_SIG "RWQH7LhgjHPigt2nGb3RYF2Llx7fnQmJ4JZcno8X5koY7MAeZFQh0Zk4h2gi2s5o1LxUkvWj7OsY547sP2vvQaVtlh/KODTJDwU="

static char tmpdir[] = "/tmp/imgbuild-sign-test.XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	cleanup_free char *cmd = xasprintf("rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_base64(void **state)
{
	(void)state;
	const char *in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	const char *out[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	for (size_t i = 0; i < 7; i++) {
		char enc[32];
		ib_base64_encode((const uint8_t *)in[i], strlen(in[i]), enc, sizeof(enc));
		assert_string_equal(enc, out[i]);
		uint8_t dec[32];
		long n = ib_base64_decode(out[i], strlen(out[i]), dec, sizeof(dec));
		assert_int_equal(n, (long)strlen(in[i]));
		assert_memory_equal(dec, in[i], (size_t)n);
	}
	uint8_t dec[8];
	assert_int_equal(ib_base64_decode("Zm9", 3, dec, sizeof(dec)), -1);
	assert_int_equal(ib_base64_decode("Zm=v", 4, dec, sizeof(dec)), -1);
	assert_int_equal(ib_base64_decode("Zm9v!A==", 8, dec, sizeof(dec)), -1);
	assert_int_equal(ib_base64_decode("Zm9vYmFy", 8, dec, 4), -1);
}

static void test_fixture_matches_signify(void **state)
{
	(void)state;
	ib_error_t err = NULL;
	struct ib_pubkey pub;
	assert_int_equal(ib_sign_read_pubkey("tests/fixtures/imgbuild-test.pub", &pub, &err), 0);
	struct ib_seckey sec;
	assert_int_equal(ib_sign_read_seckey("tests/fixtures/imgbuild-test.sec", &sec, &err), 0);
	assert_memory_equal(pub.keynum, sec.keynum, IB_SIGN_KEYNUM_LEN);
	assert_memory_equal(pub.key, sec.key + 32, IB_ED25519_PUBLIC_LEN);
	explicit_bzero(&sec, sizeof(sec));

	cleanup_free char *sig = xasprintf("%s/fixture.tar.sig", tmpdir);
	assert_int_equal(ib_sign_image("tests/fixtures/imgbuild-test.sec", "fixture.tar", ZEROS, sig, &err), 0);
	size_t len;
	cleanup_free char *text = ib_read_file(sig, &len, &err);
	assert_non_null(text);
	assert_string_equal(text, "untrusted comment: verify with imgbuild-test.pub\n" SIGNIFY_SIG "\n"
				  "SHA256 (fixture.tar) = " ZEROS "\n");
	const struct ib_pubkey *signer = NULL;
	assert_int_equal(ib_sign_verify_image(sig, ZEROS, &pub, 1, &signer, &err), 0);
	assert_ptr_equal(signer, &pub);

	/* Another digest: the signature is for another image. */
	char other[] = ZEROS;
	other[0] = '1';
	assert_int_equal(ib_sign_verify_image(sig, other, &pub, 1, NULL, &err), -1);
	assert_non_null(strstr(err->msg, "another image"));
	ib_error_free(&err);
	free(pub.path);
}

static void test_keygen_sign_verify(void **state)
{
	(void)state;
	ib_error_t err = NULL;
	cleanup_free char *dir = xasprintf("%s/keys", tmpdir);
	assert_int_equal(ib_sign_keygen(dir, "a", &err), 0);
	assert_int_equal(ib_sign_keygen(dir, "b", &err), 0);
	/* Never overwrites. */
	assert_int_equal(ib_sign_keygen(dir, "a", &err), -1);
	ib_error_free(&err);
	assert_int_equal(ib_sign_keygen(dir, "../x", &err), -1);
	ib_error_free(&err);

	cleanup_free char *sec_a = xasprintf("%s/a.sec", dir);
	cleanup_free char *pub_a = xasprintf("%s/a.pub", dir);
	cleanup_free char *pub_b = xasprintf("%s/b.pub", dir);
	struct stat st;
	assert_int_equal(stat(sec_a, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	struct ib_pubkey *keys = xcalloc(2, sizeof(*keys));
	assert_int_equal(ib_sign_read_pubkey(pub_a, &keys[0], &err), 0);
	assert_int_equal(ib_sign_read_pubkey(pub_b, &keys[1], &err), 0);

	cleanup_free char *sig = xasprintf("%s/img.tar.sig", tmpdir);
	char hex[] = ZEROS;
	memcpy(hex, "ab", 2);
	assert_int_equal(ib_sign_image(sec_a, "img.tar", hex, sig, &err), 0);
	const struct ib_pubkey *signer = NULL;
	assert_int_equal(ib_sign_verify_image(sig, hex, keys, 2, &signer, &err), 0);
	assert_ptr_equal(signer, &keys[0]);
	/* Only b trusted: a's signature is by an untrusted key. */
	assert_int_equal(ib_sign_verify_image(sig, hex, &keys[1], 1, NULL, &err), -1);
	assert_non_null(strstr(err->msg, "untrusted key"));
	ib_error_free(&err);

	/* a's keynum on b's key: signify's "wrong key" case must still fail the signature. */
	memcpy(keys[1].keynum, keys[0].keynum, IB_SIGN_KEYNUM_LEN);
	assert_int_equal(ib_sign_verify_image(sig, hex, &keys[1], 1, NULL, &err), -1);
	ib_error_free(&err);

	/* A forged message under a real signature line. */
	size_t len;
	cleanup_free char *text = ib_read_file(sig, &len, &err);
	char *msg = strstr(text, "SHA256 (");
	msg[strlen("SHA256 (img.tar) = ")] = 'c';
	assert_int_equal(ib_write_file_atomic(sig, text, len, 0644, &err), 0);
	assert_int_equal(ib_sign_verify_image(sig, hex, keys, 1, NULL, &err), -1);
	assert_non_null(strstr(err->msg, "signature"));
	ib_error_free(&err);

	/* A corrupt secret key (checksum) is refused before signing. */
	text = (free(text), ib_read_file(sec_a, &len, &err));
	char *b64 = strchr(text, '\n') + 1;
	b64[60] = b64[60] == 'A' ? 'B' : 'A';
	cleanup_free char *bad = xasprintf("%s/bad.sec", tmpdir);
	assert_int_equal(ib_write_file_atomic(bad, text, len, 0600, &err), 0);
	assert_int_equal(ib_sign_image(bad, "img.tar", hex, sig, &err), -1);
	ib_error_free(&err);
	ib_pubkey_list_free(keys, 2);
}

static void test_bad_files(void **state)
{
	(void)state;
	ib_error_t err = NULL;
	struct ib_pubkey pub;
	const char *cases[] = {
		"no comment\nRWQH7LhgjHPigjMpbOvcRKbyQpF6e2+6/xqkLdnQlpK3TGXMMY/OAAfA\n",
		"untrusted comment: x\nRWQH7LhgjHPigjMpbOvcRKbyQpF6e2+6/xqkLdnQlpK3TGXMMY/OAAfA",
		"untrusted comment: x\nRWQH7LhgjHPigjMpbOvcRKbyQpF6e2+6/xqkLdnQlpK3TGXMMY/OAA==\n",
		"untrusted comment: x\nAAAH7LhgjHPigjMpbOvcRKbyQpF6e2+6/xqkLdnQlpK3TGXMMY/OAAfA\n",
		"",
	};
	cleanup_free char *path = xasprintf("%s/bad.pub", tmpdir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(ib_write_file_atomic(path, cases[i], strlen(cases[i]), 0644, &err), 0);
		assert_int_equal(ib_sign_read_pubkey(path, &pub, &err), -1);
		ib_error_free(&err);
	}
}

static void test_listing_roundtrip(void **state)
{
	(void)state;
	struct ib_listing_entry in[] = {
		{ .type = 'd', .mode = 0755, .path = "." },
		{ .type = 'f', .mode = 04755, .uid = 1000, .gid = 50, .size = 3, .sha256 = ZEROS, .path = "./a b\n\\c" },
		{ .type = 'l', .mode = 0777, .path = "./l", .target = "-" },
		{ .type = 'l', .mode = 0777, .path = "./m", .target = "../x y" },
		{ .type = 'h', .mode = 0644, .path = "./h", .target = "./a b\n\\c" },
	};
	struct ib_buf b = { 0 };
	for (size_t i = 0; i < 5; i++)
		ib_listing_append(&b, &in[i]);
	char *buf = b.s;
	assert_non_null(strstr(buf, "./a\\040b\\012\\134c"));
	assert_non_null(strstr(buf, "./l \\055\n"));
	const char *p = buf;
	for (size_t i = 0; i < 5; i++) {
		const char *nl = strchr(p, '\n');
		struct ib_listing_entry out;
		ib_error_t err = NULL;
		assert_int_equal(ib_listing_parse_line(p, (size_t)(nl - p), &out, &err), 0);
		assert_int_equal(out.type, in[i].type);
		assert_int_equal(out.mode, in[i].mode);
		assert_int_equal(out.uid, in[i].uid);
		assert_int_equal(out.size, in[i].size);
		assert_string_equal(out.path, in[i].path);
		if (in[i].target)
			assert_string_equal(out.target, in[i].target);
		else
			assert_null(out.target);
		ib_listing_entry_free(&out);
		p = nl + 1;
	}
	free(buf);
	const char *bad[] = {
		"f 0644 0 0 3 - ./a -",	/* file without a digest */
		"d 0755 0 0 0 " ZEROS " ./d -",	/* digest on a folder */
		"x 0755 0 0 0 - ./d -",	/* type */
		"d 755 0 0 0 - ./d -",	/* mode digits */
		"d 0755 -1 0 0 - ./d -",	/* owner */
		"d 0755 0 0 0 - ./d\\0 -",	/* short escape */
		"d 0755 0 0 0 - ./d\\000 -",	/* NUL */
		"l 0777 0 0 0 - ./l -",	/* link without target */
		"d 0755 0 0 0 - ./d - extra",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ib_listing_entry out;
		ib_error_t err = NULL;
		assert_int_equal(ib_listing_parse_line(bad[i], strlen(bad[i]), &out, &err), -1);
		ib_error_free(&err);
	}
}

/* ib_unpack_cached (for imgbuild run): unpacks once, then hands back the same
 * tree without extracting again; refuses when .sha256 or the signature no
 * longer hold. */
static void test_unpack_cached(void **state)
{
	(void)state;
	ib_error_t err = NULL;
	cleanup_free char *root = xasprintf("%s/croot", tmpdir);
	cleanup_free char *etc = xasprintf("%s/etc", root);
	assert_int_equal(ib_mkdir_p(etc, 0755, &err), 0);
	cleanup_free char *f = xasprintf("%s/hostname", etc);
	assert_int_equal(ib_write_file_atomic(f, "box\n", 4, 0644, &err), 0);
	cleanup_free char *img = xasprintf("%s/c.tar", tmpdir);
	struct ib_pack_opts o = { .root = root, .output = img, .epoch = 1577836800, .sign_key = "tests/fixtures/imgbuild-test.sec" };
	char hex[IB_SHA256_HEX_LEN + 1];
	assert_int_equal(ib_pack(&o, hex, &err), 0);

	cleanup_free char *cache = xasprintf("%s/cache", tmpdir);
	setenv("IMGBUILD_CACHE", cache, 1);
	struct ib_verify_opts vo = { .key = "tests/fixtures/imgbuild-test.pub", .quiet = true };
	char *tree = NULL;
	assert_int_equal(ib_unpack_cached(img, &vo, &tree, &err), 0);
	cleanup_free char *want = xasprintf("%s/images/%s/tree", cache, hex);
	assert_string_equal(tree, want);
	cleanup_free char *got = xasprintf("%s/etc/hostname", tree);
	size_t len;
	cleanup_free char *text = ib_read_file(got, &len, &err);
	assert_string_equal(text, "box\n");
	/* A marker in the tree survives the second call: no second extraction. */
	cleanup_free char *marker = xasprintf("%s/marker", tree);
	assert_int_equal(ib_write_file_atomic(marker, "", 0, 0644, &err), 0);
	free(tree);
	tree = NULL;
	assert_int_equal(ib_unpack_cached(img, &vo, &tree, &err), 0);
	assert_string_equal(tree, want);
	assert_int_equal(access(marker, F_OK), 0);
	free(tree);
	tree = NULL;

	/* Another trusted key only: the cached tree is refused. */
	cleanup_free char *kdir = xasprintf("%s/ckeys", tmpdir);
	assert_int_equal(ib_sign_keygen(kdir, "other", &err), 0);
	cleanup_free char *other = xasprintf("%s/other.pub", kdir);
	struct ib_verify_opts vo2 = { .key = other, .quiet = true };
	assert_int_equal(ib_unpack_cached(img, &vo2, &tree, &err), -1);
	assert_null(tree);
	ib_error_free(&err);

	/* The image changed under its name (same .sha256): verified again, refused. */
	cleanup_free char *sha = xasprintf("%s.sha256", img);
	cleanup_free char *sha_text = ib_read_file(sha, &len, &err);
	FILE *fp = fopen(img, "r+b");
	assert_non_null(fp);
	fseek(fp, 600, SEEK_SET);
	fputc('Z', fp);
	fclose(fp);
	assert_int_equal(ib_unpack_cached(img, &vo, &tree, &err), -1);
	assert_null(tree);
	ib_error_free(&err);
	unsetenv("IMGBUILD_CACHE");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_fixture_matches_signify),
		cmocka_unit_test(test_keygen_sign_verify),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_listing_roundtrip),
		cmocka_unit_test(test_unpack_cached),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
