/* Output files of the flashgpt verbs (see cli.h): what kind of file a path
 * names decides how it is written.
 *
 * A regular file (or a name not yet taken) is written through a temporary
 * file beside it and renamed over it: readers never see a half-written file
 * and a failed run leaves the old one. Renaming over anything else would
 * replace it, which is how `--out /dev/null` once turned /dev/null into a
 * regular file when run as root; so FIFOs and character devices are opened
 * and written in place, and other kinds are refused. The temporary file is
 * created by mkstemp (mode 0600, so no one else can read a partial result or
 * swap it) and gets the final mode only just before the rename. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static fg_status io_error(const char *path, const char *what, int err)
{
    return cli_fail(FG_ERR_IO, "%s: %s (%s)", path, what, strerror(err));
}

/* The mode a new file gets from open(.., 0666): 0666 less the umask. */
static mode_t new_file_mode(void)
{
    const mode_t mask = umask(0);
    umask(mask);
    return 0666 & ~mask;
}

/* Temporary file in target's folder; o->tmp and o->fd on success. */
static fg_status open_temporary(cli_output *o)
{
    const char *slash = strrchr(o->target, '/');
    const size_t dir_len = slash ? (size_t)(slash - o->target) + 1 : 0;
    const char *base = o->target + dir_len;
    const size_t cap = dir_len + strlen(base) + sizeof ".tmp.XXXXXX" + 1;
    o->tmp = malloc(cap);
    if (o->tmp == NULL) return cli_fail(FG_ERR_OOM, "%s: cannot allocate a file name", o->path);
    /* a hidden name: a listing of the folder does not show a partial file */
    snprintf(o->tmp, cap, "%.*s.%s.tmp.XXXXXX", (int)dir_len, o->target, base);
    o->fd = mkstemp(o->tmp);
    if (o->fd < 0) {
        const int err = errno;
        free(o->tmp);
        o->tmp = NULL;
        return io_error(o->path, "cannot create a temporary file beside it", err);
    }
    (void)fcntl(o->fd, F_SETFD, FD_CLOEXEC);
    return FG_OK;
}

/* A FIFO or character device, opened for writing without creating or
 * truncating anything; fstat confirms the kind of what was opened. */
static fg_status open_in_place(cli_output *o)
{
    o->fd = open(o->target, O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (o->fd < 0) return io_error(o->path, "cannot open for writing", errno);
    struct stat st;
    if (fstat(o->fd, &st) != 0 || !(S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))) {
        close(o->fd);
        o->fd = -1;
        return cli_fail(FG_ERR_IO, "%s: changed kind while being opened; not written", o->path);
    }
    return FG_OK;
}

static fg_status open_by_kind(cli_output *o, const char *path)
{
    struct stat link, st;
    if (path == NULL || path[0] == '\0') return cli_fail(FG_ERR_IO, "empty output path");
    if (lstat(path, &link) != 0) {
        if (errno != ENOENT) return io_error(path, "cannot inspect", errno);
        o->target = strdup(path); /* a new regular file */
        if (o->target == NULL) return cli_fail(FG_ERR_OOM, "%s: out of memory", path);
        return open_temporary(o);
    }
    if (stat(path, &st) != 0)
        return io_error(path, S_ISLNK(link.st_mode) ? "is a symbolic link to nothing; not written"
                                                   : "cannot inspect",
                        errno);
    if (S_ISREG(st.st_mode)) {
        /* through a link: the target is replaced, the link stays a link */
        o->target = S_ISLNK(link.st_mode) ? realpath(path, NULL) : strdup(path);
        if (o->target == NULL) return io_error(path, "cannot resolve", errno);
        return open_temporary(o);
    }
    if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
        o->target = strdup(path);
        if (o->target == NULL) return cli_fail(FG_ERR_OOM, "%s: out of memory", path);
        return open_in_place(o);
    }
    return cli_fail(FG_ERR_IO, "%s: is %s, not a regular file, FIFO or character device; "
                    "not written", path,
                    S_ISDIR(st.st_mode) ? "a folder" : S_ISBLK(st.st_mode) ? "a block device"
                                                                            : "a socket");
}

fg_status cli_output_open(cli_output *o, const char *path)
{
    *o = (cli_output){.fd = -1, .path = path};
    const fg_status status = open_by_kind(o, path);
    if (status != FG_OK) cli_output_abort(o);
    return status;
}

fg_status cli_output_write(cli_output *o, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        const size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        const ssize_t k = write(o->fd, p, chunk);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return io_error(o->path, "cannot write", k < 0 ? errno : EIO);
        p += k;
        n -= (size_t)k;
    }
    return FG_OK;
}

void cli_output_abort(cli_output *o)
{
    if (o->fd >= 0) close(o->fd);
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    free(o->target);
    *o = (cli_output){.fd = -1, .path = o->path};
}

fg_status cli_output_commit(cli_output *o)
{
    fg_status status = FG_OK;
    if (o->tmp) {
        /* the mode the file would have had if written directly: the replaced
         * file's, or a new file's */
        struct stat st;
        const mode_t mode = stat(o->target, &st) == 0 ? (st.st_mode & 0777) : new_file_mode();
        if (fchmod(o->fd, mode) != 0) status = io_error(o->path, "cannot set the mode", errno);
    }
    const int fd = o->fd;
    o->fd = -1;
    if (close(fd) != 0 && status == FG_OK) status = io_error(o->path, "cannot write", errno);
    if (status == FG_OK && o->tmp && rename(o->tmp, o->target) != 0)
        status = io_error(o->path, "cannot move the finished file into place", errno);
    if (status == FG_OK) {
        free(o->tmp); /* renamed: nothing left to remove */
        o->tmp = NULL;
    }
    cli_output_abort(o);
    return status;
}

fg_status cli_write_npy(const char *path, const float *data, int rows, int cols)
{
    /* NumPy format 1.0: magic, version, little-endian header length, then an
     * ASCII dict padded with spaces so that data starts 64-byte aligned. */
    char header[256];
    int len = snprintf(header, sizeof header,
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows,
                       cols);
    const int total = ((10 + len + 1 + 63) / 64) * 64;
    memset(header + len, ' ', (size_t)(total - 10 - len - 1));
    header[total - 10 - 1] = '\n';
    const unsigned short hlen = (unsigned short)(total - 10);
    const unsigned char magic[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                     (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};

    cli_output o;
    CLI_TRY(cli_output_open(&o, path));
    fg_status st = cli_output_write(&o, magic, sizeof magic);
    if (st == FG_OK) st = cli_output_write(&o, header, hlen);
    if (st == FG_OK) st = cli_output_write(&o, data, sizeof(float) * (size_t)rows * (size_t)cols);
    if (st != FG_OK) {
        cli_output_abort(&o);
        return st;
    }
    return cli_output_commit(&o);
}
