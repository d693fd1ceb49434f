/* npy.h: a tiny reader and writer for NumPy's .npy files, enough for fastbp's conformance vectors.
 *
 * A .npy file is a 10-byte preamble ("\x93NUMPY", major and minor version, header length), a
 * Python-dict header such as {'descr': '<f8', 'fortran_order': False, 'shape': (7, 3), } padded
 * with spaces to a multiple of 64 bytes, then the raw little-endian data in C (row-major) order.
 * This reader takes '<f4', '<f8' and '<i8' arrays of up to 8 dimensions in C order; the writer
 * writes format 1.0.  Both assume a little-endian machine (and check it).
 *
 * Standard C only.  Header-only: every function is static.
 */
#ifndef NPY_H
#define NPY_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPY_MAX_DIMS 8

typedef struct {
    char descr[4]; /* "<f4", "<f8" or "<i8" */
    int ndim;
    long shape[NPY_MAX_DIMS];
    long size;  /* number of elements (1 for a 0-d array) */
    void *data; /* malloc'ed; free it with free() */
} npy_array;

static int npy_little_endian(void) {
    unsigned int one = 1;
    return *(unsigned char *)&one == 1;
}

static int npy_itemsize(const char *descr) {
    if (strcmp(descr, "<f4") == 0) return 4;
    if (strcmp(descr, "<f8") == 0 || strcmp(descr, "<i8") == 0) return 8;
    return 0;
}

/* Read path into *a. Returns 0 on success, -1 (with a message on stderr) on any error. */
static int npy_read(const char *path, npy_array *a) {
    unsigned char pre[10];
    char *header = NULL, *p;
    unsigned long hlen;
    int itemsize;
    FILE *f = fopen(path, "rb");
    memset(a, 0, sizeof *a);
    if (!f) {
        fprintf(stderr, "npy: cannot open %s\n", path);
        return -1;
    }
    if (!npy_little_endian() || fread(pre, 1, 8, f) != 8 || memcmp(pre, "\x93NUMPY", 6) != 0) goto bad;
    if (pre[6] == 1) { /* format 1.0: 2-byte header length; 2.0 and 3.0: 4 bytes */
        if (fread(pre + 8, 1, 2, f) != 2) goto bad;
        hlen = pre[8] | (unsigned long)pre[9] << 8;
    } else {
        if (fread(pre, 1, 4, f) != 4) goto bad;
        hlen = pre[0] | (unsigned long)pre[1] << 8 | (unsigned long)pre[2] << 16 | (unsigned long)pre[3] << 24;
    }
    header = malloc(hlen + 1);
    if (!header || fread(header, 1, hlen, f) != hlen) goto bad;
    header[hlen] = '\0';
    /* 'descr': '<f8' */
    p = strstr(header, "'descr'");
    if (!p || !(p = strchr(p + 7, '\'')) || strlen(p) < 5 || p[4] != '\'') goto bad;
    memcpy(a->descr, p + 1, 3);
    a->descr[3] = '\0';
    itemsize = npy_itemsize(a->descr);
    /* 'fortran_order': False */
    p = strstr(header, "'fortran_order'");
    if (!itemsize || !p || strncmp(p + 15, ": False", 7) != 0) goto bad;
    /* 'shape': (7, 3) */
    p = strstr(header, "'shape'");
    if (!p || !(p = strchr(p, '('))) goto bad;
    a->size = 1;
    for (p++; *p != ')';) {
        char *end;
        long n = strtol(p, &end, 10);
        if (end == p || a->ndim == NPY_MAX_DIMS) goto bad;
        a->shape[a->ndim++] = n;
        a->size *= n;
        p = end;
        while (*p == ',' || *p == ' ' || *p == 'L') p++;
    }
    a->data = malloc(a->size ? a->size * itemsize : 1);
    if (!a->data || fread(a->data, itemsize, a->size, f) != (size_t)a->size) goto bad;
    free(header);
    fclose(f);
    return 0;
bad:
    fprintf(stderr, "npy: %s is not a little-endian C-order <f4, <f8 or <i8 .npy file\n", path);
    free(header);
    free(a->data);
    a->data = NULL;
    fclose(f);
    return -1;
}

/* Write n-dimensional data (descr "<f4", "<f8" or "<i8") to path in format 1.0. Returns 0 or -1. */
static int npy_write(const char *path, const char *descr, int ndim, const long *shape, const void *data) {
    char header[256], dims[160] = "";
    long size = 1;
    int len, i, itemsize = npy_itemsize(descr);
    FILE *f;
    for (i = 0; i < ndim; i++) {
        size *= shape[i];
        sprintf(dims + strlen(dims), i == 0 && ndim == 1 ? "%ld," : i == 0 ? "%ld" : ", %ld", shape[i]);
    }
    len = sprintf(header, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, dims);
    while ((10 + len + 1) % 64 != 0) header[len++] = ' '; /* pad so the data starts 64-byte aligned */
    header[len++] = '\n';
    f = fopen(path, "wb");
    if (!itemsize || !npy_little_endian() || !f) {
        fprintf(stderr, "npy: cannot write %s\n", path);
        if (f) fclose(f);
        return -1;
    }
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(len & 0xff, f);
    fputc(len >> 8, f);
    fwrite(header, 1, len, f);
    if (fwrite(data, itemsize, size, f) != (size_t)size || fclose(f) != 0) {
        fprintf(stderr, "npy: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

#endif /* NPY_H */
