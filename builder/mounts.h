#pragma once
/* Mount helpers for the sandbox child. Every mount is recorded in a journal so
 * that a failed setup can be undone newest-first (nested mounts first), and
 * every failure names the path it was about (after libnvidia-container's
 * xfuncs.h). These are only ever called inside a private mount namespace. */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"

struct ib_mount_journal {
	char **targets;
	size_t n, cap;
};

void ib_mount_journal_init(struct ib_mount_journal *j);
/* Detaches every recorded mount, newest first (umount2 MNT_DETACH), then forgets them. */
void ib_mount_journal_undo(struct ib_mount_journal *j);
/* Forgets the records without unmounting (the namespace will take them down). */
void ib_mount_journal_free(struct ib_mount_journal *j);

/* mount(2) that records TARGET in J (when J != NULL and the call is not a remount
 * or a propagation change) and sets *err as "mount 'SRC' on 'TARGET': strerror". */
int ib_xmount(struct ib_mount_journal *j, const char *src, const char *target, const char *fstype, unsigned long flags,
	      const void *data, ib_error_t *err);
int ib_xumount(const char *target, int flags, ib_error_t *err);

/* Bind SRC on DST (recursively) and then apply FLAGS (MS_RDONLY, MS_NOSUID,
 * MS_NODEV, MS_NOEXEC) with a bind remount. The flags the kernel locks on the
 * source mount (those inherited from a more privileged namespace) are kept, or
 * the remount would fail with EPERM in a user namespace. */
int ib_bind_mount(struct ib_mount_journal *j, const char *src, const char *dst, unsigned long flags, ib_error_t *err);
/* The same without MS_REC: mounts below SRC (a USB stick under $HOME/media)
 * stay out of the sandbox. */
int ib_bind_mount_flat(struct ib_mount_journal *j, const char *src, const char *dst, unsigned long flags, ib_error_t *err);
/* Creates DST as a mount point for SRC: an empty folder when SRC is a folder,
 * else an empty file; parents are created with mode 0755. Existing entries are kept. */
int ib_make_mount_point(const char *dst, bool directory, ib_error_t *err);
/* True when PATH is the root of a mount (its mount id differs from its parent's,
 * or it is the same inode as its parent). */
bool ib_is_mount_point(const char *path);

enum ib_in_root_create {
	IB_IN_ROOT_NONE, /* only resolve: a missing entry is ENOENT */
	IB_IN_ROOT_DIR,	 /* create missing folders */
	IB_IN_ROOT_FILE, /* create missing parent folders and an empty file */
};
/* Resolves PATH (absolute, inside the image) under ROOT the way the sandboxed
 * command will see it, so that a symbolic link in the image (`/mnt -> /etc`)
 * can never lead a mount, or a mount point made for it, into the host's tree.
 * With openat2 (Linux >= 5.6) links are followed as if ROOT were '/'
 * (RESOLVE_IN_ROOT); without it every component is opened with O_NOFOLLOW and
 * a link is refused. '..' components are refused. Returns the host path of
 * the result, which has no symbolic link left in it below ROOT, or NULL. */
char *ib_resolve_in_root(const char *root, const char *path, enum ib_in_root_create create, ib_error_t *err);
