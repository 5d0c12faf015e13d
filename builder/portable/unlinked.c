/* imgbuild-portable only: stand-ins for the libraries Debian 12 ships no static
 * archive of, so that libcurl.a and libxml2.a link into one static file.
 *
 * - libcurl.a is built with GSS-API (krb5), LDAP (needs sasl2 and GnuTLS, which
 *   needs p11-kit) and RTMP (GnuTLS): no .a for krb5, sasl2 or p11-kit.
 *   builder/fetch.c allows only the http, https and file protocols
 *   (CURLOPT_PROTOCOLS_STR) and never asks for Negotiate authentication, so
 *   libcurl never calls into them.
 * - libxml2.a (pulled in by libarchive's xar writer, which nothing here uses:
 *   imgbuild writes pax only, and pack is not in the portable build) converts
 *   legacy encodings through ICU, whose data alone is 30 MB.
 *
 * Each stand-in fails the way its library reports failure, so a call that
 * should not happen ends in an error message, never in a crash. The names
 * follow Debian 12's libraries (ICU 72); `make portable` lists any symbol
 * still missing, and a new one belongs here only if it is as unreachable. */
#include <stddef.h>
#include <stdint.h>

#define FAIL_INT(name)     \
	int name(void);    \
	int name(void)     \
	{                  \
		return -1; \
	}
#define FAIL_PTR(name)       \
	void *name(void);    \
	void *name(void)     \
	{                    \
		return NULL; \
	}
#define NOTHING(name)    \
	void name(void); \
	void name(void)  \
	{                \
	}

/* GSS-API: GSS_S_FAILURE is (13ul << 16) */
#define GSS_FAIL(name)                  \
	uint32_t name(uint32_t *minor); \
	uint32_t name(uint32_t *minor)  \
	{                               \
		if (minor)              \
			*minor = 0;     \
		return 13u << 16;       \
	}
GSS_FAIL(gss_delete_sec_context)
GSS_FAIL(gss_display_name)
GSS_FAIL(gss_display_status)
GSS_FAIL(gss_import_name)
GSS_FAIL(gss_init_sec_context)
GSS_FAIL(gss_inquire_context)
GSS_FAIL(gss_release_buffer)
GSS_FAIL(gss_release_name)
GSS_FAIL(gss_unwrap)
GSS_FAIL(gss_wrap)
void *GSS_C_NT_HOSTBASED_SERVICE = NULL;

/* RTMP (librtmp): NULL handles, false for every call */
FAIL_PTR(RTMP_Alloc)
NOTHING(RTMP_Close)
FAIL_INT(RTMP_Connect1)
FAIL_INT(RTMP_ConnectStream)
NOTHING(RTMP_Free)
NOTHING(RTMP_Init)
FAIL_INT(RTMP_Read)
NOTHING(RTMP_SetBufferMS)
int RTMP_SetupURL(void);
int RTMP_SetupURL(void)
{
	return 0;
}
FAIL_INT(RTMP_Write)

/* LDAP: -1 is LDAP_SERVER_DOWN-like failure for int results */
NOTHING(ber_bvfree)
NOTHING(ber_free)
NOTHING(ber_memfree)
FAIL_INT(ber_sockbuf_add_io)
FAIL_INT(ldap_abandon_ext)
const char *ldap_err2string(int rc);
const char *ldap_err2string(int rc)
{
	(void)rc;
	return "LDAP is not in imgbuild-portable";
}
NOTHING(ldap_free_urldesc)
FAIL_PTR(ldap_get_attribute_ber)
FAIL_INT(ldap_get_dn_ber)
FAIL_INT(ldap_get_option)
FAIL_INT(ldap_init_fd)
NOTHING(ldap_memfree)
FAIL_INT(ldap_msgfree)
FAIL_INT(ldap_msgtype)
FAIL_INT(ldap_parse_result)
FAIL_INT(ldap_parse_sasl_bind_result)
FAIL_INT(ldap_pvt_url_scheme2proto)
FAIL_INT(ldap_result)
FAIL_INT(ldap_sasl_bind)
FAIL_INT(ldap_search_ext)
FAIL_INT(ldap_set_option)
FAIL_INT(ldap_start_tls)
FAIL_INT(ldap_unbind_ext)
FAIL_INT(ldap_url_parse)

/* ICU converters: ucnv_open reports U_UNSUPPORTED_ERROR (16), libxml2 then
 * says the encoding is unsupported. */
void *ucnv_open_72(const char *name, int *err);
void *ucnv_open_72(const char *name, int *err)
{
	(void)name;
	if (err)
		*err = 16;
	return NULL;
}
NOTHING(ucnv_close_72)
void ucnv_convertEx_72(void);
void ucnv_convertEx_72(void)
{
}
NOTHING(ucnv_setFromUCallBack_72)
NOTHING(ucnv_setToUCallBack_72)
NOTHING(UCNV_FROM_U_CALLBACK_STOP_72)
NOTHING(UCNV_TO_U_CALLBACK_STOP_72)
