/* backprop.c: the derivation's network in plain C, checked against fastbp's conformance vectors.
 *
 * The network of docs/derivation.md generalised to L layers (notation kept: W[l], b[l], Z[l], A[l],
 * g, σ, α; layer l maps n[l-1] inputs to n[l] units; one example per row):
 *
 *   Z[l] = A[l-1] W[l]^T + b[l],   A[l] = g(Z[l]) for l < L,   A[L] = σ(Z[L]), softmax(Z[L]) or Z[L]
 *   J    = (1/m) Σ_i cost(Z[L]_i, Y_i)     (binary cross-entropy, cross-entropy or ½ squared error)
 *   dZ[L] = A[L] − Y                        (the same for all three output/cost pairs)
 *   dW[l] = (1/m) dZ[l]^T A[l-1],   db[l] = (1/m) Σ_i dZ[l]_i
 *   dZ[l-1] = (dZ[l] W[l]) ∗ g'(Z[l-1])     (∗: element by element)
 *   W[l] −= α dW[l],   b[l] −= α db[l]
 *
 * Hidden activations: tanh, sigmoid, relu, leaky_relu (slope 0.01), identity.  Outputs: sigmoid,
 * softmax, identity.  That is every case of the set; a case with anything else is skipped (and
 * `fastbp conformance check` then reports only the cases written).
 *
 * One source, one binary per dtype: the arithmetic type `real` is double, or float with
 * -DREAL_FLOAT32 (<tgmath.h> picks expf/tanhf/... for float).  Costs are summed in double.
 *
 *   cc -std=c99 -O2 -o backprop64 backprop.c -lm
 *   cc -std=c99 -O2 -DREAL_FLOAT32 -o backprop32 backprop.c -lm
 *   fastbp conformance export vectors && mkdir results
 *   ./backprop64 vectors results && ./backprop32 vectors results
 *   fastbp conformance check vectors results
 *
 * Standard C99 only, plus npy.h (a tiny .npy reader and writer beside this file).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "npy.h"

#ifdef REAL_FLOAT32
typedef float real;
#define DTYPE "float32"
#define DESCR "<f4"
#else
typedef double real;
#define DTYPE "float64"
#define DESCR "<f8"
#endif

#define MAX_LAYERS 16

enum { TANH, SIGMOID, RELU, LEAKY_RELU, IDENTITY };  /* hidden activations g */
enum { OUT_SIGMOID, OUT_SOFTMAX, OUT_IDENTITY };     /* output layers */

typedef struct {
    int L;                     /* number of layers */
    long n[MAX_LAYERS + 1];    /* n[0] inputs, n[l] units of layer l */
    real *W[MAX_LAYERS + 1];   /* W[l]: n[l] x n[l-1], row-major, l = 1..L */
    real *b[MAX_LAYERS + 1];   /* b[l]: n[l] */
    int g, out;
} Net;

/* Per-layer arrays of m rows: Z[l], A[l], dZ[l] are m x n[l] (row i is example i). */
typedef struct {
    long m;
    real *Z[MAX_LAYERS + 1], *A[MAX_LAYERS + 1], *dZ[MAX_LAYERS + 1];
    real *dW[MAX_LAYERS + 1], *db[MAX_LAYERS + 1];
} Work;

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* ------------------------------------------------------------------ activations and costs */

static real sigmoid(real z) { /* σ(z) in the sign-split form: exp never overflows */
    if (z >= 0) return 1 / (1 + exp(-z));
    real e = exp(z);
    return e / (1 + e);
}

static real g(int act, real z) {
    switch (act) {
    case TANH: return tanh(z);
    case SIGMOID: return sigmoid(z);
    case RELU: return z < 0 ? 0 : z;
    case LEAKY_RELU: return z < 0 ? z * (real)0.01 : z;
    default: return z; /* IDENTITY */
    }
}

static real g_prime(int act, real z, real a) { /* g'(z), given a = g(z) */
    switch (act) {
    case TANH: return 1 - a * a;
    case SIGMOID: return a * (1 - a);
    case RELU: return z > 0 ? 1 : 0;
    case LEAKY_RELU: return z > 0 ? 1 : (real)0.01;
    default: return 1; /* IDENTITY */
    }
}

/* The cost of one example from its logits z = Z[L] (never from A[L]: stays finite for any logit). */
static double cost(int out, const real *z, const real *y, long n) {
    double c = 0;
    if (out == OUT_SIGMOID) { /* −y log σ(z) − (1−y) log(1−σ(z)) = max(z,0) − y z + log1p(e^−|z|) */
        for (long j = 0; j < n; j++) {
            double zj = z[j];
            c += (zj > 0 ? zj : 0) - y[j] * zj + log1p(exp(-fabs(zj)));
        }
    } else if (out == OUT_SOFTMAX) { /* −Σ y log softmax(z) = Σ y (logsumexp(z) − z) */
        double zmax = z[0], total = 0;
        for (long j = 1; j < n; j++) if (z[j] > zmax) zmax = z[j];
        for (long j = 0; j < n; j++) total += exp(z[j] - zmax);
        for (long j = 0; j < n; j++) c += y[j] * (zmax + log(total) - z[j]);
    } else { /* ½ Σ (z − y)² */
        for (long j = 0; j < n; j++) c += 0.5 * ((double)z[j] - y[j]) * ((double)z[j] - y[j]);
    }
    return c;
}

/* ------------------------------------------------------------------------ the four steps */

/* Forward pass of m examples X (m x n[0]) into w->Z[l], w->A[l]. */
static void forward(const Net *net, const real *X, long m, Work *w) {
    for (int l = 1; l <= net->L; l++) {
        long n_in = net->n[l - 1], n_out = net->n[l];
        const real *A_prev = l == 1 ? X : w->A[l - 1];
        for (long i = 0; i < m; i++) {
            const real *a = A_prev + i * n_in;
            real *z = w->Z[l] + i * n_out, *A = w->A[l] + i * n_out;
            for (long j = 0; j < n_out; j++) { /* Z[l] = W[l] a + b[l] */
                real s = net->b[l][j];
                for (long k = 0; k < n_in; k++) s += net->W[l][j * n_in + k] * a[k];
                z[j] = s;
            }
            if (l < net->L) {
                for (long j = 0; j < n_out; j++) A[j] = g(net->g, z[j]);
            } else if (net->out == OUT_SIGMOID) {
                for (long j = 0; j < n_out; j++) A[j] = sigmoid(z[j]);
            } else if (net->out == OUT_SOFTMAX) { /* max subtracted: every exponent ≤ 0 */
                real zmax = z[0], total = 0;
                for (long j = 1; j < n_out; j++) if (z[j] > zmax) zmax = z[j];
                for (long j = 0; j < n_out; j++) total += (A[j] = exp(z[j] - zmax));
                for (long j = 0; j < n_out; j++) A[j] /= total;
            } else {
                for (long j = 0; j < n_out; j++) A[j] = z[j];
            }
        }
    }
}

/* The summed cost of the m examples (after forward); J is this over m. */
static double total_cost(const Net *net, const real *Y, long m, const Work *w) {
    long nL = net->n[net->L];
    double total = 0;
    for (long i = 0; i < m; i++) total += cost(net->out, w->Z[net->L] + i * nL, Y + i * nL, nL);
    return total;
}

/* Backward pass (after forward): dZ[l] per example, and the mean gradients dW[l], db[l]. */
static void backward(const Net *net, const real *X, const real *Y, long m, Work *w) {
    int L = net->L;
    real scale = (real)1 / (real)m;
    for (long t = 0; t < m * net->n[L]; t++) w->dZ[L][t] = w->A[L][t] - Y[t]; /* dZ[L] = A[L] − Y */
    for (int l = L; l >= 1; l--) {
        long n_in = net->n[l - 1], n_out = net->n[l];
        const real *A_prev = l == 1 ? X : w->A[l - 1];
        memset(w->dW[l], 0, n_out * n_in * sizeof(real));
        memset(w->db[l], 0, n_out * sizeof(real));
        for (long i = 0; i < m; i++) { /* dW[l] += (1/m) dZ[l]_i A[l-1]_i^T,  db[l] += (1/m) dZ[l]_i */
            for (long j = 0; j < n_out; j++) {
                real d = scale * w->dZ[l][i * n_out + j];
                w->db[l][j] += d;
                for (long k = 0; k < n_in; k++) w->dW[l][j * n_in + k] += d * A_prev[i * n_in + k];
            }
        }
        if (l == 1) break;
        for (long i = 0; i < m; i++) { /* dZ[l-1] = (dZ[l] W[l]) ∗ g'(Z[l-1]) */
            for (long k = 0; k < n_in; k++) {
                real s = 0;
                for (long j = 0; j < n_out; j++) s += w->dZ[l][i * n_out + j] * net->W[l][j * n_in + k];
                long t = i * n_in + k;
                w->dZ[l - 1][t] = s * g_prime(net->g, w->Z[l - 1][t], w->A[l - 1][t]);
            }
        }
    }
}

/* W[l] −= α dW[l], b[l] −= α db[l]. */
static void update(Net *net, const Work *w, real alpha) {
    for (int l = 1; l <= net->L; l++) {
        for (long t = 0; t < net->n[l] * net->n[l - 1]; t++) net->W[l][t] -= alpha * w->dW[l][t];
        for (long j = 0; j < net->n[l]; j++) net->b[l][j] -= alpha * w->db[l][j];
    }
}

/* One epoch: examples in `order`, consecutive batches of `batch` (the last may be short), one
 * update per batch from its mean gradient.  Returns the mean over the m examples of each one's
 * cost before its batch's update.  `w` needs room for `batch` rows. */
static double epoch(Net *net, const real *X, const real *Y, long m, const long long *order, long batch, real alpha, Work *w) {
    long n0 = net->n[0], nL = net->n[net->L];
    real *Xb = xmalloc(batch * n0 * sizeof(real)), *Yb = xmalloc(batch * nL * sizeof(real));
    double total = 0;
    for (long start = 0; start < m; start += batch) {
        long k = m - start < batch ? m - start : batch;
        for (long r = 0; r < k; r++) { /* gather the batch's rows */
            memcpy(Xb + r * n0, X + order[start + r] * n0, n0 * sizeof(real));
            memcpy(Yb + r * nL, Y + order[start + r] * nL, nL * sizeof(real));
        }
        forward(net, Xb, k, w);
        total += total_cost(net, Yb, k, w); /* the costs before this batch's update */
        backward(net, Xb, Yb, k, w);
        update(net, w, alpha);
    }
    free(Xb);
    free(Yb);
    return total / m;
}

/* ------------------------------------------------------------------ reading and writing a case */

static const char *dir, *results, *id; /* the set's folder, the results folder, the current case */

static void *read_array(const char *name, const char *descr, long rows, long cols) {
    char path[4096];
    npy_array a;
    snprintf(path, sizeof path, "%s/%s.%s.npy", dir, id, name);
    if (npy_read(path, &a) != 0) exit(2);
    if (strcmp(a.descr, descr) != 0 || a.size != rows * cols) {
        fprintf(stderr, "%s: expected %s with %ld x %ld elements\n", path, descr, rows, cols);
        exit(2);
    }
    return a.data;
}

static void write_array(const char *op, const char *name, int l, const char *descr, int ndim, long rows, long cols, const void *data) {
    char path[4096], layer[16] = "";
    long shape[2] = {rows, cols};
    if (l > 0) snprintf(layer, sizeof layer, "%d", l);
    snprintf(path, sizeof path, "%s/%s.%s.%s%s.npy", results, id, op, name, layer);
    if (npy_write(path, descr, ndim, shape, data) != 0) exit(2);
}

static void write_params(const char *op, const Net *net) {
    for (int l = 1; l <= net->L; l++) {
        write_array(op, "W", l, DESCR, 2, net->n[l], net->n[l - 1], net->W[l]);
        write_array(op, "b", l, DESCR, 1, net->n[l], 0, net->b[l]);
    }
}

static void alloc_work(Work *w, const Net *net, long m) {
    w->m = m;
    for (int l = 1; l <= net->L; l++) {
        w->Z[l] = xmalloc(m * net->n[l] * sizeof(real));
        w->A[l] = xmalloc(m * net->n[l] * sizeof(real));
        w->dZ[l] = xmalloc(m * net->n[l] * sizeof(real));
        w->dW[l] = xmalloc(net->n[l] * net->n[l - 1] * sizeof(real));
        w->db[l] = xmalloc(net->n[l] * sizeof(real));
    }
}

static void free_work(Work *w, int L) {
    for (int l = 1; l <= L; l++) {
        free(w->Z[l]), free(w->A[l]), free(w->dZ[l]), free(w->dW[l]), free(w->db[l]);
    }
}

static void load_params(Net *net) {
    char name[16];
    for (int l = 1; l <= net->L; l++) {
        snprintf(name, sizeof name, "W%d", l);
        net->W[l] = read_array(name, DESCR, net->n[l], net->n[l - 1]);
        snprintf(name, sizeof name, "b%d", l);
        net->b[l] = read_array(name, DESCR, net->n[l], 1);
    }
}

static void free_params(Net *net) {
    for (int l = 1; l <= net->L; l++) free(net->W[l]), free(net->b[l]);
}

static void run_case(Net *net, long m, long batch, real alpha) {
    int L = net->L;
    long n0 = net->n[0], nL = net->n[L];
    real *X = read_array("X", DESCR, m, n0), *Y = read_array("Y", DESCR, m, nL);
    long long *order = read_array("order", "<i8", m, 1);
    Work w;
    double J;
    alloc_work(&w, net, m);

    load_params(net);
    forward(net, X, m, &w); /* forward: Z[l], A[l] */
    for (int l = 1; l <= L; l++) {
        write_array("forward", "Z", l, DESCR, 2, m, net->n[l], w.Z[l]);
        write_array("forward", "A", l, DESCR, 2, m, net->n[l], w.A[l]);
    }
    J = total_cost(net, Y, m, &w) / m; /* loss: J (float64) */
    write_array("loss", "J", 0, "<f8", 0, 0, 0, &J);
    backward(net, X, Y, m, &w); /* backward: dZ[l], dW[l], db[l] */
    for (int l = 1; l <= L; l++) {
        write_array("backward", "dZ", l, DESCR, 2, m, net->n[l], w.dZ[l]);
        write_array("backward", "dW", l, DESCR, 2, net->n[l], net->n[l - 1], w.dW[l]);
        write_array("backward", "db", l, DESCR, 1, net->n[l], 0, w.db[l]);
    }
    update(net, &w, alpha); /* update: one step with the full-batch gradients */
    write_params("update", net);
    free_params(net);

    load_params(net); /* epoch: from the same starting parameters */
    J = epoch(net, X, Y, m, order, batch, alpha, &w);
    write_params("epoch", net);
    write_array("epoch", "J", 0, "<f8", 0, 0, 0, &J);
    free_params(net);

    free_work(&w, L);
    free(X), free(Y), free(order);
}

static int lookup(const char *name, const char *const *names, int count) {
    for (int i = 0; i < count; i++) if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

int main(int argc, char **argv) {
    static const char *const acts[] = {"tanh", "sigmoid", "relu", "leaky_relu", "identity"};
    static const char *const outs[] = {"sigmoid", "softmax", "identity"};
    char path[4096], line[4096], case_id[256], dtype[32], act[32], out[32];
    int written = 0, skipped = 0;
    FILE *index;
    if (argc != 3) {
        fprintf(stderr, "usage: %s VECTORS_DIR RESULTS_DIR (an existing folder)\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    results = argv[2];
    snprintf(path, sizeof path, "%s/index.tsv", dir);
    if (!(index = fopen(path, "r"))) {
        fprintf(stderr, "cannot open %s (write the set with: fastbp conformance export DIR)\n", path);
        return 2;
    }
    /* One case per line: id dtype activation output learning_rate batch_size m L n0 ... nL */
    while (fgets(line, sizeof line, index)) {
        Net net = {0};
        double lr;
        long batch, m;
        int pos;
        char *p;
        if (line[0] == '#' || line[0] == '\n') continue;
        if (sscanf(line, "%255s %31s %31s %31s %lf %ld %ld %d%n", case_id, dtype, act, out, &lr, &batch, &m, &net.L, &pos) != 8 ||
            net.L < 1 || net.L > MAX_LAYERS) {
            fprintf(stderr, "%s: cannot read the line: %s", path, line);
            return 2;
        }
        p = line + pos;
        for (int l = 0; l <= net.L; l++) net.n[l] = strtol(p, &p, 10);
        if (strcmp(dtype, DTYPE) != 0) continue; /* the other binary's cases */
        net.g = lookup(act, acts, 5);
        net.out = lookup(out, outs, 3);
        if (net.g < 0 || net.out < 0) {
            skipped++;
            continue;
        }
        id = case_id;
        run_case(&net, m, batch, (real)lr);
        written++;
    }
    fclose(index);
    printf("%s: wrote the results of %d %s cases into %s", argv[0], written, DTYPE, results);
    if (skipped) printf(" (%d skipped: activation or output not implemented here)", skipped);
    printf("\n");
    return 0;
}
