#pragma once
/* A second thread that writes an unpack's small files.
 *
 * Making files is kernel work that scales over cores: two `tar -xf` of the
 * minbase into two folders of a fresh ext4 take the wall time of one. Unpack's
 * own thread parses, copies and makes every file, while the scan's thread
 * (hash.h) keeps the second core busy only part of the time. This thread takes
 * plain regular files (at most IB_UNPACK_WRITER_MAX bytes, no xattrs, no
 * set-id or sticky bit) whose content fits its queue; any other entry, and a
 * file that does not fit, is written by the caller as before, so the caller
 * never waits for this thread except where it must (hard links, the end).
 * docs/performance.md, section 12, has the measurements. */
#include <stdbool.h>

#include "error.h"
#include "ib_archive.h"

#define IB_UNPACK_WRITER_MAX (64 << 10)

struct ib_unpack_writer;

/* Writes below the folder INTO (not owned; it must outlive the writer), never
 * through a symlink and never over an existing name. KEEP_OWNERS: each file
 * gets its entry's owner (root). NULL when the thread cannot start. */
struct ib_unpack_writer *ib_unpack_writer_new(int into, bool keep_owners);

/* Room for E's content (E->size bytes, for the caller to fill), or NULL when
 * the thread does not take E or its queue is full. PATH is relative to INTO.
 * Then exactly one of _commit (the content is complete) or _cancel. */
void *ib_unpack_writer_reserve(struct ib_unpack_writer *w, const struct ib_tar_entry *e, const char *path);
void ib_unpack_writer_commit(struct ib_unpack_writer *w);
void ib_unpack_writer_cancel(struct ib_unpack_writer *w);

/* Writes committed files on the caller's thread too, beside the thread,
 * until every one is on disk with its mode, owner and times. The error is
 * the failure of the first failing file in the queue ("'PATH': ..."); the
 * files before it are written, and no file after it is started once the
 * failure is known (one the other taker already had in hand may be). */
int ib_unpack_writer_drain(struct ib_unpack_writer *w, ib_error_t *err);

/* How many files were written from the queue (by the thread, or by the
 * caller in a drain, which takes from the queue too). */
size_t ib_unpack_writer_files(const struct ib_unpack_writer *w);

/* Stops the thread (after what is committed) and frees. */
void ib_unpack_writer_free(struct ib_unpack_writer *w);
void ib_unpack_writer_cleanup(struct ib_unpack_writer **w);
#define cleanup_unpack_writer __attribute__((cleanup(ib_unpack_writer_cleanup)))
