/* imgbuild-portable only. A static glibc resolves users, groups and host names
 * by dlopen()ing the NSS modules nsswitch.conf names, which must come from the
 * very glibc the binary was linked with (ld warns: "Using 'getaddrinfo' in
 * statically linked applications requires at runtime the shared libraries
 * from the glibc version used for linking"); on Ubuntu 18.04 they come from
 * glibc 2.27 and break. Since glibc 2.34 the "files" and "dns" services are
 * part of libc itself (NEWS 2.34: nss_files and nss_dns moved into libc), so
 * pinning every database to them means nothing is ever loaded. The cost,
 * documented in docs/portable.md: users and hosts known only to LDAP, sssd,
 * systemd-resolved's NSS module or mDNS are not found; /etc/hosts and the
 * DNS servers of /etc/resolv.conf are. */
#include <nss.h>
#include <string.h>

__attribute__((constructor)) static void nss_builtin_only(void)
{
	static const char *const files_only[] = { "passwd",   "group",	   "shadow",   "gshadow", "initgroups",
						  "services", "protocols", "networks", "aliases", "ethers",
						  "netgroup", "publickey", "rpc" };
	for (size_t i = 0; i < sizeof(files_only) / sizeof(files_only[0]); i++)
		__nss_configure_lookup(files_only[i], "files");
	__nss_configure_lookup("hosts", "files dns");
}
