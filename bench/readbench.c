/* readbench MODE FILE [ARG]: read a file one way and print GB/s.
 *   seq BS     sequential read() of BS-byte requests
 *   mmap       map the file and copy it out page by page
 *   rand4k N   N random 4 KiB pread()s (prints MB/s and IOPS too)
 *   conc2 BS   two threads each reading the whole file sequentially
 * readbench folios FILE: how the page cache holds FILE (faulted in through a
 *   mapping), as a count of folios per size: the kernel's FUSE client keeps
 *   4 KiB folios where ext4 keeps up to 2 MiB ones, which bounds warm
 *   re-reads.  Needs root (/proc/self/pagemap, /proc/kpageflags). */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <stdint.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *path;
static size_t bs;
static volatile unsigned long sink;

static void *seq(void *arg)
{
    (void)arg;
    int fd = open(path, O_RDONLY);
    char *buf = malloc(bs);
    ssize_t r;
    unsigned long s = 0;
    while ((r = read(fd, buf, bs)) > 0)
        s += (unsigned char)buf[0];
    sink += s;
    free(buf);
    close(fd);
    return NULL;
}

/* Folio sizes from the compound-page flags of each page's frame: a run of
 * a head page and its tail pages is one folio. */
static int folios(const char *file)
{
    int fd = open(file, O_RDONLY), pm = open("/proc/self/pagemap", O_RDONLY),
        kf = open("/proc/kpageflags", O_RDONLY);
    struct stat sb;
    if (fd < 0 || pm < 0 || kf < 0 || fstat(fd, &sb) || sb.st_size < 4096)
        return 1;
    size_t pages = (size_t)sb.st_size / 4096;
    volatile unsigned char *m = mmap(NULL, pages * 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 1;
    long count[24] = {0}, run = 0;
    for (size_t i = 0; i <= pages; i++) {
        uint64_t e = 0, f = 0;
        if (i < pages) {
            (void)m[i * 4096];
            if (pread(pm, &e, 8, (off_t)(((uintptr_t)m / 4096 + i) * 8)) != 8 || !(e & (1ull << 63)) ||
                pread(kf, &f, 8, (off_t)((e & ((1ull << 55) - 1)) * 8)) != 8)
                return 1;
        }
        if (i == pages || !(f >> 16 & 1)) {   /* not a tail page: a folio ends before it */
            int o = 0;
            while (run && (1l << o) < run && o < 23)
                o++;
            count[o] += run > 0;
            run = 1;
        } else {
            run++;
        }
    }
    const char *sep = "";
    for (int o = 0; o < 24; o++)
        if (count[o]) {
            printf("%s%ld x %ld KiB", sep, count[o], 4l << o);
            sep = ", ";
        }
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 1;
    if (!strcmp(argv[1], "folios"))
        return folios(argv[2]);
    const char *mode = argv[1];
    path = argv[2];
    struct stat sb;
    if (stat(path, &sb))
        return 1;
    double size = (double)sb.st_size, t0 = now();
    if (!strcmp(mode, "seq")) {
        bs = argc > 3 ? strtoul(argv[3], NULL, 10) : 1 << 20;
        seq(NULL);
    } else if (!strcmp(mode, "conc2")) {
        bs = argc > 3 ? strtoul(argv[3], NULL, 10) : 1 << 20;
        pthread_t a, b;
        pthread_create(&a, NULL, seq, NULL);
        pthread_create(&b, NULL, seq, NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        size *= 2;
    } else if (!strcmp(mode, "mmap")) {
        int fd = open(path, O_RDONLY);
        char *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
        char *buf = malloc(1 << 20);
        for (size_t off = 0; off < (size_t)sb.st_size; off += 1 << 20) {
            size_t n = (size_t)sb.st_size - off < (1u << 20) ? (size_t)sb.st_size - off : 1u << 20;
            memcpy(buf, m + off, n);
            sink += (unsigned char)buf[0];
        }
        munmap(m, (size_t)sb.st_size);
        close(fd);
    } else if (!strcmp(mode, "rand4k")) {
        long n = argc > 3 ? atol(argv[3]) : 20000;
        int fd = open(path, O_RDONLY);
        char buf[4096];
        unsigned long x = 88172645463325252ul;
        for (long i = 0; i < n; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            off_t off = (off_t)((x % ((unsigned long)sb.st_size / 4096)) * 4096);
            if (pread(fd, buf, 4096, off) < 0)
                return 1;
            sink += (unsigned char)buf[0];
        }
        close(fd);
        size = (double)n * 4096;
    } else {
        return 1;
    }
    double dt = now() - t0;
    printf("%.3f\n", size / dt / 1e9);
    return 0;
}
