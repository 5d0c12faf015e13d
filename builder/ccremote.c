/* The shared compile cache's proxy (ccremote.h says why it exists). */
#include "ccremote.h"
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* Longest command name and key the filter reads before deciding: ccache's
 * keys are "ccache:" and 32 base32 digits. */
#define NAME_MAX_LEN 15
#define KEY_MAX_LEN 256
#define KEY_PREFIX "ccache:"
#define MAX_CONNECTIONS 64

void ib_ccremote_target_free(struct ib_ccremote_target *t)
{
	if (t == NULL)
		return;
	free(t->host);
	free(t->port);
	free(t->path);
	free(t->user);
	if (t->password)
		explicit_bzero(t->password, strlen(t->password));
	free(t->password);
	free(t->db);
	free(t->attrs);
	free(t->shown);
	memset(t, 0, sizeof(*t));
}

static bool all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static const char url_forms[] = "redis://[[USER:]PASSWORD@]HOST[:PORT][/DB] or redis+unix:/PATH[?db=DB] (an http or file backend "
				"would need the stage's network or a writable host folder)";

int ib_ccremote_parse(const char *url, struct ib_ccremote_target *t, ib_error_t *err)
{
	memset(t, 0, sizeof(*t));
	cleanup_free char *copy = xstrdup(url);
	char *bar = strchr(copy, '|');
	struct ib_buf attrs = { 0 };
	ib_buf_adds(&attrs, "");
	if (bar) {
		*bar = '\0';
		char *save = NULL;
		for (char *a = strtok_r(bar + 1, "|", &save); a; a = strtok_r(NULL, "|", &save)) {
			if (strcmp(a, "read-only") == 0)
				continue;
			if (strncmp(a, "connect-timeout=", 16) != 0 && strncmp(a, "operation-timeout=", 18) != 0) {
				ib_buf_free(&attrs);
				return ib_error_usage(err,
						      "ccache remote: attribute '%s' is not supported (connect-timeout, "
						      "operation-timeout and read-only are)",
						      a);
			}
			ib_buf_printf(&attrs, "|%s", a);
		}
	}
	t->attrs = ib_buf_steal(&attrs);

	char *rest;
	if (strncmp(copy, "redis+unix:", 11) == 0) {
		rest = copy + 11;
		if (strncmp(rest, "//", 2) == 0)
			rest += 2;
		char *q = strchr(rest, '?');
		if (q) {
			*q++ = '\0';
			if (strncmp(q, "db=", 3) != 0 || !all_digits(q + 3))
				goto bad;
			t->db = xstrdup(q + 3);
		}
		if (rest[0] != '/')
			goto bad;
		if (strlen(rest) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			ib_ccremote_target_free(t);
			return ib_error_usage(err, "ccache remote: socket path '%s' is too long for a unix socket", rest);
		}
		t->path = xstrdup(rest);
		t->shown = xasprintf("redis+unix:%s%s%s", rest, t->db ? "?db=" : "", t->db ? t->db : "");
		return 0;
	}
	if (strncmp(copy, "redis://", 8) != 0)
		goto bad;
	rest = copy + 8;
	char *at = strrchr(rest, '@');
	if (at) {
		*at = '\0';
		char *colon = strchr(rest, ':');
		if (colon) {
			*colon = '\0';
			if (*rest)
				t->user = xstrdup(rest);
			t->password = xstrdup(colon + 1);
		} else {
			t->password = xstrdup(rest);
		}
		explicit_bzero(rest, strlen(rest) + (colon ? strlen(colon + 1) + 1 : 0));
		rest = at + 1;
	}
	char *slash = strchr(rest, '/');
	if (slash) {
		*slash = '\0';
		if (slash[1]) {
			if (!all_digits(slash + 1))
				goto bad;
			t->db = xstrdup(slash + 1);
		}
	}
	char *colon = strrchr(rest, ':');
	if (colon) {
		*colon = '\0';
		if (!all_digits(colon + 1))
			goto bad;
		t->port = xstrdup(colon + 1);
	} else {
		t->port = xstrdup("6379");
	}
	if (*rest == '\0')
		goto bad;
	t->host = xstrdup(rest);
	t->shown = xasprintf("redis://%s%s%s%s:%s%s%s", t->user ? t->user : "", t->user && !t->password ? "@" : "",
			     t->password ? "***@" : "", t->host, t->port, t->db ? "/" : "", t->db ? t->db : "");
	return 0;
bad:
	ib_ccremote_target_free(t);
	/* The URL may hold a password: show only its scheme. */
	return ib_error_usage(err, "ccache remote: cannot read the URL (scheme '%.*s'); use %s", (int)strcspn(url, ":"), url,
			      url_forms);
}

char *ib_ccremote_configured(const char *cli, char **source)
{
	*source = NULL;
	if (cli && *cli) {
		*source = xstrdup("--ccache-remote");
		return xstrdup(cli);
	}
	const char *env = getenv("IMGBUILD_CCACHE_REMOTE");
	if (env && *env) {
		*source = xstrdup("$IMGBUILD_CCACHE_REMOTE");
		return xstrdup(env);
	}
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	cleanup_free char *path = xdg && *xdg ? xasprintf("%s/imgbuild/ccache-remote", xdg)
					      : xasprintf("%s/.config/imgbuild/ccache-remote", home && *home ? home : "/root");
	ib_error_t err = NULL;
	size_t len = 0;
	cleanup_free char *text = ib_read_file_max(path, 4096, &len, &err);
	if (text == NULL) {
		ib_error_free(&err);
		return NULL;
	}
	text[strcspn(text, "\r\n")] = '\0';
	char *s = text + strspn(text, " \t");
	if (*s == '\0')
		return NULL;
	*source = xstrdup(path);
	return xstrdup(s);
}

/* --- the request filter: RESP arrays of bulk strings, as hiredis sends --- */

enum { F_ARRAY, F_HDR, F_DATA };

void ib_ccremote_filter_init(struct ib_ccremote_filter *f, bool writable)
{
	memset(f, 0, sizeof(*f));
	f->writable = writable;
	f->state = F_ARRAY;
}

void ib_ccremote_filter_free(struct ib_ccremote_filter *f)
{
	ib_buf_free(&f->cap);
	ib_buf_free(&f->held);
	free(f->refused);
	memset(f, 0, sizeof(*f));
}

static int refuse(struct ib_ccremote_filter *f, const char *why, const char *what)
{
	cleanup_free char *w = ib_escape(what ? what : "", false);
	free(f->refused);
	f->refused = xasprintf("%s%s%s", why, what ? ": " : "", what ? w : "");
	return -1;
}

/* The allow list, from the command (upper-cased), its argument count and key. */
static int decide(struct ib_ccremote_filter *f, const char *key)
{
	const char *n = f->name;
	bool keyed = key && strncmp(key, KEY_PREFIX, strlen(KEY_PREFIX)) == 0;
	if (strcmp(n, "PING") == 0 && f->nargs == 1)
		return 0;
	bool read = (strcmp(n, "GET") == 0 || strcmp(n, "EXISTS") == 0) && f->nargs == 2;
	bool write = (strcmp(n, "SET") == 0 && f->nargs == 3) || (strcmp(n, "DEL") == 0 && f->nargs == 2);
	if ((read || write) && !keyed)
		return refuse(f, "a key outside ccache's", key);
	if (read || (write && f->writable))
		return 0;
	if (write)
		return refuse(f, "a write to the read-only remote", n);
	return refuse(f, "a command ccache does not send", n);
}

/* Reads a "<c>NUMBER\r\n" line; 1 when complete, 0 when more is needed, -1 on junk. */
static int take_line(struct ib_ccremote_filter *f, const char **in, size_t *n, char c, long long *value)
{
	while (*n > 0) {
		char ch = **in;
		if (f->line_len >= sizeof(f->line) - 1)
			return -1;
		f->line[f->line_len++] = ch;
		ib_buf_addc(&f->held, ch);
		(*in)++;
		(*n)--;
		if (ch == '\n') {
			f->line[f->line_len] = '\0';
			f->line_len = 0;
			if (f->line[0] != c)
				return -1;
			char *end = NULL;
			errno = 0;
			long long v = strtoll(f->line + 1, &end, 10);
			if (errno || end == f->line + 1 || strcmp(end, "\r\n") != 0 || v < 0)
				return -1;
			*value = v;
			return 1;
		}
	}
	return 0;
}

static void flush_held(struct ib_ccremote_filter *f, struct ib_buf *out)
{
	if (f->held.len)
		ib_buf_add(out, f->held.s, f->held.len);
	f->held.len = 0;
}

int ib_ccremote_filter_feed(struct ib_ccremote_filter *f, const char *in, size_t n, struct ib_buf *out)
{
	if (f->refused)
		return -1;
	while (n > 0) {
		long long v = 0;
		int rc;
		switch (f->state) {
		case F_ARRAY:
			/* Inline commands ("FLUSHALL\r\n") are RESP too: refuse them. */
			rc = take_line(f, &in, &n, '*', &v);
			if (rc < 0)
				return refuse(f, "not a RESP array of bulk strings", NULL);
			if (rc == 0)
				break;
			if (v < 1 || v > 1024)
				return refuse(f, "a command with no or too many arguments", NULL);
			f->nargs = v;
			f->argi = 0;
			f->decided = false;
			f->name[0] = '\0';
			f->state = F_HDR;
			break;
		case F_HDR:
			rc = take_line(f, &in, &n, '$', &v);
			if (rc < 0)
				return refuse(f, "not a RESP array of bulk strings", NULL);
			if (rc == 0)
				break;
			if (!f->decided && ((f->argi == 0 && v > NAME_MAX_LEN) || (f->argi == 1 && v > KEY_MAX_LEN)))
				return refuse(f, f->argi ? "an over-long key" : "an over-long command", NULL);
			f->data_left = v + 2;
			f->cap.len = 0;
			f->state = F_DATA;
			break;
		case F_DATA: {
			size_t take = (unsigned long long)f->data_left < n ? (size_t)f->data_left : n;
			if (f->decided) {
				ib_buf_add(out, in, take);
			} else {
				ib_buf_add(&f->held, in, take);
				ib_buf_add(&f->cap, in, take);
			}
			in += take;
			n -= take;
			f->data_left -= (long long)take;
			if (f->data_left > 0)
				break;
			if (!f->decided) {
				if (f->cap.len < 2 || memcmp(f->cap.s + f->cap.len - 2, "\r\n", 2) != 0)
					return refuse(f, "not a RESP array of bulk strings", NULL);
				f->cap.s[f->cap.len - 2] = '\0';
				if (strlen(f->cap.s) != f->cap.len - 2)
					return refuse(f, "a NUL byte in a command or key", NULL);
				if (f->argi == 0) {
					size_t k;
					for (k = 0; f->cap.s[k]; k++)
						f->name[k] = (f->cap.s[k] >= 'a' && f->cap.s[k] <= 'z') ? f->cap.s[k] - 32
													: f->cap.s[k];
					f->name[k] = '\0';
				}
				if (f->argi == 1 || f->nargs == 1) {
					if (decide(f, f->argi == 1 ? f->cap.s : NULL) < 0) {
						f->held.len = 0;
						return -1;
					}
					f->decided = true;
					flush_held(f, out);
				}
			}
			f->argi++;
			if (f->argi == f->nargs) {
				f->state = F_ARRAY;
				f->decided = false;
				f->held.len = 0;
			} else {
				f->state = F_HDR;
			}
			break;
		}
		}
		if (f->decided && f->held.len)
			flush_held(f, out);
	}
	return 0;
}

/* --- connections --- */

static int connect_target(const struct ib_ccremote_target *t, ib_error_t *err)
{
	if (t->path) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", t->path);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return ib_error_errno(err, errno, "socket");
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			int e = errno;
			close(fd);
			return ib_error_errno(err, e, "connect to '%s'", t->path);
		}
		return fd;
	}
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	int gai = getaddrinfo(t->host, t->port, &hints, &res);
	if (gai != 0)
		return ib_error_set(err, 0, "resolve '%s': %s", t->host, gai_strerror(gai));
	int fd = -1, e = 0;
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return ib_error_errno(err, e, "connect to %s:%s", t->host, t->port);
	return fd;
}

/* Sends one command and reads its one-line reply; a "-ERR" reply fails. */
static int upstream_cmd(int fd, const char *what, const char *const *argv, ib_error_t *err)
{
	struct ib_buf b = { 0 };
	size_t argc = 0;
	while (argv[argc])
		argc++;
	ib_buf_printf(&b, "*%zu\r\n", argc);
	for (size_t i = 0; i < argc; i++) {
		ib_buf_printf(&b, "$%zu\r\n", strlen(argv[i]));
		ib_buf_adds(&b, argv[i]);
		ib_buf_adds(&b, "\r\n");
	}
	int rc = ib_write_all(fd, b.s, b.len) ? 0 : -1;
	explicit_bzero(b.s, b.len);
	ib_buf_free(&b);
	if (rc < 0)
		return ib_error_errno(err, errno, "send %s", what);
	char line[256];
	size_t len = 0;
	for (;;) {
		ssize_t r = read(fd, line + len, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return ib_error_set(err, 0, "%s: the server closed the connection", what);
		if (line[len] == '\n' || len == sizeof(line) - 2)
			break;
		len++;
	}
	line[len] = '\0';
	if (len && line[len - 1] == '\r')
		line[len - 1] = '\0';
	if (line[0] == '-') {
		cleanup_free char *shown = ib_escape(line + 1, false);
		return ib_error_set(err, 0, "%s: %s", what, shown);
	}
	return 0;
}

/* A connection to the server, authenticated and on its database. */
static int open_upstream(const struct ib_ccremote_target *t, ib_error_t *err)
{
	int fd = connect_target(t, err);
	if (fd < 0)
		return -1;
	int rc = 0;
	if (t->password) {
		const char *with_user[] = { "AUTH", t->user, t->password, NULL };
		const char *alone[] = { "AUTH", t->password, NULL };
		rc = upstream_cmd(fd, "AUTH", t->user ? with_user : alone, err);
	}
	if (rc == 0 && t->db) {
		const char *sel[] = { "SELECT", t->db, NULL };
		rc = upstream_cmd(fd, "SELECT", sel, err);
	}
	if (rc < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void log_refusal(int log_fd, const char *why)
{
	if (log_fd < 0)
		return;
	cleanup_free char *line = xasprintf("refused %s\n", why);
	(void)ib_write_all(log_fd, line, strlen(line));
}

/* One client: its requests through the filter, the replies straight back. */
static void serve(int client, const struct ib_ccremote_target *t, bool writable, int log_fd)
{
	ib_error_t err = NULL;
	int up = open_upstream(t, &err);
	if (up < 0) {
		ib_error_free(&err);
		return;
	}
	struct ib_ccremote_filter f;
	ib_ccremote_filter_init(&f, writable);
	struct ib_buf out = { 0 };
	static char buf[65536];
	struct pollfd p[2] = { { .fd = client, .events = POLLIN }, { .fd = up, .events = POLLIN } };
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents) {
			ssize_t r = read(client, buf, sizeof(buf));
			if (r <= 0)
				break;
			out.len = 0;
			if (ib_ccremote_filter_feed(&f, buf, (size_t)r, &out) < 0) {
				log_refusal(log_fd, f.refused);
				break;
			}
			if (out.len && !ib_write_all(up, out.s, out.len))
				break;
		}
		if (p[1].revents) {
			ssize_t r = read(up, buf, sizeof(buf));
			if (r <= 0 || !ib_write_all(client, buf, (size_t)r))
				break;
		}
	}
	ib_buf_free(&out);
	ib_ccremote_filter_free(&f);
	close(up);
}

struct ib_ccremote {
	struct ib_ccremote_target t;
	char *dir, *sock, *log_path, *stage_url;
	pid_t pid;
};

const char *ib_ccremote_dir(const struct ib_ccremote *r)
{
	return r->dir;
}

const char *ib_ccremote_stage_url(const struct ib_ccremote *r)
{
	return r->stage_url;
}

const char *ib_ccremote_shown(const struct ib_ccremote *r)
{
	return r->t.shown;
}

/* In the proxy process (ib_proc_fork: it dies with imgbuild, signals at their
 * defaults, none blocked). */
static void proxy_main(int lfd, int log_fd, struct ib_ccremote *r, bool writable)
{
	/* The proxy must not hold the build's lock or files. */
	for (int fd = 3; fd < 1024; fd++)
		if (fd != lfd && fd != log_fd)
			close(fd);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	/* One process per connection, and a stage opens as many connections as
	 * it likes: past MAX_CONNECTIONS the stage waits for one to end, so a
	 * hostile stage cannot fill the host with processes (one ccache makes
	 * one connection per compile, so `make -j64` still fits). */
	int live = 0;
	for (;;) {
		while (live > 0 && waitpid(-1, NULL, live >= MAX_CONNECTIONS ? 0 : WNOHANG) > 0)
			live--;
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			_exit(1);
		}
		/* Reaped by the loop above: the proxy is the connections' only waiter. */
		pid_t pid = ib_proc_clone(0, IB_PROC_SAME_GROUP | IB_PROC_FROM_CHILD, NULL);
		if (pid == 0) {
			signal(SIGPIPE, SIG_IGN); /* a stage that hangs up is an error, not a death */
			close(lfd);
			serve(c, &r->t, writable, log_fd);
			_exit(0);
		}
		if (pid > 0)
			live++;
		close(c);
	}
}

struct ib_ccremote *ib_ccremote_start(const char *url, bool writable, const char *dir, const char *log_path, ib_error_t *err)
{
	struct ib_ccremote *r = xcalloc(1, sizeof(*r));
	r->pid = -1;
	int lfd = -1, log_fd = -1;
	if (ib_ccremote_parse(url, &r->t, err) < 0) {
		free(r);
		return NULL;
	}
	int up = open_upstream(&r->t, err);
	if (up < 0)
		goto fail;
	const char *ping[] = { "PING", NULL };
	int rc = upstream_cmd(up, "PING", ping, err);
	close(up);
	if (rc < 0)
		goto fail;

	r->dir = xstrdup(dir);
	r->sock = ib_path_join(dir, "sock");
	r->log_path = xstrdup(log_path);
	r->stage_url = xasprintf("redis+unix:" IB_CCREMOTE_STAGE_DIR "/sock%s%s", r->t.attrs, writable ? "" : "|read-only");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(r->sock) >= sizeof(sa.sun_path)) {
		ib_error_usage(err, "the socket path '%s' is too long for a unix socket; use a shorter --build-dir", r->sock);
		goto fail;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", r->sock);
	if (ib_mkdir_p(dir, 0700, err) < 0)
		goto fail;
	unlink(r->sock);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 64) < 0) {
		ib_error_errno(err, errno, "listen on '%s'", r->sock);
		goto fail;
	}
	log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (log_fd < 0) {
		ib_error_errno(err, errno, "open '%s'", log_path);
		goto fail;
	}
	r->pid = ib_proc_fork(err);
	if (r->pid < 0)
		goto fail;
	if (r->pid == 0)
		proxy_main(lfd, log_fd, r, writable);
	close(lfd);
	close(log_fd);
	return r;
fail:
	if (lfd >= 0)
		close(lfd);
	if (log_fd >= 0)
		close(log_fd);
	ib_error_wrap(err, "ccache remote '%s'", r->t.shown);
	ib_ccremote_stop(r);
	return NULL;
}

int ib_ccremote_stop(struct ib_ccremote *r)
{
	if (r == NULL)
		return 0;
	int refused = 0;
	if (r->pid > 0) {
		ib_proc_kill(r->pid);
		ib_error_t err = NULL;
		size_t len = 0;
		cleanup_free char *text = ib_read_file_max(r->log_path, 1 << 20, &len, &err);
		ib_error_free(&err);
		for (size_t i = 0; text && i < len; i++)
			refused += text[i] == '\n';
	}
	if (r->sock)
		unlink(r->sock);
	if (r->dir)
		rmdir(r->dir);
	ib_ccremote_target_free(&r->t);
	free(r->dir);
	free(r->sock);
	free(r->log_path);
	free(r->stage_url);
	free(r);
	return refused;
}
