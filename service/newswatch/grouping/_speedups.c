/* Compiled versions of the grouping's per-article inner loops.
 *
 * Each function here has a pure-Python twin in newswatch/grouping (the reference, used when
 * this module is not built); tests run both on the same inputs and compare. Nothing here
 * decides anything: these are the dictionary arithmetic, hashing and sorting that each
 * article repeats a few hundred times, where CPython's per-element overhead was most of the
 * cost of grouping.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- dictionary arithmetic ----------------------------------------------------------- */

/* Key masks: a bit per key hash (its low bits) of a dict, set for every key it holds (a key
 * whose bit is clear is not in the dict; a set bit may be another key's). Looking a key up in
 * a large dict that does not hold it costs cache misses; testing its bit in 512 contiguous
 * bytes mostly does not. */
static int
mask_view(PyObject *mask, Py_buffer *view, int flags)
{
    if (PyObject_GetBuffer(mask, view, flags) < 0)
        return 0;
    if (view->len < 1 || (view->len & (view->len - 1)) != 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "a key mask must be a power-of-two number of bytes");
        return 0;
    }
    return 1;
}

/* 1 when key's bit is set in the mask (or there is no mask), 0 when clear, -1 on error. */
static int
mask_has(const Py_buffer *view, PyObject *key)
{
    if (view == NULL)
        return 1;
    Py_hash_t h = PyObject_Hash(key);
    if (h == -1 && PyErr_Occurred())
        return -1;
    size_t bit = (size_t)h & (size_t)(view->len * 8 - 1);
    return (((const unsigned char *)view->buf)[bit >> 3] >> (bit & 7)) & 1;
}

static int
mask_set(Py_buffer *view, PyObject *key)
{
    Py_hash_t h = PyObject_Hash(key);
    if (h == -1 && PyErr_Occurred())
        return -1;
    size_t bit = (size_t)h & (size_t)(view->len * 8 - 1);
    ((unsigned char *)view->buf)[bit >> 3] |= (unsigned char)(1u << (bit & 7));
    return 0;
}

/* sum(a[k] * b.get(k, 0.0) for k in a), iterating the smaller of the two; with the key mask
 * of the dict looked up in (mask_a for a, mask_b for b; None: none), keys whose bit is clear
 * are skipped without a look-up. The same sum in the same order either way. */
static PyObject *
speed_dot(PyObject *self, PyObject *args)
{
    PyObject *a, *b, *mask_a = Py_None, *mask_b = Py_None;
    if (!PyArg_ParseTuple(args, "O!O!|OO:dot", &PyDict_Type, &a, &PyDict_Type, &b, &mask_a,
                          &mask_b))
        return NULL;
    if (PyDict_GET_SIZE(a) > PyDict_GET_SIZE(b)) {
        PyObject *t = a;
        a = b;
        b = t;
        mask_b = mask_a;
    }
    Py_buffer view, *mask = NULL;
    if (mask_b != Py_None) {
        if (!mask_view(mask_b, &view, PyBUF_SIMPLE))
            return NULL;
        mask = &view;
    }
    double total = 0.0;
    Py_ssize_t pos = 0;
    PyObject *key, *value, *result = NULL;
    while (PyDict_Next(a, &pos, &key, &value)) {
        int maybe = mask_has(mask, key);
        if (maybe < 0)
            goto done;
        if (!maybe)
            continue;
        PyObject *other = PyDict_GetItemWithError(b, key);
        if (other == NULL) {
            if (PyErr_Occurred())
                goto done;
            continue;
        }
        double x = PyFloat_AsDouble(value), y = PyFloat_AsDouble(other);
        if ((x == -1.0 || y == -1.0) && PyErr_Occurred())
            goto done;
        total += x * y;
    }
    result = PyFloat_FromDouble(total);
done:
    if (mask != NULL)
        PyBuffer_Release(mask);
    return result;
}

/* target[k] = target.get(k, 0.0) + v for k, v in source.items(); each key's bit set in
 * target's key mask when one is given. */
static PyObject *
speed_accumulate(PyObject *self, PyObject *args)
{
    PyObject *target, *source, *mask_obj = Py_None;
    if (!PyArg_ParseTuple(args, "O!O!|O:accumulate", &PyDict_Type, &target, &PyDict_Type,
                          &source, &mask_obj))
        return NULL;
    Py_buffer view, *mask = NULL;
    if (mask_obj != Py_None) {
        if (!mask_view(mask_obj, &view, PyBUF_WRITABLE))
            return NULL;
        mask = &view;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value, *result = NULL;
    while (PyDict_Next(source, &pos, &key, &value)) {
        double v = PyFloat_AsDouble(value);
        if (v == -1.0 && PyErr_Occurred())
            goto done;
        PyObject *old = PyDict_GetItemWithError(target, key);
        if (old == NULL && PyErr_Occurred())
            goto done;
        if (old != NULL) {
            double o = PyFloat_AsDouble(old);
            if (o == -1.0 && PyErr_Occurred())
                goto done;
            v += o;
        }
        PyObject *sum = PyFloat_FromDouble(v);
        if (sum == NULL || PyDict_SetItem(target, key, sum) < 0) {
            Py_XDECREF(sum);
            goto done;
        }
        Py_DECREF(sum);
        if (mask != NULL && mask_set(mask, key) < 0)
            goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    if (mask != NULL)
        PyBuffer_Release(mask);
    return result;
}

/* target.setdefault(k, v) for k, v in source.items(). */
static PyObject *
speed_setdefaults(PyObject *self, PyObject *args)
{
    PyObject *target, *source;
    if (!PyArg_ParseTuple(args, "O!O!:setdefaults", &PyDict_Type, &target, &PyDict_Type, &source))
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(source, &pos, &key, &value))
        if (PyDict_SetDefault(target, key, value) == NULL)
            return NULL;
    Py_RETURN_NONE;
}

/* counts[k] = counts.get(k, 0) + 1 for each key of each dict in `sources`. */
static PyObject *
speed_count_keys(PyObject *self, PyObject *args)
{
    PyObject *counts, *sources;
    if (!PyArg_ParseTuple(args, "O!O!:count_keys", &PyDict_Type, &counts, &PyTuple_Type, &sources))
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(sources); i++) {
        PyObject *source = PyTuple_GET_ITEM(sources, i);
        if (!PyDict_Check(source)) {
            PyErr_SetString(PyExc_TypeError, "count_keys: sources must be dicts");
            return NULL;
        }
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(source, &pos, &key, &value)) {
            PyObject *old = PyDict_GetItemWithError(counts, key);
            long n = 0;
            if (old == NULL && PyErr_Occurred())
                return NULL;
            if (old != NULL) {
                n = PyLong_AsLong(old);
                if (n == -1 && PyErr_Occurred())
                    return NULL;
            }
            PyObject *next = PyLong_FromLong(n + 1);
            if (next == NULL || PyDict_SetItem(counts, key, next) < 0) {
                Py_XDECREF(next);
                return NULL;
            }
            Py_DECREF(next);
        }
    }
    Py_RETURN_NONE;
}

/* Cosine of the entries of a and b whose keys start with `prefix` (one character): each
 * side divided by its norm (or 1.0 when that is 0); -1.0 when either side has no such entry. */
static int
starts_with(PyObject *key, Py_UCS4 prefix)
{
    return PyUnicode_Check(key) && PyUnicode_GET_LENGTH(key) > 0 &&
           PyUnicode_READ_CHAR(key, 0) == prefix;
}

static PyObject *
speed_prefixed_cosine(PyObject *self, PyObject *args)
{
    PyObject *a, *b, *prefix_obj;
    if (!PyArg_ParseTuple(args, "O!O!U:prefixed_cosine", &PyDict_Type, &a, &PyDict_Type, &b,
                          &prefix_obj))
        return NULL;
    if (PyUnicode_GET_LENGTH(prefix_obj) != 1) {
        PyErr_SetString(PyExc_ValueError, "prefixed_cosine: prefix must be one character");
        return NULL;
    }
    Py_UCS4 prefix = PyUnicode_READ_CHAR(prefix_obj, 0);
    double dot = 0.0, na = 0.0, nb = 0.0;
    int any_a = 0, any_b = 0;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(a, &pos, &key, &value)) {
        if (!starts_with(key, prefix))
            continue;
        any_a = 1;
        double x = PyFloat_AsDouble(value);
        if (x == -1.0 && PyErr_Occurred())
            return NULL;
        na += x * x;
        PyObject *other = PyDict_GetItemWithError(b, key);
        if (other == NULL) {
            if (PyErr_Occurred())
                return NULL;
            continue;
        }
        double y = PyFloat_AsDouble(other);
        if (y == -1.0 && PyErr_Occurred())
            return NULL;
        dot += x * y;
    }
    pos = 0;
    while (PyDict_Next(b, &pos, &key, &value)) {
        if (!starts_with(key, prefix))
            continue;
        any_b = 1;
        double y = PyFloat_AsDouble(value);
        if (y == -1.0 && PyErr_Occurred())
            return NULL;
        nb += y * y;
    }
    if (!any_a || !any_b)
        return PyFloat_FromDouble(-1.0);
    double norm_a = na > 0.0 ? sqrt(na) : 1.0, norm_b = nb > 0.0 ? sqrt(nb) : 1.0;
    return PyFloat_FromDouble(dot / (norm_a * norm_b));
}

/* ---- term counting ------------------------------------------------------------------- */

/* memo[word], else compute(word) (which may fill the memo): a new reference to a str, or
 * NULL with an exception. */
static PyObject *
memoised_str(PyObject *memo, PyObject *word, PyObject *compute, const char *what)
{
    PyObject *value = PyDict_GetItemWithError(memo, word); /* borrowed */
    if (value != NULL)
        Py_INCREF(value);
    else if (PyErr_Occurred() || (value = PyObject_CallOneArg(compute, word)) == NULL)
        return NULL;
    if (!PyUnicode_Check(value)) {
        Py_DECREF(value);
        PyErr_Format(PyExc_TypeError, "%s must be str", what);
        return NULL;
    }
    return value;
}

/* For each word: its term from `memo` (or term_of(word) when not there; "" skips it); then
 * terms[t] = terms.get(t, 0.0) + n * weight for each term t seen n times, in the order terms
 * first appear. */
static PyObject *
speed_add_terms(PyObject *self, PyObject *args)
{
    PyObject *terms, *words, *memo, *term_of;
    double weight;
    if (!PyArg_ParseTuple(args, "O!O!dO!O:add_terms", &PyDict_Type, &terms, &PyList_Type, &words,
                          &weight, &PyDict_Type, &memo, &term_of))
        return NULL;
    PyObject *seen = PyDict_New(); /* term -> count, in first-seen order */
    if (seen == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(words); i++) {
        PyObject *term = memoised_str(memo, PyList_GET_ITEM(words, i), term_of, "add_terms: terms");
        if (term == NULL)
            goto fail;
        if (PyUnicode_GET_LENGTH(term) == 0) {
            Py_DECREF(term);
            continue;
        }
        PyObject *old = PyDict_GetItemWithError(seen, term);
        long n = 0;
        if (old == NULL && PyErr_Occurred()) {
            Py_DECREF(term);
            goto fail;
        }
        if (old != NULL)
            n = PyLong_AsLong(old);
        PyObject *next = PyLong_FromLong(n + 1);
        int bad = next == NULL || PyDict_SetItem(seen, term, next) < 0;
        Py_XDECREF(next);
        Py_DECREF(term);
        if (bad)
            goto fail;
    }
    Py_ssize_t pos = 0;
    PyObject *term, *count;
    while (PyDict_Next(seen, &pos, &term, &count)) {
        double add = (double)PyLong_AsLong(count) * weight;
        PyObject *old = PyDict_GetItemWithError(terms, term);
        if (old == NULL && PyErr_Occurred())
            goto fail;
        if (old != NULL) {
            double o = PyFloat_AsDouble(old);
            if (o == -1.0 && PyErr_Occurred())
                goto fail;
            add = o + add;
        }
        PyObject *value = PyFloat_FromDouble(add);
        int bad = value == NULL || PyDict_SetItem(terms, term, value) < 0;
        Py_XDECREF(value);
        if (bad)
            goto fail;
    }
    Py_DECREF(seen);
    Py_RETURN_NONE;
fail:
    Py_DECREF(seen);
    return NULL;
}

/* ---- candidate votes ----------------------------------------------------------------- */

typedef struct {
    long long id;
    Py_ssize_t count;
    Py_ssize_t order; /* first appearance */
} Vote;

static int
vote_cmp(const void *x, const void *y)
{
    const Vote *a = x, *b = y;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    return a->order < b->order ? -1 : (a->order > b->order);
}

/* Open addressing over int ids: a slot holds 1 + an index into the votes (0: empty). */
typedef struct {
    Vote *votes;
    Py_ssize_t *slots;
    Py_ssize_t used, mask;
} Tally;

static int
tally_grow(Tally *t)
{
    Py_ssize_t size = t->mask ? (t->mask + 1) * 2 : 1024;
    Py_ssize_t *slots = PyMem_Calloc(size, sizeof(Py_ssize_t));
    Vote *votes = PyMem_Realloc(t->votes, (size / 2) * sizeof(Vote));
    if (slots == NULL || votes == NULL) {
        PyMem_Free(slots);
        if (votes != NULL)
            t->votes = votes;
        PyErr_NoMemory();
        return -1;
    }
    t->votes = votes;
    PyMem_Free(t->slots);
    t->slots = slots;
    t->mask = size - 1;
    for (Py_ssize_t i = 0; i < t->used; i++) {
        size_t h = (size_t)(t->votes[i].id * 0x9E3779B97F4A7C15ULL) & t->mask;
        while (slots[h])
            h = (h + 1) & t->mask;
        slots[h] = i + 1;
    }
    return 0;
}

static int
tally_add(Tally *t, long long id)
{
    if (2 * (t->used + 1) > t->mask + 1 && tally_grow(t) < 0)
        return -1;
    size_t h = (size_t)(id * 0x9E3779B97F4A7C15ULL) & t->mask;
    while (t->slots[h]) {
        Vote *v = &t->votes[t->slots[h] - 1];
        if (v->id == id) {
            v->count++;
            return 0;
        }
        h = (h + 1) & t->mask;
    }
    t->votes[t->used] = (Vote){id, 1, t->used};
    t->slots[h] = ++t->used;
    return 0;
}

/* 1 with a view of obj's memory when it is a buffer of 8-byte signed ints (array('q')),
 * else 0. */
static int
int64_view(PyObject *obj, Py_buffer *view)
{
    if (!PyObject_CheckBuffer(obj))
        return 0;
    if (PyObject_GetBuffer(obj, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Clear();
        return 0;
    }
    if (view->itemsize == 8 && view->format != NULL && strcmp(view->format, "q") == 0)
        return 1;
    PyBuffer_Release(view);
    return 0;
}

/* The n int ids found most often in the iterables postings.get(k) for k in `keys`, most
 * first; ties in the order first found (as Counter and a stable sort by count). */
static PyObject *
speed_top_votes(PyObject *self, PyObject *args)
{
    PyObject *postings, *keys;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "O!O!n:top_votes", &PyDict_Type, &postings, &PyList_Type, &keys,
                          &n))
        return NULL;
    Tally t = {NULL, NULL, 0, 0};
    PyObject *out = NULL;
    if (tally_grow(&t) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *posting = PyDict_GetItemWithError(postings, PyList_GET_ITEM(keys, i));
        if (posting == NULL) {
            if (PyErr_Occurred())
                goto done;
            continue;
        }
        Py_buffer view;
        if (int64_view(posting, &view)) {
            /* An array('q'): the ids side by side, not int objects all over the heap (one
             * cache miss per id was most of the cost). */
            const long long *ids = view.buf;
            int bad = 0;
            for (Py_ssize_t j = 0; j < view.len / 8 && !bad; j++)
                bad = tally_add(&t, ids[j]) < 0;
            PyBuffer_Release(&view);
            if (bad)
                goto done;
            continue;
        }
        if (PyErr_Occurred())
            goto done;
        PyObject *it = PyObject_GetIter(posting);
        if (it == NULL)
            goto done;
        PyObject *item;
        while ((item = PyIter_Next(it)) != NULL) {
            long long id = PyLong_AsLongLong(item);
            Py_DECREF(item);
            if ((id == -1 && PyErr_Occurred()) || tally_add(&t, id) < 0)
                break;
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            goto done;
    }
    if (t.used > 1)
        qsort(t.votes, t.used, sizeof(Vote), vote_cmp);
    if (n > t.used)
        n = t.used;
    if (n < 0)
        n = 0;
    out = PyList_New(n);
    if (out == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *id = PyLong_FromLongLong(t.votes[i].id);
        if (id == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, id);
    }
done:
    PyMem_Free(t.votes);
    PyMem_Free(t.slots);
    return out;
}

/* ---- TF-IDF vector ------------------------------------------------------------------- */

typedef struct {
    double weight;
    Py_ssize_t index;
} Ranked;

static int
ranked_cmp(const void *x, const void *y)
{
    const Ranked *a = x, *b = y;
    if (a->weight != b->weight)
        return a->weight > b->weight ? -1 : 1;
    return a->index < b->index ? -1 : (a->index > b->index);
}

/* The unit TF-IDF vector of an article's terms and entities, heaviest `size` entries first,
 * and its first `rare_count` keys whose document frequency is at most rare_limit. With
 * `learn`, each key's count in df goes up by one first (the article is one of the `docs`):
 * one look-up of each key in a large, cold dict instead of two. */
static PyObject *
speed_tfidf(PyObject *self, PyObject *args)
{
    PyObject *terms, *entities, *df;
    Py_ssize_t docs, size, rare_count;
    double entity_weight, rare_limit;
    int learn;
    if (!PyArg_ParseTuple(args, "O!O!O!ndnndp:tfidf", &PyDict_Type, &terms, &PyDict_Type,
                          &entities, &PyDict_Type, &df, &docs, &entity_weight, &size,
                          &rare_count, &rare_limit, &learn))
        return NULL;
    Py_ssize_t n_terms = PyDict_GET_SIZE(terms), total = n_terms + PyDict_GET_SIZE(entities);
    PyObject *vec = PyDict_New(), *rare = PyList_New(0), *result = NULL;
    PyObject **keys = PyMem_Malloc((total + 1) * sizeof(PyObject *));
    double *dfs = PyMem_Malloc((total + 1) * sizeof(double));
    Ranked *ranked = PyMem_Malloc((total + 1) * sizeof(Ranked));
    if (vec == NULL || rare == NULL || keys == NULL || dfs == NULL || ranked == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    double base = log((double)docs + 1.0) + 1.0;
    Py_ssize_t i = 0, pos = 0;
    PyObject *key, *value;
    for (int part = 0; part < 2; part++) {
        PyObject *source = part == 0 ? terms : entities;
        pos = 0;
        while (PyDict_Next(source, &pos, &key, &value)) {
            PyObject *count = PyDict_GetItemWithError(df, key);
            long long d = 0;
            if (count == NULL && PyErr_Occurred())
                goto done;
            if (count != NULL) {
                d = PyLong_AsLongLong(count);
                if (d == -1 && PyErr_Occurred())
                    goto done;
            }
            if (learn) {
                PyObject *next = PyLong_FromLongLong(++d);
                int bad = next == NULL || PyDict_SetItem(df, key, next) < 0;
                Py_XDECREF(next);
                if (bad)
                    goto done;
            }
            double w = base - log1p((double)d);
            if (part == 0) {
                double tf = PyFloat_AsDouble(value);
                if (tf == -1.0 && PyErr_Occurred())
                    goto done;
                /* Sub-linear tf; a term seen only with a weight below 1 keeps it. */
                w *= tf >= 1.0 ? 1.0 + log(tf) : tf;
            } else {
                w *= entity_weight;
            }
            keys[i] = key;
            dfs[i] = (double)d;
            ranked[i].weight = w;
            ranked[i].index = i;
            i++;
        }
    }
    qsort(ranked, total, sizeof(Ranked), ranked_cmp);
    if (size > total)
        size = total;
    if (size < 0)
        size = 0;
    double norm2 = 0.0;
    for (i = 0; i < size; i++)
        norm2 += ranked[i].weight * ranked[i].weight;
    double norm = sqrt(norm2);
    if (norm == 0.0)
        norm = 1.0;
    for (i = 0; i < size; i++) {
        PyObject *k = keys[ranked[i].index];
        PyObject *w = PyFloat_FromDouble(ranked[i].weight / norm);
        int bad = w == NULL || PyDict_SetItem(vec, k, w) < 0;
        Py_XDECREF(w);
        if (bad)
            goto done;
        if (PyList_GET_SIZE(rare) < rare_count && dfs[ranked[i].index] <= rare_limit &&
            PyList_Append(rare, k) < 0)
            goto done;
    }
    result = PyTuple_Pack(2, vec, rare);
done:
    PyMem_Free(keys);
    PyMem_Free(dfs);
    PyMem_Free(ranked);
    Py_XDECREF(vec);
    Py_XDECREF(rare);
    return result;
}

/* ---- centroids and postings ---------------------------------------------------------- */

/* A dict of the n entries of d with the largest values, largest first; ties in d's order
 * (a stable sort by value). */
static PyObject *
speed_top_items(PyObject *self, PyObject *args)
{
    PyObject *d;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "O!n:top_items", &PyDict_Type, &d, &n))
        return NULL;
    Py_ssize_t size = PyDict_GET_SIZE(d);
    Ranked *ranked = PyMem_Malloc((size + 1) * sizeof(Ranked));
    PyObject **keys = PyMem_Malloc((size + 1) * sizeof(PyObject *) * 2);
    PyObject *out = PyDict_New();
    if (ranked == NULL || keys == NULL || out == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto fail;
    }
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(d, &pos, &key, &value)) {
        double v = PyFloat_AsDouble(value);
        if (v == -1.0 && PyErr_Occurred())
            goto fail;
        ranked[i].weight = v;
        ranked[i].index = i;
        keys[2 * i] = key;
        keys[2 * i + 1] = value;
        i++;
    }
    qsort(ranked, size, sizeof(Ranked), ranked_cmp);
    if (n > size)
        n = size;
    for (i = 0; i < n; i++) {
        Py_ssize_t at = ranked[i].index;
        if (PyDict_SetItem(out, keys[2 * at], keys[2 * at + 1]) < 0)
            goto fail;
    }
    PyMem_Free(ranked);
    PyMem_Free(keys);
    return out;
fail:
    PyMem_Free(ranked);
    PyMem_Free(keys);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *append_name; /* "append", interned at import */

/* The last id of an array('q') posting; 0 and an exception when it is not one or empty. */
static int
last_id(PyObject *posting, long long *id)
{
    Py_buffer view;
    if (!int64_view(posting, &view)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "post: postings must be array('q')");
        return 0;
    }
    int ok = view.len >= 8;
    if (ok)
        *id = ((const long long *)view.buf)[view.len / 8 - 1];
    else
        PyErr_SetString(PyExc_ValueError, "post: an empty posting");
    PyBuffer_Release(&view);
    return ok;
}

/* For each term: postings[term] (new_posting(event_id) when missing) gets event_id appended
 * unless it ends with it already, and loses its oldest entry past `depth`. */
static PyObject *
speed_post(PyObject *self, PyObject *args)
{
    PyObject *postings, *event_id, *terms, *new_posting;
    Py_ssize_t depth;
    if (!PyArg_ParseTuple(args, "O!O!OOn:post", &PyDict_Type, &postings, &PyLong_Type, &event_id,
                          &terms, &new_posting, &depth))
        return NULL;
    long long id = PyLong_AsLongLong(event_id);
    if (id == -1 && PyErr_Occurred())
        return NULL;
    PyObject *it = PyObject_GetIter(terms);
    if (it == NULL)
        return NULL;
    PyObject *term;
    while ((term = PyIter_Next(it)) != NULL) {
        PyObject *posting = PyDict_GetItemWithError(postings, term); /* borrowed */
        int bad = 0;
        if (posting == NULL) {
            if (PyErr_Occurred())
                bad = 1;
            else {
                PyObject *fresh = PyObject_CallOneArg(new_posting, event_id);
                bad = fresh == NULL || PyDict_SetItem(postings, term, fresh) < 0;
                Py_XDECREF(fresh);
            }
        } else {
            long long last;
            Py_INCREF(posting);
            if (!last_id(posting, &last))
                bad = 1;
            else if (last != id) {
                PyObject *done = PyObject_CallMethodOneArg(posting, append_name, event_id);
                bad = done == NULL;
                Py_XDECREF(done);
                if (!bad && PyObject_Length(posting) > depth)
                    bad = PySequence_DelItem(posting, 0) < 0;
            }
            Py_DECREF(posting);
        }
        Py_DECREF(term);
        if (bad) {
            Py_DECREF(it);
            return NULL;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* ---- split checks -------------------------------------------------------------------- */

typedef struct {
    Py_ssize_t column, row;
    double weight, named; /* named: the weight over the norm of the member's named entries */
} Entry;

static int
entry_cmp(const void *x, const void *y)
{
    const Entry *a = x, *b = y;
    if (a->column != b->column)
        return a->column < b->column ? -1 : 1;
    return a->row < b->row ? -1 : (a->row > b->row);
}

static int
is_named(PyObject *term)
{
    if (PyUnicode_GET_LENGTH(term) == 0)
        return 0;
    Py_UCS4 first = PyUnicode_READ_CHAR(term, 0);
    return first == '@' || first == '#';
}

/* Pairwise similarity of members given as (terms, weights) pairs (a tuple of str and an
 * array('d') of one length; each term once per member): the dot product of their whole
 * vectors plus that of their entity and figure entries ("@", "#") once each member's are
 * scaled to unit length; zero on the diagonal. Returned as n * n native doubles, row by row.
 * Only the terms two members share add to a product: entries are grouped by term, and each
 * group adds its pairs. */
static PyObject *
speed_affinity(PyObject *self, PyObject *args)
{
    PyObject *members;
    if (!PyArg_ParseTuple(args, "O!:affinity", &PyList_Type, &members))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(members), total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyList_GET_ITEM(members, i);
        if (!PyTuple_Check(m) || PyTuple_GET_SIZE(m) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(m, 0))) {
            PyErr_SetString(PyExc_TypeError, "affinity: members must be (terms tuple, weights)");
            return NULL;
        }
        total += PyTuple_GET_SIZE(PyTuple_GET_ITEM(m, 0));
    }
    PyObject *columns = PyDict_New(), *out = NULL;
    Entry *entries = PyMem_Malloc((total + 1) * sizeof(Entry));
    double *w = PyMem_Calloc((size_t)(n * n + 1), sizeof(double));
    if (columns == NULL || entries == NULL || w == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t e = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyList_GET_ITEM(members, i);
        PyObject *terms = PyTuple_GET_ITEM(m, 0);
        Py_ssize_t count = PyTuple_GET_SIZE(terms);
        Py_buffer view;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(m, 1), &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        if (view.itemsize != 8 || view.format == NULL || strcmp(view.format, "d") != 0 ||
            view.len / 8 != count) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_TypeError, "affinity: weights must be array('d') of the terms");
            goto done;
        }
        const double *weights = view.buf;
        double norm2 = 0.0;
        Py_ssize_t first = e;
        for (Py_ssize_t k = 0; k < count; k++) {
            PyObject *term = PyTuple_GET_ITEM(terms, k);
            if (!PyUnicode_Check(term)) {
                PyBuffer_Release(&view);
                PyErr_SetString(PyExc_TypeError, "affinity: terms must be str");
                goto done;
            }
            PyObject *column = PyDict_GetItemWithError(columns, term);
            if (column == NULL) {
                if (PyErr_Occurred()) {
                    PyBuffer_Release(&view);
                    goto done;
                }
                column = PyLong_FromSsize_t(PyDict_GET_SIZE(columns));
                int bad = column == NULL || PyDict_SetItem(columns, term, column) < 0;
                Py_XDECREF(column);
                if (bad) {
                    PyBuffer_Release(&view);
                    goto done;
                }
            }
            int named = is_named(term);
            entries[e] = (Entry){PyLong_AsSsize_t(column), i, weights[k], named ? weights[k] : 0.0};
            if (named)
                norm2 += weights[k] * weights[k];
            e++;
        }
        PyBuffer_Release(&view);
        double norm = norm2 > 0.0 ? sqrt(norm2) : 1.0;
        for (Py_ssize_t k = first; k < e; k++)
            entries[k].named /= norm;
    }
    qsort(entries, e, sizeof(Entry), entry_cmp);
    for (Py_ssize_t start = 0, end; start < e; start = end) {
        for (end = start + 1; end < e && entries[end].column == entries[start].column; end++)
            ;
        for (Py_ssize_t a = start; a < end; a++)
            for (Py_ssize_t b = a + 1; b < end; b++) {
                double v = entries[a].weight * entries[b].weight +
                           entries[a].named * entries[b].named;
                w[entries[a].row * n + entries[b].row] += v;
                w[entries[b].row * n + entries[a].row] += v;
            }
    }
    out = PyBytes_FromStringAndSize((const char *)w, (Py_ssize_t)(n * n * sizeof(double)));
done:
    Py_XDECREF(columns);
    PyMem_Free(entries);
    PyMem_Free(w);
    return out;
}

/* A read-only view of an n x n (or length-n) buffer of native doubles; 0 and an exception
 * when obj is not one. */
static int
doubles_view(PyObject *obj, Py_ssize_t count, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return 0;
    if (view->itemsize != 8 || view->format == NULL || strcmp(view->format, "d") != 0 ||
        view->len != count * 8) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "expected a contiguous buffer of float64 of that size");
        return 0;
    }
    return 1;
}

static void
degrees(const double *w, Py_ssize_t n, double *degree)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        double sum = 0.0;
        for (Py_ssize_t j = 0; j < n; j++)
            sum += w[i * n + j];
        degree[i] = sum + 1e-12;
    }
}

/* The normalised Laplacian I - D^-1/2 W D^-1/2 of an n x n similarity matrix (bytes). */
static PyObject *
speed_laplacian(PyObject *self, PyObject *args)
{
    PyObject *matrix;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "On:laplacian", &matrix, &n))
        return NULL;
    Py_buffer view;
    if (n < 0 || !doubles_view(matrix, n * n, &view))
        return NULL;
    const double *w = view.buf;
    double *degree = PyMem_Malloc((n + 1) * sizeof(double));
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * n * 8);
    if (degree == NULL || out == NULL) {
        PyMem_Free(degree);
        Py_XDECREF(out);
        PyBuffer_Release(&view);
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    double *lap = (double *)PyBytes_AS_STRING(out);
    degrees(w, n, degree);
    for (Py_ssize_t i = 0; i < n; i++)
        degree[i] = 1.0 / sqrt(degree[i]);
    for (Py_ssize_t i = 0; i < n; i++)
        for (Py_ssize_t j = 0; j < n; j++)
            lap[i * n + j] = (i == j ? 1.0 : 0.0) - degree[i] * w[i * n + j] * degree[j];
    PyMem_Free(degree);
    PyBuffer_Release(&view);
    return out;
}

/* The best threshold along the nodes ordered by D^-1/2 times the Fiedler vector: (normalised
 * cut, the nodes before it) among those leaving at least min_side nodes each side. */
static PyObject *
speed_best_cut(PyObject *self, PyObject *args)
{
    PyObject *matrix, *fiedler;
    Py_ssize_t n, min_side;
    if (!PyArg_ParseTuple(args, "OnOn:best_cut", &matrix, &n, &fiedler, &min_side))
        return NULL;
    if (n < 2 * min_side || min_side < 1) {
        PyErr_SetString(PyExc_ValueError, "best_cut: fewer than 2 * min_side nodes");
        return NULL;
    }
    Py_buffer wv, fv;
    if (!doubles_view(matrix, n * n, &wv))
        return NULL;
    if (!doubles_view(fiedler, n, &fv)) {
        PyBuffer_Release(&wv);
        return NULL;
    }
    const double *w = wv.buf, *f = fv.buf;
    double *degree = PyMem_Malloc(n * sizeof(double) * 3);
    Ranked *order = PyMem_Malloc(n * sizeof(Ranked));
    PyObject *side = NULL;
    double best_ncut = INFINITY;
    Py_ssize_t best = min_side;
    if (degree == NULL || order == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double *volume = degree + n, *inside = degree + 2 * n;
    degrees(w, n, degree);
    for (Py_ssize_t i = 0; i < n; i++) {
        /* ranked_cmp sorts by weight descending: negate for ascending, ties by index. */
        order[i].weight = -(f[i] / sqrt(degree[i]));
        order[i].index = i;
    }
    qsort(order, n, sizeof(Ranked), ranked_cmp);
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t node = order[k].index;
        double across = 0.0;
        for (Py_ssize_t j = 0; j < k; j++)
            across += w[order[j].index * n + node] + w[node * n + order[j].index];
        volume[k] = (k ? volume[k - 1] : 0.0) + degree[node];
        inside[k] = (k ? inside[k - 1] : 0.0) + across + w[node * n + node];
    }
    for (Py_ssize_t k = min_side; k <= n - min_side; k++) {
        double cut = volume[k - 1] - inside[k - 1];
        double rest = volume[n - 1] - volume[k - 1];
        double ncut = cut / volume[k - 1] + cut / (rest > 1e-12 ? rest : 1e-12);
        if (ncut < best_ncut) {
            best_ncut = ncut;
            best = k;
        }
    }
    side = PyList_New(best);
    if (side == NULL)
        goto done;
    for (Py_ssize_t k = 0; k < best; k++) {
        PyObject *node = PyLong_FromSsize_t(order[k].index);
        if (node == NULL) {
            Py_CLEAR(side);
            goto done;
        }
        PyList_SET_ITEM(side, k, node);
    }
done:
    PyMem_Free(degree);
    PyMem_Free(order);
    PyBuffer_Release(&wv);
    PyBuffer_Release(&fv);
    if (side == NULL)
        return NULL;
    return Py_BuildValue("dN", best_ncut, side);
}

/* ---- words and entities -------------------------------------------------------------- */

static int
all_alpha(PyObject *s, Py_ssize_t start, Py_ssize_t end)
{
    if (start >= end)
        return 0;
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (Py_ssize_t i = start; i < end; i++)
        if (!Py_UNICODE_ISALPHA(PyUnicode_READ(kind, data, i)))
            return 0;
    return 1;
}

static int
all_decimal(PyObject *s, Py_ssize_t start, Py_ssize_t end)
{
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (Py_ssize_t i = start; i < end; i++)
        if (!Py_UNICODE_ISDECIMAL(PyUnicode_READ(kind, data, i)))
            return 0;
    return 1;
}

static int
in_set(PyObject *set_str, Py_UCS4 ch)
{
    int kind = PyUnicode_KIND(set_str);
    const void *data = PyUnicode_DATA(set_str);
    for (Py_ssize_t i = 0; i < PyUnicode_GET_LENGTH(set_str); i++)
        if (PyUnicode_READ(kind, data, i) == ch)
            return 1;
    return 0;
}

/* The words of one white-space separated token text[start:end], appended to out: the token
 * when it is all letters; else the token stripped of the characters of `edge` when that is
 * all letters; else, unless it is empty or all decimal digits, the words find_words(stripped)
 * returns. 0, or -1 with an exception. */
static int
token_words(PyObject *text, Py_ssize_t start, Py_ssize_t end, PyObject *edge,
            PyObject *find_words, PyObject *out)
{
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    if (!all_alpha(text, start, end)) {
        while (start < end && in_set(edge, PyUnicode_READ(kind, data, start)))
            start++;
        while (end > start && in_set(edge, PyUnicode_READ(kind, data, end - 1)))
            end--;
        if (start == end || all_decimal(text, start, end))
            return 0;
        if (!all_alpha(text, start, end)) {
            PyObject *core = PyUnicode_Substring(text, start, end);
            if (core == NULL)
                return -1;
            PyObject *found = PyObject_CallOneArg(find_words, core);
            Py_DECREF(core);
            if (found == NULL)
                return -1;
            PyObject *ext = PySequence_InPlaceConcat(out, found);
            Py_DECREF(found);
            if (ext == NULL)
                return -1;
            Py_DECREF(ext);
            return 0;
        }
    }
    PyObject *word = PyUnicode_Substring(text, start, end);
    if (word == NULL)
        return -1;
    int bad = PyList_Append(out, word) < 0;
    Py_DECREF(word);
    return bad ? -1 : 0;
}

/* The words of a text: token_words over its white-space separated tokens (str.split()),
 * stopping once `limit` words are found (the list cut there); limit < 0: no limit. Tokens
 * past the limit are never made into objects. */
static PyObject *
speed_words(PyObject *self, PyObject *args)
{
    PyObject *text, *edge, *find_words;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "UnUO:words", &text, &limit, &edge, &find_words))
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t len = PyUnicode_GET_LENGTH(text), i = 0;
    while (i < len && (limit < 0 || PyList_GET_SIZE(out) < limit)) {
        while (i < len && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i)))
            i++;
        if (i >= len)
            break;
        Py_ssize_t start = i;
        while (i < len && !Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i)))
            i++;
        if (token_words(text, start, i, edge, find_words, out) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    if (limit >= 0 && PyList_GET_SIZE(out) > limit && PyList_SetSlice(out, limit, PY_SSIZE_T_MAX, NULL) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* Named entities of a list of words into `out` (key -> first surface form). Each word's key
 * comes from `memo`, else key_of(word): "" for no entity, "@..." for a name, and a "+" in
 * front where an alias phrase may start; there alias_at(words, i) gives (words in the
 * phrase, key, surface) or None. Words inside an alias phrase are not looked at again. */
static PyObject *
speed_entities(PyObject *self, PyObject *args)
{
    PyObject *words, *out, *memo, *key_of, *alias_at;
    if (!PyArg_ParseTuple(args, "O!O!O!OO:entities", &PyList_Type, &words, &PyDict_Type, &out,
                          &PyDict_Type, &memo, &key_of, &alias_at))
        return NULL;
    Py_ssize_t after = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(words); i++) {
        PyObject *word = PyList_GET_ITEM(words, i);
        /* Only a capitalised word can be an entity (key_of gives "" for the others): most
         * words skip the look-up in the large memo. */
        if (!PyUnicode_Check(word) || PyUnicode_GET_LENGTH(word) == 0) {
            PyErr_SetString(PyExc_TypeError, "entities: words must be non-empty str");
            return NULL;
        }
        if (!Py_UNICODE_ISUPPER(PyUnicode_READ_CHAR(word, 0)))
            continue;
        PyObject *key = memoised_str(memo, word, key_of, "entities: keys");
        if (key == NULL)
            return NULL;
        Py_ssize_t len = PyUnicode_GET_LENGTH(key);
        if (len == 0 || i < after) {
            Py_DECREF(key);
            continue;
        }
        if (PyUnicode_READ_CHAR(key, 0) == '+') {
            PyObject *index = PyLong_FromSsize_t(i);
            PyObject *found = index == NULL ? NULL
                                            : PyObject_CallFunctionObjArgs(alias_at, words, index,
                                                                           NULL);
            Py_XDECREF(index);
            if (found == NULL) {
                Py_DECREF(key);
                return NULL;
            }
            if (found != Py_None) {
                Py_ssize_t size;
                PyObject *alias_key, *surface;
                if (!PyArg_ParseTuple(found, "nOO:alias_at", &size, &alias_key, &surface) ||
                    PyDict_SetDefault(out, alias_key, surface) == NULL) {
                    Py_DECREF(found);
                    Py_DECREF(key);
                    return NULL;
                }
                Py_DECREF(found);
                Py_DECREF(key);
                after = i + size;
                continue;
            }
            Py_DECREF(found);
            PyObject *rest = PyUnicode_Substring(key, 1, len);
            Py_DECREF(key);
            if (rest == NULL)
                return NULL;
            key = rest;
            if (PyUnicode_GET_LENGTH(key) == 0) {
                Py_DECREF(key);
                continue;
            }
        }
        PyObject *set = PyDict_SetDefault(out, key, word);
        Py_DECREF(key);
        if (set == NULL)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- MinHash ------------------------------------------------------------------------- */

#define MAX_BYTES 8192
#define BASE 0x100000001B3ULL
#define K1 0x9E3779B97F4A7C15ULL
#define K2 0xC2B2AE3D27D4EB4FULL
#define EMPTY_BIN 0xFFFFFFFFu
#define MAX_PERM 1024

static inline uint64_t
mix(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBULL;
    h ^= h >> 31;
    return h;
}

/* Hashes of the white-space separated tokens of data[:len] (bytes <= 32 separate); returns
 * how many. out has room for len / 2 + 1. */
static Py_ssize_t
hash_tokens(const unsigned char *data, Py_ssize_t len, uint64_t *out)
{
    Py_ssize_t n = 0, i = 0;
    while (i < len) {
        while (i < len && data[i] <= 32)
            i++;
        if (i >= len)
            break;
        uint64_t h = 0, power = 1;
        while (i < len && data[i] > 32) {
            h += (uint64_t)data[i] * power;
            power *= BASE;
            i++;
        }
        out[n++] = mix(h);
    }
    return n;
}

/* (tokens, signature bytes or None) of a text: the count of its white-space separated
 * tokens in the first MAX_BYTES bytes of UTF-8, and the one-permutation MinHash of their
 * 3-shingles (num_perm uint32 bins) when there are at least max(min_tokens, 3). */
static PyObject *
speed_minhash(PyObject *self, PyObject *args)
{
    PyObject *text;
    unsigned long long mult;
    int shift, num_perm;
    Py_ssize_t min_tokens;
    if (!PyArg_ParseTuple(args, "UKiin:minhash", &text, &mult, &shift, &num_perm, &min_tokens))
        return NULL;
    if (num_perm <= 0 || num_perm > MAX_PERM || shift < 1 || shift > 63 ||
        (1ULL << (64 - shift)) != (unsigned long long)num_perm) {
        PyErr_SetString(PyExc_ValueError, "minhash: bad num_perm or shift");
        return NULL;
    }
    Py_ssize_t len;
    const char *data = PyUnicode_AsUTF8AndSize(text, &len);
    if (data == NULL)
        return NULL;
    if (len > MAX_BYTES)
        len = MAX_BYTES;
    uint64_t hashes[MAX_BYTES / 2 + 1];
    Py_ssize_t n = hash_tokens((const unsigned char *)data, len, hashes);
    if (n < min_tokens || n < 3)
        return Py_BuildValue("nO", n, Py_None);
    uint64_t low[MAX_PERM];
    uint32_t sig[MAX_PERM];
    unsigned char filled[MAX_PERM];
    memset(filled, 0, (size_t)num_perm);
    for (int b = 0; b < num_perm; b++)
        low[b] = UINT64_MAX;
    for (Py_ssize_t j = 0; j + 2 < n; j++) {
        /* Order matters in a shingle: each position has its own odd multiplier. */
        uint64_t h = (hashes[j] * K1 + hashes[j + 1] * K2 + hashes[j + 2]) * mult;
        uint64_t b = h >> shift;
        filled[b] = 1;
        if (h < low[b])
            low[b] = h;
    }
    for (int b = 0; b < num_perm; b++)
        sig[b] = filled[b] ? ((uint32_t)low[b] & 0xFFFFFFFEu) : EMPTY_BIN;
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)sig, num_perm * sizeof(uint32_t));
    if (bytes == NULL)
        return NULL;
    return Py_BuildValue("nN", n, bytes);
}

/* ---- LSH bands ----------------------------------------------------------------------- */

/* The signature's bands as bytes keys: band b is bytes rows * 4 of the uint32 signature,
 * one per table. Returns a new list, or NULL. */
static PyObject *
band_keys(PyObject *signature, Py_ssize_t bands, Py_ssize_t rows)
{
    Py_buffer view;
    if (PyObject_GetBuffer(signature, &view, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (view.len != bands * rows * 4) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "lsh: the signature does not fill the bands");
        return NULL;
    }
    PyObject *keys = PyList_New(bands);
    for (Py_ssize_t b = 0; keys != NULL && b < bands; b++) {
        PyObject *key = PyBytes_FromStringAndSize((const char *)view.buf + b * rows * 4, rows * 4);
        if (key == NULL)
            Py_CLEAR(keys);
        else
            PyList_SET_ITEM(keys, b, key);
    }
    PyBuffer_Release(&view);
    return keys;
}

/* The keys stored under any band of the signature: tables[b][band bytes] holds a tuple. */
static PyObject *
speed_lsh_candidates(PyObject *self, PyObject *args)
{
    PyObject *tables, *signature;
    Py_ssize_t rows;
    if (!PyArg_ParseTuple(args, "O!On:lsh_candidates", &PyList_Type, &tables, &signature, &rows))
        return NULL;
    Py_ssize_t bands = PyList_GET_SIZE(tables);
    PyObject *keys = band_keys(signature, bands, rows);
    if (keys == NULL)
        return NULL;
    PyObject *found = PySet_New(NULL);
    for (Py_ssize_t b = 0; found != NULL && b < bands; b++) {
        PyObject *table = PyList_GET_ITEM(tables, b);
        PyObject *members = PyDict_Check(table)
                                ? PyDict_GetItemWithError(table, PyList_GET_ITEM(keys, b))
                                : NULL;
        if (!PyDict_Check(table))
            PyErr_SetString(PyExc_TypeError, "lsh: tables must be dicts");
        if (members == NULL) {
            if (PyErr_Occurred())
                Py_CLEAR(found);
            continue;
        }
        if (!PyTuple_Check(members)) {
            PyErr_SetString(PyExc_TypeError, "lsh: buckets must be tuples");
            Py_CLEAR(found);
            continue;
        }
        for (Py_ssize_t i = 0; found != NULL && i < PyTuple_GET_SIZE(members); i++)
            if (PySet_Add(found, PyTuple_GET_ITEM(members, i)) < 0)
                Py_CLEAR(found);
    }
    Py_DECREF(keys);
    return found;
}

/* tables[b][band bytes] += (key,) for each band of the signature. */
static PyObject *
speed_lsh_insert(PyObject *self, PyObject *args)
{
    PyObject *tables, *signature, *key;
    Py_ssize_t rows;
    if (!PyArg_ParseTuple(args, "O!OnO:lsh_insert", &PyList_Type, &tables, &signature, &rows,
                          &key))
        return NULL;
    Py_ssize_t bands = PyList_GET_SIZE(tables);
    PyObject *keys = band_keys(signature, bands, rows);
    if (keys == NULL)
        return NULL;
    for (Py_ssize_t b = 0; b < bands; b++) {
        PyObject *table = PyList_GET_ITEM(tables, b), *band = PyList_GET_ITEM(keys, b);
        if (!PyDict_Check(table)) {
            PyErr_SetString(PyExc_TypeError, "lsh: tables must be dicts");
            goto fail;
        }
        PyObject *old = PyDict_GetItemWithError(table, band);
        if (old == NULL && PyErr_Occurred())
            goto fail;
        if (old != NULL && !PyTuple_Check(old)) {
            PyErr_SetString(PyExc_TypeError, "lsh: buckets must be tuples");
            goto fail;
        }
        Py_ssize_t size = old == NULL ? 0 : PyTuple_GET_SIZE(old);
        PyObject *bucket = PyTuple_New(size + 1);
        if (bucket == NULL)
            goto fail;
        for (Py_ssize_t i = 0; i < size; i++) {
            Py_INCREF(PyTuple_GET_ITEM(old, i));
            PyTuple_SET_ITEM(bucket, i, PyTuple_GET_ITEM(old, i));
        }
        Py_INCREF(key);
        PyTuple_SET_ITEM(bucket, size, key);
        int bad = PyDict_SetItem(table, band, bucket) < 0;
        Py_DECREF(bucket);
        if (bad)
            goto fail;
    }
    Py_DECREF(keys);
    Py_RETURN_NONE;
fail:
    Py_DECREF(keys);
    return NULL;
}

static PyMethodDef methods[] = {
    {"dot", speed_dot, METH_VARARGS, "sum(a[k] * b.get(k, 0.0) for k in a)."},
    {"accumulate", speed_accumulate, METH_VARARGS, "target[k] += v for k, v in source."},
    {"setdefaults", speed_setdefaults, METH_VARARGS, "target.setdefault(k, v) for source."},
    {"count_keys", speed_count_keys, METH_VARARGS, "counts[k] += 1 for each key of each dict."},
    {"prefixed_cosine", speed_prefixed_cosine, METH_VARARGS,
     "Cosine of the entries whose keys start with prefix; -1.0 when a side has none."},
    {"add_terms", speed_add_terms, METH_VARARGS, "Count the words' terms into a dict."},
    {"top_votes", speed_top_votes, METH_VARARGS, "Keys found most often in postings."},
    {"tfidf", speed_tfidf, METH_VARARGS, "Unit TF-IDF vector and its rare keys."},
    {"top_items", speed_top_items, METH_VARARGS, "The n entries of largest value, as a dict."},
    {"post", speed_post, METH_VARARGS, "Append an event id to the postings of terms."},
    {"words", speed_words, METH_VARARGS, "Words of a text, up to a limit."},
    {"entities", speed_entities, METH_VARARGS, "Named entities of a list of words."},
    {"affinity", speed_affinity, METH_VARARGS, "Pairwise similarity of split-check members."},
    {"laplacian", speed_laplacian, METH_VARARGS, "Normalised Laplacian of a similarity matrix."},
    {"best_cut", speed_best_cut, METH_VARARGS, "Lowest normalised cut along a Fiedler order."},
    {"lsh_candidates", speed_lsh_candidates, METH_VARARGS, "Keys sharing a band."},
    {"lsh_insert", speed_lsh_insert, METH_VARARGS, "Add a key under each band."},
    {"minhash", speed_minhash, METH_VARARGS, "Token count and MinHash signature of a text."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "Compiled inner loops of grouping (pure-Python twins in newswatch.grouping).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    append_name = PyUnicode_InternFromString("append");
    if (append_name == NULL)
        return NULL;
    return PyModule_Create(&module);
}
