/*
 * recorder: an LD_PRELOAD shim that records what a process writes to the
 * files of one folder, so that a power cut can be replayed afterwards.
 *
 * With POWERLOSS_DIR=<folder> and POWERLOSS_LOG=<file> set, every call below
 * that touches a file inside the folder (not in its subfolders) is appended to
 * the log, and the real call is made. Without them every call passes through.
 *
 * A lock is held across each call and its records, so the log order is the
 * order in which the calls took effect. A change (create, write, truncate,
 * unlink) is recorded before the real call, and followed by OP_FAILED when
 * the call did less than asked (a short write) or nothing; a sync is
 * recorded after it returned 0. So a process killed at any moment leaves a
 * log that either matches the files exactly or holds one last change that
 * may not have been made: one that no sync covers, which a power cut a moment
 * later could have kept anyway. A sync that returned but whose record was
 * lost to the kill only makes the replay more pessimistic than the disk.
 *
 * A record is one write(2) to a file opened with O_APPEND: a fixed header
 * (little-endian), then the file's name relative to the folder, then the
 * data. A process killed mid-record leaves a short last record, which the
 * reader drops. The layout is mirrored in src/log.rs.
 *
 *   u32 magic "PLRC" | u8 op | u8 call | u16 name_len | u32 data_len |
 *   u32 pad | u64 arg | name | data
 *
 * Calls we do not model but that would change a recorded file behind our
 * back (pwritev, fallocate, rename, a writable shared mapping ...) are
 * recorded as OP_UNMODELLED, so that a replay refuses to build images from a
 * log it cannot trust instead of building wrong ones.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* Operations: keep in step with `Op` in src/log.rs. */
enum {
    OP_OPEN = 1,        /* arg: open flags */
    OP_CREATE = 2,      /* the open created the file */
    OP_WRITE = 3,       /* arg: offset; data: the bytes written */
    OP_TRUNCATE = 4,    /* arg: new length */
    OP_SYNC = 5,        /* fsync/fdatasync of a file returned 0 */
    OP_DIR_SYNC = 6,    /* fsync/fdatasync of the folder itself returned 0 */
    OP_CLOSE = 7,
    OP_UNLINK = 8,
    OP_MAP = 9,         /* arg: prot | flags << 32; a shared writable mapping */
    OP_UNMODELLED = 10, /* a call that changes the file in a way not replayed */
    OP_FAILED = 11,     /* the change just recorded did only `arg` bytes (a
                           write) or nothing (anything else) */
};

/* Which libc function was called: keep in step with `Call` in src/log.rs. */
enum {
    CALL_OPEN = 1, CALL_OPEN64, CALL_OPENAT, CALL_OPENAT64, CALL_OPEN_2,
    CALL_OPEN64_2, CALL_OPENAT_2, CALL_OPENAT64_2, CALL_CREAT, CALL_CREAT64,
    CALL_PWRITE, CALL_PWRITE64, CALL_WRITE, CALL_PWRITEV, CALL_PWRITEV64,
    CALL_PWRITEV2, CALL_WRITEV, CALL_FTRUNCATE, CALL_FTRUNCATE64,
    CALL_TRUNCATE, CALL_TRUNCATE64, CALL_FSYNC, CALL_FDATASYNC,
    CALL_SYNC_FILE_RANGE, CALL_CLOSE, CALL_UNLINK, CALL_UNLINKAT,
    CALL_RENAME, CALL_RENAMEAT, CALL_RENAMEAT2, CALL_MMAP, CALL_MMAP64,
    CALL_FALLOCATE, CALL_FALLOCATE64, CALL_POSIX_FALLOCATE,
    CALL_POSIX_FALLOCATE64, CALL_COPY_FILE_RANGE, CALL_SENDFILE,
};

#define MAGIC 0x43524c50u /* "PLRC" read as little-endian bytes */
#define MAX_FD 4096

enum { KIND_NONE = 0, KIND_FILE = 1, KIND_DIR = 2 };

struct tracked {
    char *name; /* relative to the folder; "" for the folder itself */
    int kind;
    int append; /* opened with O_APPEND: writes go to the end */
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int enabled;
static int log_fd = -1;
static char folder[PATH_MAX];
static size_t folder_len;
static struct tracked fds[MAX_FD];

#define REAL(ret, name, ...) static ret (*real_##name)(__VA_ARGS__)
REAL(int, open, const char *, int, ...);
REAL(int, open64, const char *, int, ...);
REAL(int, openat, int, const char *, int, ...);
REAL(int, openat64, int, const char *, int, ...);
REAL(int, __open_2, const char *, int);
REAL(int, __open64_2, const char *, int);
REAL(int, __openat_2, int, const char *, int);
REAL(int, __openat64_2, int, const char *, int);
REAL(int, creat, const char *, mode_t);
REAL(int, creat64, const char *, mode_t);
REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
REAL(ssize_t, pwrite64, int, const void *, size_t, off64_t);
REAL(ssize_t, write, int, const void *, size_t);
REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
REAL(ssize_t, pwritev64, int, const struct iovec *, int, off64_t);
REAL(ssize_t, pwritev2, int, const struct iovec *, int, off_t, int);
REAL(ssize_t, writev, int, const struct iovec *, int);
REAL(int, ftruncate, int, off_t);
REAL(int, ftruncate64, int, off64_t);
REAL(int, truncate, const char *, off_t);
REAL(int, truncate64, const char *, off64_t);
REAL(int, fsync, int);
REAL(int, fdatasync, int);
REAL(int, sync_file_range, int, off64_t, off64_t, unsigned int);
REAL(int, close, int);
REAL(int, unlink, const char *);
REAL(int, unlinkat, int, const char *, int);
REAL(int, rename, const char *, const char *);
REAL(int, renameat, int, const char *, int, const char *);
REAL(int, renameat2, int, const char *, int, const char *, unsigned int);
REAL(void *, mmap, void *, size_t, int, int, int, off_t);
REAL(void *, mmap64, void *, size_t, int, int, int, off64_t);
REAL(int, fallocate, int, int, off_t, off_t);
REAL(int, fallocate64, int, int, off64_t, off64_t);
REAL(int, posix_fallocate, int, off_t, off_t);
REAL(int, posix_fallocate64, int, off64_t, off64_t);
REAL(ssize_t, copy_file_range, int, off64_t *, int, off64_t *, size_t, unsigned int);
REAL(ssize_t, sendfile, int, int, off_t *, size_t);

#define RESOLVE(name) real_##name = dlsym(RTLD_NEXT, #name)

static void init(void) {
    RESOLVE(open); RESOLVE(open64); RESOLVE(openat); RESOLVE(openat64);
    RESOLVE(__open_2); RESOLVE(__open64_2); RESOLVE(__openat_2);
    RESOLVE(__openat64_2); RESOLVE(creat); RESOLVE(creat64);
    RESOLVE(pwrite); RESOLVE(pwrite64); RESOLVE(write); RESOLVE(pwritev);
    RESOLVE(pwritev64); RESOLVE(pwritev2); RESOLVE(writev);
    RESOLVE(ftruncate); RESOLVE(ftruncate64); RESOLVE(truncate);
    RESOLVE(truncate64); RESOLVE(fsync); RESOLVE(fdatasync);
    RESOLVE(sync_file_range); RESOLVE(close); RESOLVE(unlink);
    RESOLVE(unlinkat); RESOLVE(rename); RESOLVE(renameat); RESOLVE(renameat2);
    RESOLVE(mmap); RESOLVE(mmap64); RESOLVE(fallocate); RESOLVE(fallocate64);
    RESOLVE(posix_fallocate); RESOLVE(posix_fallocate64);
    RESOLVE(copy_file_range); RESOLVE(sendfile);

    const char *dir = getenv("POWERLOSS_DIR");
    const char *log = getenv("POWERLOSS_LOG");
    if (!dir || !log || !*dir || !*log || !real_open)
        return;
    /* Paths are compared after resolving symlinks in the folder's own path
     * (a temporary folder is often reached through one). */
    if (!realpath(dir, folder))
        return;
    folder_len = strlen(folder);
    log_fd = real_open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0)
        return;
    enabled = 1;
}

static void ensure_init(void) { pthread_once(&once, init); }

/* Writes the whole buffer to the log; a short write is retried so that only a
 * kill can leave a record short. */
static void log_bytes(const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = real_write(log_fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Appends one record; the caller holds the lock. One buffer, one write, so
 * a kill leaves at most the last record short. */
static void record(int op, int call, const char *name, uint64_t arg,
                   const void *data, size_t data_len) {
    size_t name_len = strlen(name);
    if (name_len > 0xffff || data_len > 0xffffffffu)
        return;
    size_t total = 24 + name_len + data_len;
    unsigned char stack[24 + 512];
    unsigned char *buf = total <= sizeof stack ? stack : malloc(total);
    if (!buf)
        return;
    put32(buf, MAGIC);
    buf[4] = (unsigned char)op;
    buf[5] = (unsigned char)call;
    buf[6] = (unsigned char)(name_len & 0xff);
    buf[7] = (unsigned char)(name_len >> 8);
    put32(buf + 8, (uint32_t)data_len);
    put32(buf + 12, 0);
    put64(buf + 16, arg);
    memcpy(buf + 24, name, name_len);
    if (data_len)
        memcpy(buf + 24 + name_len, data, data_len);
    log_bytes(buf, total);
    if (buf != stack)
        free(buf);
}

/* The name of `path` (relative to `dirfd`) inside the folder, in `out`: ""
 * for the folder itself. Returns 0 when the path is outside the folder, or in
 * a subfolder of it. */
static int name_in_folder(int dirfd, const char *path, char *out) {
    char full[PATH_MAX * 2];
    if (!path)
        return 0;
    if (path[0] == '/') {
        if (strlen(path) >= sizeof full) return 0;
        strcpy(full, path);
    } else {
        char base[PATH_MAX];
        if (dirfd == AT_FDCWD) {
            if (!getcwd(base, sizeof base)) return 0;
        } else {
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
            ssize_t n = readlink(link, base, sizeof base - 1);
            if (n < 0) return 0;
            base[n] = 0;
        }
        if (strlen(base) + strlen(path) + 2 >= sizeof full) return 0;
        strcpy(full, base);
        strcat(full, "/");
        strcat(full, path);
    }
    /* Drop "/./" and trailing "/" so the folder matches however it is named. */
    size_t len = strlen(full);
    while (len > 1 && full[len - 1] == '/') full[--len] = 0;
    if (len >= 2 && full[len - 1] == '.' && full[len - 2] == '/') full[len -= 2] = 0;
    if (strncmp(full, folder, folder_len) != 0)
        return 0;
    const char *rest = full + folder_len;
    if (*rest == 0) {
        out[0] = 0;
        return 1;
    }
    if (*rest != '/')
        return 0;
    rest++;
    if (*rest == 0 || strchr(rest, '/') || strlen(rest) >= PATH_MAX)
        return 0;
    strcpy(out, rest);
    return 1;
}

static struct tracked *tracked(int fd) {
    if (fd < 0 || fd >= MAX_FD) return NULL;
    return fds[fd].kind == KIND_NONE ? NULL : &fds[fd];
}

/* Forgets a stale entry: an fd closed by a call we do not see (stdio, dup2)
 * and now reused for a file outside the folder. */
static void forget(int fd) {
    if (fd >= 0 && fd < MAX_FD && fds[fd].kind != KIND_NONE) {
        free(fds[fd].name);
        fds[fd].name = NULL;
        fds[fd].kind = KIND_NONE;
    }
}

/* The common part of every open: `do_open` makes the real call. */
#define OPEN_BODY(call, dirfd, path, flags, do_open)                           \
    ensure_init();                                                             \
    char name[PATH_MAX];                                                       \
    if (!enabled || !name_in_folder(dirfd, path, name)) {                      \
        int fd_ = do_open;                                                     \
        if (enabled && fd_ >= 0 && tracked(fd_)) {                             \
            pthread_mutex_lock(&lock);                                         \
            forget(fd_);                                                       \
            pthread_mutex_unlock(&lock);                                       \
        }                                                                      \
        return fd_;                                                            \
    }                                                                          \
    pthread_mutex_lock(&lock);                                                 \
    struct stat before_;                                                       \
    int existed_ = fstatat(dirfd, path, &before_, 0) == 0;                     \
    int intent_ = 0;                                                           \
    if (!existed_ && ((flags) & O_CREAT)) {                                    \
        record(OP_CREATE, call, name, 0, NULL, 0);                             \
        intent_ = 1;                                                           \
    } else if (existed_ && S_ISREG(before_.st_mode) && ((flags) & O_TRUNC)) {  \
        record(OP_TRUNCATE, call, name, 0, NULL, 0);                           \
        intent_ = 1;                                                           \
    }                                                                          \
    int fd_ = do_open;                                                         \
    int saved_ = errno;                                                        \
    if (fd_ < 0 && intent_)                                                    \
        record(OP_FAILED, call, name, 0, NULL, 0);                             \
    if (fd_ >= 0) {                                                            \
        forget(fd_);                                                           \
        struct stat st_;                                                       \
        int is_dir_ = fstat(fd_, &st_) == 0 && S_ISDIR(st_.st_mode);           \
        if (fd_ < MAX_FD) {                                                    \
            fds[fd_].name = strdup(name);                                      \
            fds[fd_].kind = is_dir_ ? KIND_DIR : KIND_FILE;                    \
            fds[fd_].append = ((flags) & O_APPEND) != 0;                       \
        } else {                                                               \
            record(OP_UNMODELLED, call, name, (uint64_t)fd_, NULL, 0);         \
        }                                                                      \
        record(OP_OPEN, call, name, (uint64_t)(unsigned)(flags), NULL, 0);     \
    }                                                                          \
    pthread_mutex_unlock(&lock);                                               \
    errno = saved_;                                                            \
    return fd_;

static mode_t mode_arg(int flags, va_list ap) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t mode = mode_arg(flags, ap); va_end(ap);
    OPEN_BODY(CALL_OPEN, AT_FDCWD, path, flags, real_open(path, flags, mode))
}

int open64(const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t mode = mode_arg(flags, ap); va_end(ap);
    OPEN_BODY(CALL_OPEN64, AT_FDCWD, path, flags, real_open64(path, flags, mode))
}

int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t mode = mode_arg(flags, ap); va_end(ap);
    OPEN_BODY(CALL_OPENAT, dirfd, path, flags, real_openat(dirfd, path, flags, mode))
}

int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t mode = mode_arg(flags, ap); va_end(ap);
    OPEN_BODY(CALL_OPENAT64, dirfd, path, flags, real_openat64(dirfd, path, flags, mode))
}

int __open_2(const char *path, int flags) {
    OPEN_BODY(CALL_OPEN_2, AT_FDCWD, path, flags, real___open_2(path, flags))
}

int __open64_2(const char *path, int flags) {
    OPEN_BODY(CALL_OPEN64_2, AT_FDCWD, path, flags, real___open64_2(path, flags))
}

int __openat_2(int dirfd, const char *path, int flags) {
    OPEN_BODY(CALL_OPENAT_2, dirfd, path, flags, real___openat_2(dirfd, path, flags))
}

int __openat64_2(int dirfd, const char *path, int flags) {
    OPEN_BODY(CALL_OPENAT64_2, dirfd, path, flags, real___openat64_2(dirfd, path, flags))
}

int creat(const char *path, mode_t mode) {
    OPEN_BODY(CALL_CREAT, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, real_creat(path, mode))
}

int creat64(const char *path, mode_t mode) {
    OPEN_BODY(CALL_CREAT64, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, real_creat64(path, mode))
}

/* After a change was recorded and made: says how much of it was made. */
static void settle(int call, const char *name, size_t asked, ssize_t done) {
    if (done < 0 || (size_t)done != asked)
        record(OP_FAILED, call, name, done > 0 ? (uint64_t)done : 0, NULL, 0);
}

/* A write at a known offset: its record, then the real call. */
#define PWRITE_BODY(call, fd, buf, count, off, do_write)                       \
    ensure_init();                                                             \
    if (!enabled || !tracked(fd)) return do_write;                             \
    pthread_mutex_lock(&lock);                                                 \
    struct tracked *t_ = tracked(fd);                                          \
    if (t_) record(OP_WRITE, call, t_->name, (uint64_t)(off), buf, count);     \
    ssize_t n_ = do_write;                                                     \
    int saved_ = errno;                                                        \
    if (t_) settle(call, t_->name, count, n_);                                 \
    pthread_mutex_unlock(&lock);                                               \
    errno = saved_;                                                            \
    return n_;

ssize_t pwrite(int fd, const void *buf, size_t count, off_t off) {
    PWRITE_BODY(CALL_PWRITE, fd, buf, count, off, real_pwrite(fd, buf, count, off))
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t off) {
    PWRITE_BODY(CALL_PWRITE64, fd, buf, count, off, real_pwrite64(fd, buf, count, off))
}

ssize_t write(int fd, const void *buf, size_t count) {
    ensure_init();
    if (!enabled || !tracked(fd)) return real_write(fd, buf, count);
    pthread_mutex_lock(&lock);
    struct tracked *t = tracked(fd);
    off_t off = -1;
    if (t && t->append) {
        struct stat st;
        if (fstat(fd, &st) == 0) off = st.st_size;
    } else if (t) {
        off = lseek(fd, 0, SEEK_CUR);
    }
    if (t && off >= 0)
        record(OP_WRITE, CALL_WRITE, t->name, (uint64_t)off, buf, count);
    else if (t)
        record(OP_UNMODELLED, CALL_WRITE, t->name, 0, NULL, 0);
    ssize_t n = real_write(fd, buf, count);
    int saved = errno;
    if (t && off >= 0)
        settle(CALL_WRITE, t->name, count, n);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return n;
}

/* Vectored and in-kernel copies are not replayed: recorded as unmodelled. */
#define UNMODELLED_FD_BODY(call, fd, do_call)                                  \
    ensure_init();                                                             \
    if (!enabled || !tracked(fd)) return do_call;                              \
    pthread_mutex_lock(&lock);                                                 \
    __typeof__(do_call) r_ = do_call;                                          \
    int saved_ = errno;                                                        \
    struct tracked *t_ = tracked(fd);                                          \
    if (t_) record(OP_UNMODELLED, call, t_->name, 0, NULL, 0);                 \
    pthread_mutex_unlock(&lock);                                               \
    errno = saved_;                                                            \
    return r_;

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off) {
    UNMODELLED_FD_BODY(CALL_PWRITEV, fd, real_pwritev(fd, iov, n, off))
}

ssize_t pwritev64(int fd, const struct iovec *iov, int n, off64_t off) {
    UNMODELLED_FD_BODY(CALL_PWRITEV64, fd, real_pwritev64(fd, iov, n, off))
}

ssize_t pwritev2(int fd, const struct iovec *iov, int n, off_t off, int flags) {
    UNMODELLED_FD_BODY(CALL_PWRITEV2, fd, real_pwritev2(fd, iov, n, off, flags))
}

ssize_t writev(int fd, const struct iovec *iov, int n) {
    UNMODELLED_FD_BODY(CALL_WRITEV, fd, real_writev(fd, iov, n))
}

int fallocate(int fd, int mode, off_t off, off_t len) {
    UNMODELLED_FD_BODY(CALL_FALLOCATE, fd, real_fallocate(fd, mode, off, len))
}

int fallocate64(int fd, int mode, off64_t off, off64_t len) {
    UNMODELLED_FD_BODY(CALL_FALLOCATE64, fd, real_fallocate64(fd, mode, off, len))
}

int posix_fallocate(int fd, off_t off, off_t len) {
    UNMODELLED_FD_BODY(CALL_POSIX_FALLOCATE, fd, real_posix_fallocate(fd, off, len))
}

int posix_fallocate64(int fd, off64_t off, off64_t len) {
    UNMODELLED_FD_BODY(CALL_POSIX_FALLOCATE64, fd, real_posix_fallocate64(fd, off, len))
}

int sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags) {
    /* Syncs part of a file without its metadata: not a durable point. */
    UNMODELLED_FD_BODY(CALL_SYNC_FILE_RANGE, fd, real_sync_file_range(fd, off, n, flags))
}

ssize_t copy_file_range(int in, off64_t *in_off, int out, off64_t *out_off,
                        size_t len, unsigned int flags) {
    UNMODELLED_FD_BODY(CALL_COPY_FILE_RANGE, out,
                       real_copy_file_range(in, in_off, out, out_off, len, flags))
}

ssize_t sendfile(int out, int in, off_t *off, size_t count) {
    UNMODELLED_FD_BODY(CALL_SENDFILE, out, real_sendfile(out, in, off, count))
}

#define FTRUNCATE_BODY(call, fd, len, do_call)                                 \
    ensure_init();                                                             \
    if (!enabled || !tracked(fd)) return do_call;                              \
    pthread_mutex_lock(&lock);                                                 \
    struct tracked *t_ = tracked(fd);                                          \
    if (t_) record(OP_TRUNCATE, call, t_->name, (uint64_t)(len), NULL, 0);     \
    int r_ = do_call;                                                          \
    int saved_ = errno;                                                        \
    if (r_ != 0 && t_) record(OP_FAILED, call, t_->name, 0, NULL, 0);          \
    pthread_mutex_unlock(&lock);                                               \
    errno = saved_;                                                            \
    return r_;

int ftruncate(int fd, off_t len) {
    FTRUNCATE_BODY(CALL_FTRUNCATE, fd, len, real_ftruncate(fd, len))
}

int ftruncate64(int fd, off64_t len) {
    FTRUNCATE_BODY(CALL_FTRUNCATE64, fd, len, real_ftruncate64(fd, len))
}

#define TRUNCATE_BODY(call, path, len, do_call)                                \
    ensure_init();                                                             \
    char name[PATH_MAX];                                                       \
    if (!enabled || !name_in_folder(AT_FDCWD, path, name)) return do_call;     \
    pthread_mutex_lock(&lock);                                                 \
    record(OP_TRUNCATE, call, name, (uint64_t)(len), NULL, 0);                 \
    int r_ = do_call;                                                          \
    int saved_ = errno;                                                        \
    if (r_ != 0) record(OP_FAILED, call, name, 0, NULL, 0);                    \
    pthread_mutex_unlock(&lock);                                               \
    errno = saved_;                                                            \
    return r_;

int truncate(const char *path, off_t len) {
    TRUNCATE_BODY(CALL_TRUNCATE, path, len, real_truncate(path, len))
}

int truncate64(const char *path, off64_t len) {
    TRUNCATE_BODY(CALL_TRUNCATE64, path, len, real_truncate64(path, len))
}

/* A sync is recorded only once it has returned 0: from then on the disk
 * holds what the file held when it was called. */
#define SYNC_BODY(call, fd, do_call)                                           \
    ensure_init();                                                             \
    if (!enabled || !tracked(fd)) return do_call;                              \
    pthread_mutex_lock(&lock);                                                 \
    int r_ = do_call;                                                          \
    int saved_ = errno;                                                        \
    struct tracked *t_ = tracked(fd);                                          \
    if (r_ == 0 && t_)                                                         \
        record(t_->kind == KIND_DIR ? OP_DIR_SYNC : OP_SYNC, call, t_->name, 0, NULL, 0); \
    pthread_mutex_unlock(&lock);                                               \
    errno = saved_;                                                            \
    return r_;

int fsync(int fd) { SYNC_BODY(CALL_FSYNC, fd, real_fsync(fd)) }

int fdatasync(int fd) { SYNC_BODY(CALL_FDATASYNC, fd, real_fdatasync(fd)) }

int close(int fd) {
    ensure_init();
    if (!enabled || !tracked(fd)) return real_close(fd);
    pthread_mutex_lock(&lock);
    struct tracked *t = tracked(fd);
    if (t) {
        record(OP_CLOSE, CALL_CLOSE, t->name, 0, NULL, 0);
        /* Forget the fd before the real close: once closed, another thread
         * may be given the same number for a file outside the folder. */
        forget(fd);
    }
    int r = real_close(fd);
    int saved = errno;
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

#define UNLINK_BODY(call, dirfd, path, do_call)                                \
    ensure_init();                                                             \
    char name[PATH_MAX];                                                       \
    if (!enabled || !name_in_folder(dirfd, path, name)) return do_call;        \
    pthread_mutex_lock(&lock);                                                 \
    record(OP_UNLINK, call, name, 0, NULL, 0);                                 \
    int r_ = do_call;                                                          \
    int saved_ = errno;                                                        \
    if (r_ != 0) record(OP_FAILED, call, name, 0, NULL, 0);                    \
    pthread_mutex_unlock(&lock);                                               \
    errno = saved_;                                                            \
    return r_;

int unlink(const char *path) { UNLINK_BODY(CALL_UNLINK, AT_FDCWD, path, real_unlink(path)) }

int unlinkat(int dirfd, const char *path, int flags) {
    UNLINK_BODY(CALL_UNLINKAT, dirfd, path, real_unlinkat(dirfd, path, flags))
}

/* A rename into or out of the folder is not replayed. */
#define RENAME_BODY(call, olddir, oldp, newdir, newp, do_call)                 \
    ensure_init();                                                             \
    char from_[PATH_MAX], to_[PATH_MAX];                                       \
    int in_from_ = enabled && name_in_folder(olddir, oldp, from_);             \
    int in_to_ = enabled && name_in_folder(newdir, newp, to_);                 \
    if (!in_from_ && !in_to_) return do_call;                                  \
    pthread_mutex_lock(&lock);                                                 \
    int r_ = do_call;                                                          \
    int saved_ = errno;                                                        \
    if (r_ == 0) record(OP_UNMODELLED, call, in_to_ ? to_ : from_, 0, NULL, 0); \
    pthread_mutex_unlock(&lock);                                               \
    errno = saved_;                                                            \
    return r_;

int rename(const char *oldp, const char *newp) {
    RENAME_BODY(CALL_RENAME, AT_FDCWD, oldp, AT_FDCWD, newp, real_rename(oldp, newp))
}

int renameat(int olddir, const char *oldp, int newdir, const char *newp) {
    RENAME_BODY(CALL_RENAMEAT, olddir, oldp, newdir, newp,
                real_renameat(olddir, oldp, newdir, newp))
}

int renameat2(int olddir, const char *oldp, int newdir, const char *newp, unsigned int flags) {
    RENAME_BODY(CALL_RENAMEAT2, olddir, oldp, newdir, newp,
                real_renameat2(olddir, oldp, newdir, newp, flags))
}

/* A writable shared mapping changes the file without a write call. It is
 * recorded, and the replay decides whether that file matters (SQLite maps
 * its -shm index this way, which a reboot discards). */
#define MMAP_BODY(call, addr, len, prot, flags, fd, off, do_call)              \
    ensure_init();                                                             \
    if (!enabled || !tracked(fd) || !((prot) & PROT_WRITE) || !((flags) & MAP_SHARED)) \
        return do_call;                                                        \
    pthread_mutex_lock(&lock);                                                 \
    void *r_ = do_call;                                                        \
    int saved_ = errno;                                                        \
    struct tracked *t_ = tracked(fd);                                          \
    if (r_ != MAP_FAILED && t_)                                                \
        record(OP_MAP, call, t_->name,                                         \
               (uint64_t)(unsigned)(prot) | ((uint64_t)(unsigned)(flags) << 32), NULL, 0); \
    pthread_mutex_unlock(&lock);                                               \
    errno = saved_;                                                            \
    return r_;

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    MMAP_BODY(CALL_MMAP, addr, len, prot, flags, fd, off,
              real_mmap(addr, len, prot, flags, fd, off))
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off) {
    MMAP_BODY(CALL_MMAP64, addr, len, prot, flags, fd, off,
              real_mmap64(addr, len, prot, flags, fd, off))
}
