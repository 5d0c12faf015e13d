#pragma once
/* io_uring, spoken through its three system calls (no liburing: one less
 * library to ship in imgbuild-portable). Only this module includes
 * <linux/io_uring.h>.
 *
 * What it offers is the one thing pack needs it for: reading many small
 * files whole. Each file costs open + read + close, three system calls of
 * which this VM charges about 1 us each just for the crossing; queued here
 * they are linked requests (open into a registered slot, read that slot,
 * close it) and a whole batch goes to the kernel in one io_uring_enter.
 * docs/performance.md, section 11, has the measurements. */
#include <stddef.h>

#include "error.h"

struct ib_uring_reads;

/* NULL when the kernel has no io_uring or refuses it (ENOSYS on old kernels,
 * EPERM under kernel.io_uring_disabled, a seccomp filter such as Docker's
 * default profile): the caller then reads with plain system calls. */
struct ib_uring_reads *ib_uring_reads_new(void);
void ib_uring_reads_free(struct ib_uring_reads *u);
void ib_uring_reads_cleanup(struct ib_uring_reads **u);
#define cleanup_uring_reads __attribute__((cleanup(ib_uring_reads_cleanup)))

/* Queues: open PATH under DIRFD without following a symlink in its last
 * component, read exactly LEN (> 0) bytes from its start into BUF, close it.
 * PATH and BUF must stay valid until _wait returns. When the batch is full,
 * it is submitted and waited for first, so this can fail with an earlier
 * file's error. */
int ib_uring_reads_add(struct ib_uring_reads *u, int dirfd, const char *path, void *buf, size_t len, ib_error_t *err);

/* Submits what is queued and waits until every file is read and closed.
 * The first failure, in the order the files were queued, is the error:
 * "open 'PATH'", "read 'PATH'", or "'PATH' shrank while being read" when the
 * file had fewer than LEN bytes. Bytes past LEN are not read. */
int ib_uring_reads_wait(struct ib_uring_reads *u, ib_error_t *err);
