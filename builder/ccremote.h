#pragma once
/* A class's shared compile cache: ccache's redis remote storage, reached by
 * stages through a filtering proxy that imgbuild runs on the host.
 *
 * Stages run the manifest's scripts, so they are not trusted (docs/
 * reliability.md). ccache's own `|read-only` attribute is only a request the
 * stage makes of its ccache: a hostile stage drops it, or talks RESP to the
 * socket itself. So the stage never gets the server: it gets a unix socket
 * (bound read-only at /imgbuild/ccache-remote/sock, which needs no network
 * namespace) whose far end is this proxy. The proxy holds the password,
 * selects the database, and passes on only the commands ccache 4.7 sends
 * (GET and EXISTS on "ccache:" keys; SET and DEL as well when the build may
 * write), refusing anything else by closing the connection. */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"
#include "util.h"

/* Where the stage finds the proxy's socket (a folder: a bind of the folder
 * works whatever the sandbox does with file binds). */
#define IB_CCREMOTE_STAGE_DIR "/imgbuild/ccache-remote"

/* What the user's URL names. */
struct ib_ccremote_target {
	char *host;	/* NULL for a unix socket */
	char *port;	/* "6379" unless given */
	char *path;	/* the unix socket; NULL for TCP */
	char *user;	/* NULL: AUTH with the password alone */
	char *password; /* NULL: no AUTH */
	char *db;	/* NULL: no SELECT */
	char *attrs;	/* ccache attributes kept for the stage ("|connect-timeout=..."), or "" */
	char *shown;	/* the URL with the password replaced by "***", for messages */
};
void ib_ccremote_target_free(struct ib_ccremote_target *t);

/* Parses redis://[[USER:]PASSWORD@]HOST[:PORT][/DB] or
 * redis+unix:[//]/PATH[?db=DB], each with ccache's "|attr=value" suffixes
 * (read-only is dropped: the proxy decides; shards are refused). */
int ib_ccremote_parse(const char *url, struct ib_ccremote_target *t, ib_error_t *err);

/* The URL from the user's configuration: CLI (when not NULL), else
 * $IMGBUILD_CCACHE_REMOTE, else the first line of
 * $XDG_CONFIG_HOME/imgbuild/ccache-remote (~/.config/...). NULL: none.
 * *SOURCE (caller frees) names where it came from, for messages. */
char *ib_ccremote_configured(const char *cli, char **source);

/* The request filter, one per client connection; exposed for the unit test. */
struct ib_ccremote_filter {
	bool writable;
	int state;
	char line[32];
	size_t line_len;
	long long nargs, argi, data_left;
	struct ib_buf cap; /* the bytes of argument 0 or 1 being read */
	char name[16];
	bool decided;
	struct ib_buf held; /* this command's bytes, until it is allowed */
	char *refused;	    /* why, once a command was refused (escaped) */
};
void ib_ccremote_filter_init(struct ib_ccremote_filter *f, bool writable);
void ib_ccremote_filter_free(struct ib_ccremote_filter *f);
/* Feeds N bytes from the client; appends what may go to the server to OUT.
 * Returns -1 once a command is refused (f->refused says why); the
 * connection must then be closed, and nothing of that command was output. */
int ib_ccremote_filter_feed(struct ib_ccremote_filter *f, const char *in, size_t n, struct ib_buf *out);

struct ib_ccremote; /* a running proxy */

/* Checks that the server answers (connect, AUTH, SELECT, PING), then starts
 * the proxy listening on DIR/sock (DIR is made, 0700). Refusals are logged to
 * LOG_PATH. */
struct ib_ccremote *ib_ccremote_start(const char *url, bool writable, const char *dir, const char *log_path, ib_error_t *err);
/* The host folder to bind at IB_CCREMOTE_STAGE_DIR. */
const char *ib_ccremote_dir(const struct ib_ccremote *r);
/* CCACHE_REMOTE_STORAGE for the stage: the socket, "|read-only" unless writable. */
const char *ib_ccremote_stage_url(const struct ib_ccremote *r);
/* The URL for messages, without its password. */
const char *ib_ccremote_shown(const struct ib_ccremote *r);
/* Stops the proxy and its connections, removes DIR; NULL is a no-op.
 * Returns how many lines of refusals the log holds (0 when none). */
int ib_ccremote_stop(struct ib_ccremote *r);
