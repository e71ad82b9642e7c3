/* Safe opening and bounded reading of input files (see input.h). */
#define _POSIX_C_SOURCE 200809L
#define _FILE_OFFSET_BITS 64
#include "input.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t mode)
{
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a plain file";
}

fg_status fgi_open_input(const char *fn, const char *path, int *fd, uint64_t *size)
{
    char reason[128];
    struct stat st;
    *fd = -1;
    *size = 0;
    const int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (f < 0) {
        strerror_r(errno, reason, sizeof reason);
        return fgi_fail(FG_ERR_IO, "%s: %s: cannot open (%s)", fn, path, reason);
    }
    if (fstat(f, &st) != 0) {
        strerror_r(errno, reason, sizeof reason);
        close(f);
        return fgi_fail(FG_ERR_IO, "%s: %s: cannot inspect (%s)", fn, path, reason);
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 0) {
        close(f);
        return fgi_fail(FG_ERR_IO, "%s: %s: is %s, not a regular file", fn, path,
                        kind_of(st.st_mode));
    }
    /* a regular file never blocks; clear the flag anyway so reads are plain */
    const int flags = fcntl(f, F_GETFL);
    if (flags >= 0) (void)fcntl(f, F_SETFL, flags & ~O_NONBLOCK);
    *fd = f;
    *size = (uint64_t)st.st_size;
    return FG_OK;
}

fg_status fgi_check_input_size(const char *fn, const char *path, uint64_t size,
                               uint64_t max_bytes, const char *what)
{
    if (size > max_bytes)
        return fgi_fail(FG_ERR_FORMAT, "%s: %s: is %llu bytes, over the %llu-byte limit for %s",
                        fn, path, (unsigned long long)size, (unsigned long long)max_bytes, what);
    return FG_OK;
}

fg_status fgi_read_input(const char *fn, const char *path, int fd, uint64_t size, char **data)
{
    *data = NULL;
    if (size >= (uint64_t)SIZE_MAX)
        return fgi_fail(FG_ERR_OOM, "%s: %s: %llu bytes do not fit in memory", fn, path,
                        (unsigned long long)size);
    char *buf = NULL;
    FGI_TRY(fgi_alloc(fn, (void **)&buf, (size_t)size + 1, 1));
    size_t done = 0;
    while (done < size) {
        const size_t chunk = size - done < ((size_t)1 << 30) ? (size_t)(size - done) : (size_t)1 << 30;
        const ssize_t k = pread(fd, buf + done, chunk, (off_t)done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            char reason[128] = "the file got shorter";
            if (k < 0) strerror_r(errno, reason, sizeof reason);
            free(buf);
            return fgi_fail(FG_ERR_IO, "%s: %s: cannot read %llu bytes (%s)", fn, path,
                            (unsigned long long)size, reason);
        }
        done += (size_t)k;
    }
    buf[size] = '\0';
    *data = buf;
    return FG_OK;
}

fg_status fgi_load_input(const char *fn, const char *path, uint64_t max_bytes,
                         const char *what, char **data, size_t *len)
{
    int fd;
    uint64_t size;
    *data = NULL;
    *len = 0;
    FGI_TRY(fgi_open_input(fn, path, &fd, &size));
    fg_status st = fgi_check_input_size(fn, path, size, max_bytes, what);
    if (st == FG_OK) st = fgi_read_input(fn, path, fd, size, data);
    close(fd);
    if (st == FG_OK) *len = (size_t)size;
    return st;
}
